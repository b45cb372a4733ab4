"""The work directory on object storage: a whole ``imagerank recalculate`` with ``--workdir s3://...`` against a
real S3 API server (moto's standalone server over HTTP), the online store in a real redis-server, run from an
empty current directory that stays empty. A run killed mid-stage resumes to the same scores as an uninterrupted
run of a local work directory on the same inputs, and ``imagerank lookup`` serves them from the S3 work directory.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pandas as pd
import pytest

from imagerank import datasets, storage
from imagerank.testing import shared_fixture

pytestmark = pytest.mark.slow

ROWS = 500  # a slice of the real sample: enough for labelled rows of two providers, quick on a shared machine
IMAGERANK = str(Path(sys.executable).with_name("imagerank"))
SCORE_COLUMNS = ["image_id", "popularity", "authority", "popularity_source", "authority_source"]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, str]:
    """The first ROWS rows of the real sample catalog and one real Common Crawl ranks file (local copies in tmp)."""
    folder = tmp_path_factory.mktemp("inputs")
    sample = pd.read_csv(shared_fixture("catalog/openverse_sample_images.csv"), dtype=str, keep_default_na=False)
    sample.head(ROWS).to_csv(folder / "catalog.csv", index=False)
    return {"catalog": str(folder / "catalog.csv"),
            "ranks": str(shared_fixture("ranks/cc-main-2026-apr-may-jun-domain-ranks-top1000.txt.gz"))}


def recalculate_command(catalog: str, ranks: str, workdir: str, *extra: str) -> list[str]:
    return [IMAGERANK, "recalculate", "--catalog", catalog, "--ranks", ranks, "--workdir", workdir, "--no-report",
            *extra]


@pytest.fixture(scope="module")
def local_scores(inputs, tmp_path_factory, dask_client) -> pd.DataFrame:
    """An uninterrupted run with a local work directory: the reference (on the session's cluster; the S3 run
    starts its own, to be killed with it)."""
    workdir = tmp_path_factory.mktemp("local") / "w"
    subprocess.run(recalculate_command(inputs["catalog"], inputs["ranks"], str(workdir), "--no-materialize",
                                       "--scheduler", dask_client.scheduler.address),
                   check=True, stdout=subprocess.DEVNULL)
    return sorted_scores(datasets.read_frame(workdir, "scores"))


def sorted_scores(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[SCORE_COLUMNS].sort_values("image_id", ignore_index=True)


def upload(local: str, url: str) -> str:
    fs, path = storage.filesystem(url)
    fs.put_file(local, path)
    return url


def test_recalculate_on_s3_killed_resumed_served_from_redis(inputs, local_scores, s3_endpoint, redis_srv, tmp_path):
    """Catalog, ranks and work directory on S3, online store in Redis: killed mid-run, resumed, served."""
    prefix = f"s3://imagerank/{uuid.uuid4().hex[:8]}"
    workdir = f"{prefix}/w"
    catalog = upload(inputs["catalog"], f"{prefix}/inputs/catalog.csv")
    ranks = upload(inputs["ranks"], f"{prefix}/inputs/{Path(inputs['ranks']).name}")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    env = {**os.environ, "IMAGERANK_REDIS": redis_srv.connection_string, "IMAGERANK_PROGRESS": "0"}
    env.pop("IMAGERANK_WORKDIR", None)
    command = recalculate_command(catalog, ranks, workdir)

    # killed (with its whole process group: driver, Dask workers, Feast child) once a stage after ingest finished
    run = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                           start_new_session=True)
    killed = False
    for line in run.stderr:
        if "features: text done" in line:
            os.killpg(run.pid, signal.SIGKILL)
            killed = True
            break
    run.wait()
    assert killed, "the run ended before its text stage finished"
    state = datasets.read_json(workdir, "run_state")
    assert "features: text" in state["stages"] and "score" not in state["stages"]
    assert not datasets.exists(workdir, "scores")  # nothing of the unfinished stages is visible

    resumed = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.loads(resumed.stdout)["resumed"] is True
    assert "features: text: finished before the interruption, kept" in resumed.stderr
    assert list(cwd.iterdir()) == []  # nothing written to the current directory

    s3_scores = sorted_scores(datasets.read_frame(workdir, "scores"))
    pd.testing.assert_frame_equal(s3_scores, local_scores)

    manifest = json.loads(storage.read_text(datasets.list_files(workdir, "runs", "*.json")[-1]))
    assert manifest["workdir"] == workdir and manifest["reconciliation"]["ok"]
    assert manifest["feast"]["materialized_views"]
    assert not datasets.exists(workdir, "run_state") and not datasets.exists(workdir, "lock")

    ids = list(s3_scores["image_id"].iloc[::50])
    lookup = subprocess.run([IMAGERANK, "lookup", "--workdir", workdir, *ids], cwd=cwd, env=env,
                            capture_output=True, text=True)
    assert lookup.returncode == 0, lookup.stderr[-3000:]
    served = pd.DataFrame([json.loads(line) for line in lookup.stdout.splitlines()])
    expected = s3_scores.set_index("image_id").loc[ids]
    assert served["image_id"].tolist() == ids
    for column in ("popularity", "authority"):
        assert served[column].tolist() == pytest.approx(expected[column].tolist(), abs=1e-6)  # float32 online
    assert list(cwd.iterdir()) == []


def test_lookup_on_a_url_work_directory_needs_an_online_store(s3_endpoint, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("IMAGERANK_REDIS", "IMAGERANK_ONLINE_DB")}
    workdir = f"s3://imagerank/{uuid.uuid4().hex[:8]}/w"
    fs, path = storage.filesystem(datasets.location(workdir, "feast", "registry.db"))
    fs.pipe_file(path, b"not yet")
    result = subprocess.run([IMAGERANK, "lookup", "--workdir", workdir, "some-id"], cwd=tmp_path, env=env,
                            capture_output=True, text=True)
    assert result.returncode != 0
    assert "set IMAGERANK_REDIS" in result.stderr
