"""Publishing by commit record, on local disk and on a real S3 API server alike: a killed writer leaves nothing
visible, readers see the old version until the record changes, superseded versions are cleaned up."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from imagerank import datasets, io, storage
from imagerank.runs import WorkdirBusy, workdir_lock

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(params=["local", "s3"])
def workdir(request, tmp_path) -> str:
    if request.param == "local":
        return str(tmp_path / "w")
    request.getfixturevalue("s3_endpoint")
    return f"s3://imagerank/{uuid.uuid4().hex[:8]}/w"


def frame(value: int) -> pd.DataFrame:
    return pd.DataFrame({"image_id": ["a", "b"], "value": [value, value + 1]})


def versions(workdir: str, name: str) -> list[str]:
    fs, path = storage.filesystem(io.versions_dir(datasets.location(workdir, name)))
    return sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(path, detail=False)
                  if not p.endswith(io.RECORD))


KILLED_WRITER = """
import os, signal, sys
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pyarrow as pa, pyarrow.parquet as pq
from imagerank import datasets, storage
workdir = sys.argv[1]
with datasets.publishing(workdir, "scores") as version:
    fs, path = storage.filesystem(version)
    pq.write_table(pa.table({"image_id": ["x"], "value": [99]}), f"{path}/part.0.parquet", filesystem=fs)
    os.kill(os.getpid(), signal.SIGKILL)  # killed after writing its files, before the commit record
"""


@pytest.mark.slow
def test_a_killed_writer_leaves_nothing_visible(workdir):
    result = subprocess.run([sys.executable, "-c", KILLED_WRITER, workdir], env=os.environ.copy())
    assert result.returncode == -signal.SIGKILL
    assert not datasets.exists(workdir, "scores")
    assert datasets.current(workdir, "scores") is None
    assert len(versions(workdir, "scores")) == 1  # its unreferenced files are there, invisible

    datasets.write_frame(frame(1), workdir, "scores")
    result = subprocess.run([sys.executable, "-c", KILLED_WRITER, workdir], env=os.environ.copy())
    assert result.returncode == -signal.SIGKILL
    assert datasets.read_frame(workdir, "scores")["value"].tolist() == [1, 2]


def test_readers_see_the_old_version_until_the_commit(workdir):
    datasets.write_frame(frame(1), workdir, "scores")
    pinned = datasets.current(workdir, "scores")  # a reader that resolved the record before the next commit
    with datasets.publishing(workdir, "scores") as version:
        fs, path = storage.filesystem(version)
        pq.write_table(pa.Table.from_pandas(frame(5), preserve_index=False), f"{path}/part.0.parquet", filesystem=fs)
        assert datasets.read_frame(workdir, "scores")["value"].tolist() == [1, 2]
    assert datasets.read_frame(workdir, "scores")["value"].tolist() == [5, 6]
    assert io.read_frame(pinned)["value"].tolist() == [1, 2]  # its version outlives the commit that replaced it


def test_a_failed_write_removes_its_version_and_keeps_the_old_one(workdir):
    datasets.write_frame(frame(1), workdir, "scores")
    before = versions(workdir, "scores")
    with pytest.raises(RuntimeError, match="boom"):
        with datasets.publishing(workdir, "scores") as version:
            with storage.open_file(storage.join(version, "part.0.parquet"), "wb") as out:
                out.write(b"half a file")
            raise RuntimeError("boom")
    assert versions(workdir, "scores") == before
    assert datasets.read_frame(workdir, "scores")["value"].tolist() == [1, 2]


@pytest.mark.slow
def test_cleanup_keeps_the_committed_version_and_the_one_it_replaced(workdir):
    for value in (1, 2):
        datasets.write_frame(frame(value), workdir, "scores")
    subprocess.run([sys.executable, "-c", KILLED_WRITER, workdir], env=os.environ.copy())  # an orphan
    second = io.committed_version(datasets.location(workdir, "scores"))
    assert len(versions(workdir, "scores")) == 3  # v1, v2 (committed), the orphan
    datasets.write_frame(frame(3), workdir, "scores")
    third = io.committed_version(datasets.location(workdir, "scores"))
    # v1 is gone; v2 stays (a reader may be on it); the orphan is newer than v2: a writer could still own it
    assert second in versions(workdir, "scores") and third in versions(workdir, "scores")
    assert len(versions(workdir, "scores")) == 3
    datasets.write_frame(frame(4), workdir, "scores")
    fourth = io.committed_version(datasets.location(workdir, "scores"))
    assert versions(workdir, "scores") == sorted([third, fourth])  # the orphan went with v2
    assert datasets.read_frame(workdir, "scores")["value"].tolist() == [4, 5]


def test_dask_writes_and_timestamp_carry_over_read_the_committed_version(workdir):
    """Workers write their own parts (a cluster started after the S3 environment is set, as a run starts its own)."""
    import dask.dataframe as dd

    from imagerank.cluster import dask_client

    with dask_client(n_workers=1, memory_limit="2GiB"):
        _write_and_carry_over(workdir, dd)


def _write_and_carry_over(workdir, dd):

    old, new = pd.Timestamp("2026-01-01", tz="UTC"), pd.Timestamp("2026-02-01", tz="UTC")
    datasets.write_ddf(dd.from_pandas(frame(1).assign(event_timestamp=old), npartitions=2), workdir, "scores")
    changed = pd.DataFrame({"image_id": ["a", "b"], "value": [1, 7], "event_timestamp": [new, new]})
    out = io.keep_unchanged_timestamps(dd.from_pandas(changed, npartitions=1), datasets.location(workdir, "scores"))
    datasets.write_ddf(out, workdir, "scores")
    stamps = datasets.read_frame(workdir, "scores").set_index("image_id")["event_timestamp"]
    assert stamps.to_dict() == {"a": old, "b": new}


def test_json_documents_are_written_whole(workdir):
    datasets.write_json({"run_id": "r1"}, workdir, "runs", "r1.json")
    assert datasets.read_json(workdir, "runs", "r1.json") == {"run_id": "r1"}
    assert datasets.list_files(workdir, "runs", "*.json") == [datasets.location(workdir, "runs", "r1.json")]


def test_a_plain_directory_from_before_commit_records_is_read_and_then_superseded(tmp_path):
    workdir = tmp_path / "w"
    (workdir / "scores").mkdir(parents=True)
    frame(1).to_parquet(workdir / "scores" / "part.0.parquet", index=False)
    assert datasets.read_frame(workdir, "scores")["value"].tolist() == [1, 2]
    datasets.write_frame(frame(3), workdir, "scores")
    assert (workdir / "scores").is_symlink()
    assert pd.read_parquet(workdir / "scores")["value"].tolist() == [3, 4]  # plain readers follow the link


def test_the_lock_on_object_storage_refuses_a_second_run_and_takes_over_a_dead_ones(s3_endpoint):
    workdir = f"s3://imagerank/{uuid.uuid4().hex[:8]}/w"
    with workdir_lock(workdir):
        with pytest.raises(WorkdirBusy, match="held by another recalculation"):
            with workdir_lock(workdir):
                pass
    assert not datasets.exists(workdir, "lock")  # released
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    import socket

    fs, path = storage.filesystem(datasets.location(workdir, "lock"))
    fs.pipe_file(path, json.dumps({"host": socket.gethostname(), "pid": int(dead.stdout), "token": "x"}).encode())
    with workdir_lock(workdir):  # its holder is gone: a killed run's lock is taken over
        assert json.loads(fs.cat_file(path))["pid"] == os.getpid()


def test_every_dataset_location_comes_from_the_catalog():
    """No stage wiring builds a work-directory path by hand."""
    offenders = []
    for path in [*(ROOT / "pipelines").glob("*.py"), ROOT / "src/imagerank/runs.py", ROOT / "src/imagerank/cli.py",
                 ROOT / "src/imagerank/features/registry.py", ROOT / "feature_repo/sources.py",
                 ROOT / "src/imagerank/reporting/explain.py", ROOT / "src/imagerank/reporting/data.py",
                 ROOT / "src/imagerank/reporting/build.py"]:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if 'workdir / "' in line or "workdir) / \"" in line:
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


def test_catalog_locations_and_schemas():
    assert datasets.location("s3://b/w/", "links") == "s3://b/w/features/links"
    assert datasets.location("/data/w", "models", "v1", "metrics.json") == "/data/w/models/v1/metrics.json"
    assert datasets.schema("catalog").names[0] == "image_id"
    for name in datasets.CATALOG:
        datasets.schema(name)  # every reference resolves
    with pytest.raises(KeyError, match="no dataset named"):
        datasets.location("/w", "nope")


def test_staging_removes_the_scratch_a_killed_writer_left(workdir):
    prefix = datasets.staging_prefix("ingest")
    with storage.open_file(storage.join(workdir, f"{prefix}dead", "part.000000-000000.parquet"), "wb") as out:
        out.write(b"rows of a killed ingest")
    datasets.write_frame(frame(1), workdir, "catalog")
    fs, root = storage.filesystem(workdir)
    with pytest.raises(RuntimeError, match="writer failed"), datasets.staging(workdir, "ingest") as scratch:
        with storage.open_file(storage.join(scratch, "part.0.parquet"), "wb") as out:
            out.write(b"rows of this writer")
        fs.invalidate_cache()
        assert fs.glob(f"{root}/{prefix}*") == [storage.filesystem(scratch)[1]]  # the dead one is gone, ours is new
        raise RuntimeError("writer failed")
    assert not fs.glob(f"{root}/{prefix}*")  # removed on error too
    assert datasets.read_frame(workdir, "catalog")["value"].tolist() == [1, 2]  # datasets untouched
