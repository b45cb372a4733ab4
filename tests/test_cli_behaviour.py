"""How the `imagerank` command behaves for its users: exit codes, streams, validation, and what it records.

Every test runs the installed entry point (a subprocess) or ``imagerank.cli.main``: stdout carries results
only, progress and logs go to stderr; usage errors exit 2, failures 1; bad inputs are refused before
anything is written or a cluster is started.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from imagerank import __version__
from imagerank.cli import main
from imagerank.reporting.explain import format_text

IMAGERANK = Path(sys.executable).parent / "imagerank"
DASHBOARD_LINE = "[imagerank] Dask dashboard:"


def imagerank(*args: str, cwd: Path | None = None, env: dict | None = None,
              timeout: int = 600) -> subprocess.CompletedProcess:
    assert IMAGERANK.is_file(), f"{IMAGERANK} is missing: `make setup` installs the entry point"
    return subprocess.run([str(IMAGERANK), *args], capture_output=True, text=True, cwd=cwd, timeout=timeout,
                          env={**os.environ, **(env or {})})


# --- exit codes, --version, --debug ------------------------------------------------------------------------

def test_version_prints_the_package_version():
    done = imagerank("--version")
    assert done.returncode == 0
    assert done.stdout.strip() == f"imagerank {__version__}"


def test_usage_errors_exit_2_and_failures_exit_1(tmp_path):
    usage = imagerank("runs", "--no-such-option")
    assert usage.returncode == 2 and "unrecognized arguments: --no-such-option" in usage.stderr

    failure = imagerank("runs", "--workdir", str(tmp_path / "missing"))
    assert failure.returncode == 1
    assert failure.stderr.strip() == f"imagerank runs: error: no work directory {tmp_path / 'missing'}"
    assert failure.stdout == ""


def test_runs_on_a_missing_work_directory_is_an_error(tmp_path, capsys):
    assert main(["runs", "--workdir", str(tmp_path / "missing")]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and "no work directory" in captured.err
    assert main(["runs", "--workdir", str(tmp_path)]) == 1  # a directory no run ever used
    assert "holds no runs" in capsys.readouterr().err
    (tmp_path / "runs").mkdir()
    assert main(["runs", "--workdir", str(tmp_path)]) == 0  # a work directory whose first run is not finished
    captured = capsys.readouterr()
    assert captured.out == "" and "no finished run" in captured.err


@pytest.mark.parametrize("argv", [["--debug", "runs"], ["runs", "--debug"]])
def test_debug_is_accepted_before_and_after_the_command(argv, tmp_path):
    with pytest.raises(FileNotFoundError, match="no work directory"):
        main([*argv, "--workdir", str(tmp_path / "missing")])


# --- arguments and inputs are checked before anything starts ------------------------------------------------

@pytest.mark.parametrize("argv, message", [
    (["recalculate", "--catalog", "c.csv", "--percentile", "1.5"], "--percentile: must lie strictly between 0 and 1"),
    (["recalculate", "--catalog", "c.csv", "--percentile", "0"], "--percentile: must lie strictly between 0 and 1"),
    (["recalculate", "--catalog", "c.csv", "--percentile", "nan"], "--percentile: not a finite number"),
    (["features", "popularity", "--percentile", "-0.2"], "--percentile: must lie strictly between 0 and 1"),
    (["recalculate", "--catalog", "c.csv", "--max-image-bytes", "-5"], "--max-image-bytes: must be a positive"),
    (["features", "pixels", "--image-timeout", "0"], "--image-timeout: must be positive"),
    (["features", "visual", "--phash-threshold", "-1"], "--phash-threshold: must be 0 or more"),
    (["graph", "build", "--damping", "1"], "--damping: must lie strictly between 0 and 1"),
    (["graph", "build", "--max-iter", "0"], "--max-iter: must be a positive whole number"),
    (["report", "--oof-rows", "-3"], "--oof-rows: must be 0 or more"),
    (["explain", "some-id", "--top", "many"], "--top: not a whole number"),
    (["demo", "--rows", "-10"], "--rows: must be a positive whole number"),
])
def test_out_of_range_arguments_are_usage_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_a_bad_argument_is_refused_before_a_cluster_starts(tmp_path, sample_catalog):
    workdir = tmp_path / "w"
    done = imagerank("recalculate", "--catalog", str(sample_catalog), "--workdir", str(workdir), "--percentile", "1.5")
    assert done.returncode == 2 and "--percentile: must lie strictly between 0 and 1" in done.stderr
    assert DASHBOARD_LINE not in done.stderr and not workdir.exists()


def _image_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "img"
    folder.mkdir()
    return folder


@pytest.mark.parametrize("extra, message", [
    (["--catalog", "{missing}"], "no such catalog file"),
    (["--ranks", "{missing}"], "no such ranks file"),
    (["--crawl", "{missing}"], "no such crawl file"),
    (["--images", "{folder}/{{image_id.jpg"], "expected '}' before end of string"),
    (["--images", "{folder}/{{provider_id}}.jpg"], "(not catalog columns: provider_id)"),
    (["--images", "{folder}/{{}}.jpg"], "must name catalog columns such as {image_id}"),
    (["--images", "{folder}/nested/{{image_id}}.jpg"], "no such folder"),
    (["--images", "https://images.example/{{image_id}}.jpg"], "--allow-remote-images"),
])
def test_bad_inputs_leave_no_work_directory_behind(extra, message, tmp_path, sample_catalog):
    """Checked before the work directory, its lock or a cluster exist: nothing to clean up after a typo."""
    workdir = tmp_path / "w"
    values = {"missing": str(tmp_path / "missing.csv"), "folder": str(_image_folder(tmp_path))}
    extra = [e.format(**values) for e in extra]
    catalog = [] if extra[0] == "--catalog" else ["--catalog", str(sample_catalog)]
    done = imagerank("recalculate", *catalog, *extra, "--workdir", str(workdir))
    assert done.returncode == 1, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr
    assert done.stdout == "" and DASHBOARD_LINE not in done.stderr
    assert not workdir.exists()


@pytest.mark.slow
def test_single_stages_check_their_inputs_before_a_cluster_starts(tmp_path):
    workdir = tmp_path / "w"
    for argv, message in [
        (["ingest", str(tmp_path / "missing.csv")], "no such catalog file"),
        (["features", "metadata"], "catalog does not exist: run `imagerank ingest` first"),
        (["graph", "extract", str(tmp_path / "missing.warc.gz")], "no such crawl file"),
        (["train"], "catalog does not exist"),
        (["materialize"], "scores does not exist: run `imagerank recalculate`"),
    ]:
        done = imagerank(*argv, "--workdir", str(workdir))
        assert done.returncode == 1 and message in done.stderr, (argv, done.stderr)
        assert DASHBOARD_LINE not in done.stderr and not workdir.exists(), argv


# --- explain ----------------------------------------------------------------------------------------------

def test_explain_shows_domain_and_link_values_whole():
    host, page = "www.geograph.org.uk", "https://www.geograph.org.uk/photo/7436262"
    result = {
        "image_id": "4f70f6bc-605a-4043-9385-d84b249dd3ad", "catalog": {}, "model_version": "v1", "scored_at": "t",
        "popularity": {"value": 0.5, "source": "predicted", "explanation": "predicted"},
        "authority": {"value": 0.2, "source": "prior", "explanation": "prior",
                      "domain": {"landing_host": host, "landing_domain": "geograph.org.uk"},
                      "links": {"available": True, "landing_url": page, "link_pages": 1, "embedding_pages": [page]}},
        "duplicates": {"available": False, "note": "no copies"},
    }
    text = format_text(result)
    assert f"  landing_host: {host}\n" in text and "  landing_domain: geograph.org.uk\n" in text
    assert f"  landing_url: {page}\n" in text
    assert "…" not in text


# --- with a cluster ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def demo_input(tmp_path_factory) -> Path:
    """A small generated catalog with image files, a crawl and a ranks file (nothing downloaded)."""
    from imagerank.demo import generate

    folder = tmp_path_factory.mktemp("cli-demo") / "input"
    generate(folder, rows=40)
    return folder


@pytest.fixture(scope="module")
def ingested(tmp_path_factory, demo_input):
    """`imagerank ingest` on its own LocalCluster, with progress on and Dask's default dashboard port taken."""
    workdir = tmp_path_factory.mktemp("cli-ingest") / "w"
    holder = socket.socket()
    try:
        holder.bind(("", 8787))  # if another process already holds it, the port is just as taken
        holder.listen()
    except OSError:
        pass
    try:
        done = imagerank("ingest", str(demo_input / "catalog.csv"), "--workdir", str(workdir),
                         env={"IMAGERANK_PROGRESS": "1"})
    finally:
        holder.close()
    assert done.returncode == 0, done.stderr
    return workdir, done


@pytest.mark.slow
def test_a_local_cluster_picks_a_free_dashboard_port_quietly(ingested):
    _, done = ingested
    assert "already in use" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith(DASHBOARD_LINE)]
    assert len(lines) == 1 and "http://127.0.0.1:" in lines[0]  # loopback only
    assert "8787" not in lines[0]


@pytest.mark.slow
def test_progress_goes_to_stderr_and_stdout_stays_json(ingested, demo_input, dask_client):
    workdir, done = ingested
    assert json.loads(done.stdout)["input_rows"] == 40
    assert "[imagerank] ingest: read + validate" in done.stderr and "Completed" in done.stderr  # the bar was drawn
    scheduler = dask_client.scheduler.address
    for argv in (["metadata"], ["pixels", "--images", str(demo_input / "images")]):
        stage = imagerank("features", *argv, "--workdir", str(workdir), "--scheduler", scheduler,
                          env={"IMAGERANK_PROGRESS": "1"})
        assert stage.returncode == 0, stage.stderr
        assert isinstance(json.loads(stage.stdout), dict), argv
        assert "Completed" in stage.stderr, argv


@pytest.mark.slow
def test_a_report_rebuilt_from_another_directory_has_thumbnails(demo_input, tmp_path, dask_client):
    """The run records its inputs as absolute paths: the report finds the images from any directory."""
    workdir = tmp_path / "w"
    done = imagerank("recalculate", "--catalog", "catalog.csv", "--images", "images", "--ranks", "ranks-domain.txt.gz",
                     "--crawl", "crawl.warc.gz", "--workdir", str(workdir), "--no-materialize", "--no-report",
                     "--scheduler", dask_client.scheduler.address, cwd=demo_input)  # relative paths, as typed
    assert done.returncode == 0, done.stderr
    run_id = json.loads(done.stdout)["run_id"]
    inputs = json.loads((workdir / "runs" / f"{run_id}.json").read_text())["inputs"]
    assert inputs["images"] == str(demo_input / "images")
    assert [f["path"] for f in inputs["catalog"]] == [str(demo_input / "catalog.csv")]
    assert inputs["ranks"][0]["path"] == str(demo_input / "ranks-domain.txt.gz")
    assert inputs["crawl"][0]["path"] == str(demo_input / "crawl.warc.gz")

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    report = imagerank("report", "--workdir", str(workdir), "--output", "report.html", "--importance-rows", "50",
                       cwd=elsewhere)
    assert report.returncode == 0, report.stderr
    assert (elsewhere / "report.html").read_text(encoding="utf-8").count("data:image/jpeg;base64,") >= 8

    listed = imagerank("runs", "--workdir", str(workdir), cwd=elsewhere)
    assert listed.returncode == 0 and listed.stdout.startswith(run_id)

    import pandas as pd

    hosts = pd.read_parquet(workdir / "features" / "metadata", columns=["image_id", "landing_host"])
    geograph = hosts[hosts["landing_host"] == "www.geograph.org.uk"]["image_id"].iloc[0]
    explained = imagerank("explain", geograph, "--workdir", str(workdir), "--no-contributions")
    assert explained.returncode == 0, explained.stderr
    assert "  landing_host: www.geograph.org.uk\n" in explained.stdout


@pytest.mark.slow
def test_the_text_stage_has_its_own_command(ingested, dask_client):
    workdir, _ = ingested
    stage = imagerank("features", "text", "--workdir", str(workdir), "--scheduler", dask_client.scheduler.address)
    assert stage.returncode == 0, stage.stderr
    assert json.loads(stage.stdout) == {"rows": 40}
    import pandas as pd

    text = pd.read_parquet(workdir / "features" / "text")
    catalog = pd.read_parquet(workdir / "catalog", columns=["image_id"])
    assert sorted(text["image_id"]) == sorted(catalog["image_id"])
