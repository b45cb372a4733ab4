"""The process a data engineer leaves running: one run per work directory, resumable, change-aware."""

import json
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from imagerank import datasets
from imagerank.demo import generate
from imagerank.runs import RunState, WorkdirBusy, file_fingerprint, workdir_lock
from pipelines.recalculate import RecalculateOptions, recalculate


def test_a_second_run_on_the_same_workdir_is_refused(tmp_path):
    with workdir_lock(tmp_path):
        with pytest.raises(WorkdirBusy, match="in use by another recalculation"):
            with workdir_lock(tmp_path):
                pass
    with workdir_lock(tmp_path):  # released on exit
        pass


def _hold_lock(path, ready):
    with workdir_lock(Path(path)):
        ready.set()
        time.sleep(60)


def test_the_lock_of_a_killed_run_is_released(tmp_path):
    ready = multiprocessing.get_context("spawn").Event()
    holder = multiprocessing.get_context("spawn").Process(target=_hold_lock, args=(str(tmp_path), ready))
    holder.start()
    assert ready.wait(60)
    with pytest.raises(WorkdirBusy, match=f"pid {holder.pid}"):
        with workdir_lock(tmp_path):
            pass
    os.kill(holder.pid, signal.SIGKILL)
    holder.join()
    with workdir_lock(tmp_path):
        pass


def test_fingerprints_see_content_changes(tmp_path):
    path = tmp_path / "catalog.csv"
    path.write_text("a,b\n1,2\n")
    first = file_fingerprint(path)
    path.write_text("a,b\n1,3\n")
    os.utime(path, ns=(first["mtime_ns"], first["mtime_ns"]))  # same size and mtime, other bytes
    assert file_fingerprint(path)["sha256_edges"] != first["sha256_edges"]


def test_run_state_resumes_only_the_same_run(tmp_path):
    state = RunState.start(tmp_path, "r1", "2026-01-01T00:00:00+00:00", "key-a")
    state.record("ingest", {"rows": 3})
    again = RunState.start(tmp_path, "r2", "2026-01-02T00:00:00+00:00", "key-a")
    assert again.resumed and again.run_id == "r1" and again.done("ingest")
    other = RunState.start(tmp_path, "r3", "2026-01-03T00:00:00+00:00", "key-b")
    assert not other.resumed and other.run_id == "r3" and not other.done("ingest")


@pytest.fixture(scope="module")
def demo_inputs(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("demo-input"), rows=150)


@pytest.fixture(scope="module")
def reference_run(demo_inputs, tmp_path_factory, dask_client):
    """One uninterrupted run of the demo inputs, shared by the tests that compare with it or rerun it unchanged
    (they only read its work directory)."""
    workdir = tmp_path_factory.mktemp("reference")
    manifest = recalculate(_options(demo_inputs, workdir, dask_client.scheduler.address), quiet=True)
    return workdir, manifest


def _options(inputs, workdir, scheduler, **extra):
    return RecalculateOptions(catalog=inputs["catalog"], workdir=workdir, ranks=inputs["ranks"], materialize=False,
                              scheduler=scheduler, **extra)


def _scores(workdir):
    return pd.read_parquet(Path(workdir) / "scores").sort_values("image_id").reset_index(drop=True)


@pytest.mark.slow
def test_unchanged_inputs_do_next_to_nothing(demo_inputs, reference_run, dask_client):
    workdir, first = reference_run
    parquet = [name for name, entry in datasets.CATALOG.items() if entry.kind == "parquet"]
    committed = {name: datasets.current(workdir, name) for name in parquet}
    assert committed["scores"] is not None and committed["catalog"] is not None
    second = recalculate(_options(demo_inputs, workdir, dask_client.scheduler.address), quiet=True)
    assert second["unchanged"] and second["run_id"] == first["run_id"]
    # no stage ran: every dataset is still the version the first run committed
    assert {name: datasets.current(workdir, name) for name in parquet} == committed
    assert len(list((workdir / "runs").glob("*.json"))) == 1


KILL_SCRIPT = """
import os, signal, sys
import pipelines.score as r  # the score stage (pipelines/stages.py) calls it through its module
from pipelines.recalculate import RecalculateOptions, recalculate
original = r.run_score
def run_score_then_die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)  # the driver dies in the middle of the run
r.run_score = run_score_then_die
recalculate(RecalculateOptions(catalog=sys.argv[1].split(','), ranks=[sys.argv[2]], workdir=sys.argv[3],
                               materialize=False, scheduler=sys.argv[4]), quiet=True)
"""


@pytest.mark.slow
def test_a_killed_run_resumes_to_the_uninterrupted_result(demo_inputs, reference_run, tmp_path, dask_client):
    address = dask_client.scheduler.address
    killed = subprocess.run([sys.executable, "-c", KILL_SCRIPT, ",".join(demo_inputs["catalog"]), demo_inputs["ranks"][0],
                             str(tmp_path / "w"), address], capture_output=True, text=True, timeout=600)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    state = json.loads((tmp_path / "w" / "runs" / "in-progress.json").read_text())
    assert "train" in state["stages"] and "score" not in state["stages"]
    assert not (tmp_path / "w" / "scores").exists()

    resumed = recalculate(_options(demo_inputs, tmp_path / "w", address), quiet=True)
    assert resumed["resumed"] and resumed["run_id"] == state["run_id"]
    assert not (tmp_path / "w" / "runs" / "in-progress.json").exists()

    uninterrupted, _ = reference_run
    pd.testing.assert_frame_equal(_scores(tmp_path / "w").drop(columns=["model_version", "event_timestamp"]),
                                  _scores(uninterrupted).drop(columns=["model_version", "event_timestamp"]))


def _changed_catalog(inputs, tmp_path, images=None):
    """The demo catalog plus new rows and one changed row: what a day of provider updates looks like.
    With ``images`` (a folder), the new rows' images are added to it."""
    base = pd.read_csv(inputs["catalog"][0], dtype=str, keep_default_na=False)
    extra = generate(tmp_path / "extra", rows=30, seed=99, images=images is not None)
    if images is not None:
        for path in Path(extra["images"]).iterdir():
            shutil.copy(path, Path(images) / path.name)
    new_rows = pd.read_csv(extra["catalog"][0], dtype=str, keep_default_na=False)
    changed = base.copy()
    changed.loc[0, "title"] = changed.loc[0, "title"] + " (retitled)"
    union = pd.concat([changed, new_rows], ignore_index=True)
    union.to_csv(tmp_path / "union.csv", index=False)
    return str(tmp_path / "union.csv")


@pytest.mark.slow
def test_incremental_run_equals_a_full_run_on_the_union(demo_inputs, tmp_path, dask_client):
    address = dask_client.scheduler.address
    images = shutil.copytree(demo_inputs["images"], tmp_path / "images")
    first = recalculate(_options(demo_inputs, tmp_path / "inc", address, images=str(images)), quiet=True)
    union = {**demo_inputs, "catalog": [_changed_catalog(demo_inputs, tmp_path, images)]}
    second = recalculate(_options(union, tmp_path / "inc", address, images=str(images)), quiet=True)
    full = recalculate(_options(union, tmp_path / "full", address, images=str(images)), quiet=True)
    assert second["run_id"] != first["run_id"] and not second.get("unchanged")
    # only the 30 new images are decoded; the 150 unchanged ones (the retitled row too) are reused
    for family in ("pixels", "exif"):
        assert second["images"][family]["rows"] == 180 and second["images"][family]["reused"] == 150
        assert full["images"][family]["reused"] == 0
    incremental, reference = _scores(tmp_path / "inc"), _scores(tmp_path / "full")
    pd.testing.assert_frame_equal(incremental.drop(columns=["model_version", "event_timestamp"]),
                                  reference.drop(columns=["model_version", "event_timestamp"]))
    # rows whose scores did not change keep the first run's timestamp: materialize-incremental skips them
    stamps = incremental["event_timestamp"].value_counts()
    assert set(stamps.index) <= {pd.Timestamp(first["event_timestamp"]), pd.Timestamp(second["event_timestamp"])}
    assert (incremental["event_timestamp"] == pd.Timestamp(second["event_timestamp"])).sum() >= 30  # the new rows


@pytest.mark.slow
def test_retrain_policy_reuses_the_model_when_nothing_it_learnt_from_changed(demo_inputs, tmp_path, dask_client):
    address = dask_client.scheduler.address
    first = recalculate(_options(demo_inputs, tmp_path, address), quiet=True)
    again = recalculate(_options(demo_inputs, tmp_path, address, force=True), quiet=True)
    assert again["models"]["reused"] and again["models"]["model_version"] == first["models"]["model_version"]
    reused_scores = _scores(tmp_path)
    forced = recalculate(_options(demo_inputs, tmp_path, address, force=True, retrain="always"), quiet=True)
    assert not forced["models"]["reused"] and forced["models"]["model_version"] == forced["run_id"]
    # training is deterministic: the new model scores exactly as the reused one did
    pd.testing.assert_series_equal(_scores(tmp_path)["popularity"], reused_scores["popularity"])


@pytest.mark.slow
def test_a_worker_killed_mid_run_does_not_change_the_result(demo_inputs, reference_run, tmp_path):
    """A worker process dies (``os._exit``, as in a crash) the moment the popularity model's training task
    starts, with the persisted features of the earlier stages on it; Dask reruns the task and recomputes the lost
    pieces on the workers left (and on the one its nanny restarts), and the scores equal those of an undisturbed
    run. (The training task is chosen because its key is never fused with others: partition tasks are.)"""
    from imagerank.cluster import dask_client as make_client
    from imagerank.testing import KillWorkerWhenTaskStarts

    reference_dir, _ = reference_run
    marker = tmp_path / "killed-worker"
    with make_client(n_workers=2, memory_limit="3GiB") as client:
        workers_before = set(client.run(os.getpid).values())
        client.register_plugin(KillWorkerWhenTaskStarts("train_popularity_from_parts", marker))
        result = recalculate(_options(demo_inputs, tmp_path / "killed", client.scheduler.address), quiet=True)
        workers_after = set(client.run(os.getpid).values())
    killed_pid, killed_task = marker.read_text().split(maxsplit=1)
    assert "train_popularity" in killed_task
    assert int(killed_pid) in workers_before and int(killed_pid) not in workers_after
    assert result["reconciliation"]["ok"]
    pd.testing.assert_frame_equal(_scores(tmp_path / "killed").drop(columns=["model_version", "event_timestamp"]),
                                  _scores(reference_dir).drop(columns=["model_version", "event_timestamp"]))
