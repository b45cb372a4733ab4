"""Inputs read from object storage: the same rows, rejects, ranks, crawl edges and link graph rows as from
local files, against a real S3 API server over HTTP (moto's standalone server) and a real Dask cluster; a
missing or unreadable URL refused before anything is written.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pandas as pd
import pytest

from imagerank import storage
from imagerank.testing import WorkerEnvironment, s3_environment, shared_fixture

LINKGRAPH_DIR = shared_fixture("linkgraph/cccatalog-cc-main-2018-22")
RANKS = sorted(shared_fixture("ranks").glob("*.txt.gz"))
WARCS = sorted(shared_fixture("warc").glob("*.warc.gz"))


def upload(local: Path, url: str) -> str:
    with open(local, "rb") as source, storage.open_file(url, "wb") as target:
        target.write(source.read())
    return url


def prefix(name: str) -> str:
    """A fresh key prefix per test: the server lives for the whole session."""
    return f"s3://imagerank/{name}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def s3_cluster(s3_endpoint, dask_client):
    """The session's Dask cluster, its workers pointed at the S3 server (they may have started before it, and
    a worker restarted after a kill by another test gets it too)."""
    dask_client.register_plugin(WorkerEnvironment(s3_environment(s3_endpoint)))
    return dask_client


# ------------------------------------------------------------------------------------------- the catalog

def catalog_variants(tmp: Path, sample: Path) -> dict[str, list[Path]]:
    """The sample catalog as CSV, gzip CSV, Parquet and a folder of three CSV files (every value as text, as
    the export has it)."""
    text = pd.read_csv(sample, dtype=str, keep_default_na=False)
    gz = tmp / "catalog.csv.gz"
    gz.write_bytes(gzip.compress(sample.read_bytes()))
    parquet = tmp / "catalog.parquet"
    text.to_parquet(parquet, index=False, row_group_size=400)
    folder = tmp / "split"
    folder.mkdir()
    for i, start in enumerate(range(0, len(text), -(-len(text) // 3))):
        text.iloc[start:start + -(-len(text) // 3)].to_csv(folder / f"part-{i}.csv", index=False)
    (folder / "_SUCCESS").write_text("")  # a marker file beside the parts, as Spark exports leave
    return {"csv": [sample], "csv.gz": [gz], "parquet": [parquet], "prefix": [folder]}


def ingest_result(client, catalog: list[str], workdir: Path) -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    from pipelines.ingest import run_ingest

    counts = run_ingest(client, catalog, workdir, block_bytes=256 << 10)  # several byte ranges per CSV
    rows = pd.read_parquet(workdir / "catalog").sort_values("image_id").reset_index(drop=True)
    rejects = pd.read_parquet(workdir / "rejects").sort_values(["source_file", "source_row", "reason"],
                                                               na_position="last").reset_index(drop=True)
    return counts, rows, rejects


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["csv", "csv.gz", "parquet", "prefix"])
def test_catalog_from_s3_is_the_catalog_from_local_files(variant, s3_cluster, sample_catalog, tmp_path):
    local = catalog_variants(tmp_path, Path(sample_catalog))[variant]
    base = prefix(f"catalog-{variant.replace('.', '-')}")
    if variant == "prefix":
        for f in sorted(local[0].iterdir()):
            upload(f, f"{base}/export/{f.name}")
        remote = [f"{base}/export/"]
    else:
        remote = [upload(local[0], f"{base}/{local[0].name}")]
    local_counts, local_rows, local_rejects = ingest_result(s3_cluster, [str(p) for p in local], tmp_path / "local")
    s3_counts, s3_rows, s3_rejects = ingest_result(s3_cluster, remote, tmp_path / "s3")

    files = dict(zip(s3_counts["files"], local_counts["files"]))
    assert all(f.startswith(f"{base}/") for f in files) and len(files) == (3 if variant == "prefix" else 1)
    assert local_counts["input_rows"] == s3_counts["input_rows"] > 0
    assert local_counts["blocks"] == s3_counts["blocks"]
    assert {k: v for k, v in s3_counts.items() if k != "files"} == {k: v for k, v in local_counts.items()
                                                                    if k != "files"}
    assert len(s3_rows) == local_counts["catalog_rows"]
    for got, expected in ((s3_rows, local_rows), (s3_rejects, local_rejects)):
        renamed = got["source_file"].map(files).astype(got["source_file"].dtype)
        pd.testing.assert_frame_equal(got.assign(source_file=renamed), expected)


def test_a_prefix_lists_only_catalog_files(s3_endpoint, tmp_path):
    from imagerank.catalog.ingest import CatalogError, expand_catalog_paths

    base = prefix("listing")
    for name in ("b.csv", "a.tsv.gz", "nested/c.parquet", "_SUCCESS", ".hidden.csv", "notes.txt"):
        with storage.open_file(f"{base}/{name}", "wb") as handle:
            handle.write(b"x")
    assert expand_catalog_paths([f"{base}/"]) == [f"{base}/a.tsv.gz", f"{base}/b.csv", f"{base}/nested/c.parquet"]
    with storage.open_file(f"{base}-empty/notes.txt", "wb") as handle:
        handle.write(b"x")
    with pytest.raises(CatalogError, match="holds no .csv, .tsv or .parquet"):
        expand_catalog_paths([f"{base}-empty"])


# ----------------------------------------------------------------------------------- ranks, crawl, graph

@pytest.mark.parametrize("ranks", RANKS, ids=lambda p: p.name)
def test_ranks_from_s3_are_the_ranks_from_local_files(ranks, s3_endpoint):
    from imagerank.features.domains import read_ranks

    url = upload(ranks, f"{prefix('ranks')}/{ranks.name}")
    local, remote = read_ranks(str(ranks)), read_ranks(url)
    assert (remote.level, remote.rows, remote.skipped) == (local.level, local.rows, local.skipped)
    assert local.rows >= 1000
    pd.testing.assert_frame_equal(remote.table, local.table)
    wanted = set(local.table["name"].iloc[::7])
    assert set(read_ranks(url, wanted).table["name"]) == wanted


def test_a_missing_ranks_url_is_a_ranks_file_error(s3_endpoint):
    from imagerank.features.domains import RanksFileError, read_ranks

    with pytest.raises(RanksFileError, match="cannot be opened"):
        read_ranks(f"{prefix('ranks')}/missing.txt.gz")


@pytest.mark.parametrize("warc", WARCS, ids=lambda p: p.name)
def test_crawl_edges_from_s3_are_the_edges_from_local_files(warc, s3_endpoint):
    from imagerank.graph.warc import extract_file

    url = upload(warc, f"{prefix('crawl')}/{warc.name}")
    local = extract_file(str(warc), source_name=warc.name)
    remote = extract_file(url, source_name=warc.name)
    assert len(local[0]) > 0
    for got, expected in zip(remote, local):
        pd.testing.assert_frame_equal(got, expected)


@pytest.mark.slow
def test_linkgraph_rows_from_s3_are_the_rows_from_local_files(s3_cluster):
    """A prefix holding two cccatalog extraction files: listed, planned from the Parquet footers and read
    (the first row groups, on the workers) into the same link rows and rejects as the local files."""
    from imagerank.graph import linkgraph as LG

    files = sorted(LINKGRAPH_DIR.glob("*.parquet"))[:2]
    base = prefix("linkgraph")
    for f in files:
        upload(f, f"{base}/{f.name}")
    remote_files = LG.expand_paths([f"{base}/"])
    assert remote_files == [f"{base}/{f.name}" for f in files]
    local_parts, remote_parts = LG.plan_parts([str(f) for f in files]), LG.plan_parts(remote_files)
    names = dict(zip(remote_files, map(str, files)))
    assert [(names[p.path], p.kind, p.fmt, p.row_group, p.first_row) for p in remote_parts] == \
        [(p.path, p.kind, p.fmt, p.row_group, p.first_row) for p in local_parts]
    assert {p.kind for p in local_parts} == {"cccatalog"}
    picked = [0, len(local_parts) - 1]  # the first row group of the first file, the last of the second
    local = s3_cluster.gather(s3_cluster.map(LG.read_part, [local_parts[i] for i in picked], pure=False))
    remote = s3_cluster.gather(s3_cluster.map(LG.read_part, [remote_parts[i] for i in picked], pure=False))
    for got, expected in zip(remote, local):
        assert len(expected) > 0 and expected["src_domain"].notna().any()
        renamed = got["source_file"].map(names).astype(got["source_file"].dtype)
        pd.testing.assert_frame_equal(got.assign(source_file=renamed), expected)


# ------------------------------------------------------------------------------------ checks and the CLI

def imagerank(*argv: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "imagerank.cli", *argv], capture_output=True, text=True,
                          timeout=300, env=env, cwd=cwd)


@pytest.mark.slow  # two CLI processes per input kind
@pytest.mark.parametrize("kind, flag", [("catalog", "--catalog"), ("crawl", "--crawl"), ("ranks", "--ranks"),
                                        ("linkgraph", "--linkgraph")])
def test_a_missing_s3_input_fails_like_a_missing_local_file(kind, flag, s3_endpoint, sample_catalog, tmp_path):
    """One line naming the URL, the same exit code as a missing local file, and no work directory."""
    workdir = tmp_path / "w"
    missing = f"{prefix(kind)}/missing.csv"
    catalog = [] if kind == "catalog" else ["--catalog", str(sample_catalog)]
    done = imagerank("recalculate", *catalog, flag, missing, "--workdir", str(workdir))
    local = imagerank("recalculate", *catalog, flag, str(tmp_path / "missing.csv"), "--workdir", str(workdir))
    assert done.returncode == local.returncode == 1, done.stderr
    assert f"no such {kind} file" in done.stderr and missing in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    assert done.stdout == "" and not workdir.exists()


def test_bad_storage_options_are_a_usage_error(s3_endpoint, sample_catalog, tmp_path):
    workdir = tmp_path / "w"
    for options, message in [("{anon", "is not JSON"), ("[1, 2]", "must be a JSON object")]:
        for argv in (["--storage-options", options, "recalculate"], ["recalculate", "--storage-options", options]):
            done = imagerank(*argv, "--catalog", str(sample_catalog), "--workdir", str(workdir))
            assert done.returncode == 2, (argv, done.stderr)
            assert "--storage-options" in done.stderr and message in done.stderr, done.stderr
            assert not workdir.exists()


@pytest.mark.slow  # the client gives up on the dead endpoint after its connect timeout
def test_storage_options_reach_the_input_checks(s3_endpoint, sample_catalog, tmp_path):
    """--storage-options override the environment: an endpoint where nothing listens makes an existing
    catalog unreadable, in one line, before any work directory exists."""
    url = upload(Path(sample_catalog), f"{prefix('options')}/catalog.csv")
    workdir = tmp_path / "w"
    dead = json.dumps({"endpoint_url": "http://127.0.0.1:9", "config_kwargs": {"retries": {"max_attempts": 1},
                                                                               "connect_timeout": 2}})
    done = imagerank("--storage-options", dead, "recalculate", "--catalog", url, "--workdir", str(workdir))
    assert done.returncode == 1 and f"cannot read catalog file {url}" in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and not workdir.exists()


def test_input_checks_accept_urls_and_keep_local_paths_absolute(s3_endpoint, tmp_path, monkeypatch):
    from imagerank.inputs import InputError, check_files

    monkeypatch.chdir(tmp_path)
    (tmp_path / "ranks.txt.gz").write_bytes(RANKS[0].read_bytes())
    url = upload(RANKS[0], f"{prefix('check')}/ranks.txt.gz")
    assert check_files("ranks", ["ranks.txt.gz", url]) == [str(tmp_path / "ranks.txt.gz"), url]
    folder = url.rsplit("/", 1)[0]
    assert check_files("linkgraph", [folder], folders=True) == [folder]
    with pytest.raises(InputError, match="no such ranks file"):
        check_files("ranks", [folder])  # a prefix is not a ranks file


@pytest.mark.slow
def test_cli_storage_options_reach_the_workers(s3_endpoint, sample_catalog, tmp_path):
    """`imagerank --storage-options '{"endpoint_url": ...}' ingest s3://...` with no AWS_ENDPOINT_URL in the
    environment: the driver's checks and the workers of the LocalCluster it starts all read the catalog
    through the options."""
    url = upload(Path(sample_catalog), f"{prefix('options')}/catalog.csv")
    env = {k: v for k, v in os.environ.items() if k not in ("AWS_ENDPOINT_URL", storage.OPTIONS_ENV)}
    options = json.dumps({"endpoint_url": s3_endpoint})
    done = imagerank("--storage-options", options, "ingest", url, "--workdir", str(tmp_path / "w"), env=env,
                     cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    counts = json.loads(done.stdout)
    assert counts["files"] == [url] and counts["input_rows"] == counts["catalog_rows"] + counts["rejected_rows"]
    assert counts["input_rows"] == len(pd.read_csv(sample_catalog, dtype=str))
    assert len(pd.read_parquet(tmp_path / "w" / "catalog")) == counts["catalog_rows"]


def test_help_documents_storage_options_and_the_environment(capsys):
    from imagerank.cli import build_parser

    for argv in ([], ["recalculate"], ["ingest"]):
        with pytest.raises(SystemExit):
            build_parser().parse_args([*argv, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert "--storage-options JSON" in text and "IMAGERANK_STORAGE_OPTIONS" in text, argv
        assert "AWS_ENDPOINT_URL" in text and "AWS_ACCESS_KEY_ID" in text, argv
        assert "s3://bucket/export/" in text, argv


def test_storage_options_given_to_the_cli_are_kept_for_the_workers(monkeypatch):
    """main() puts --storage-options into IMAGERANK_STORAGE_OPTIONS, which LocalCluster workers inherit."""
    from imagerank.cli import main

    monkeypatch.setenv(storage.OPTIONS_ENV, "{}")  # restored after the test
    assert main(["--storage-options", '{"anon": true}', "runs", "--workdir", "/nonexistent/w"]) == 1
    assert json.loads(os.environ[storage.OPTIONS_ENV]) == {"anon": True}
    assert storage.storage_options("s3://b/k") == {"anon": True, "use_listings_cache": False}


def test_url_fingerprints_follow_the_object(s3_endpoint, tmp_path):
    """Run keys see a changed object behind the same URL, as they see a changed local file."""
    from imagerank.inputs import fingerprint
    from imagerank.runs import file_fingerprint

    url = f"{prefix('fingerprint')}/ranks.txt.gz"
    with storage.open_file(url, "wb") as handle:
        handle.write(b"first")
    first = fingerprint(url)
    assert first["path"] == url and first["size"] == 5 and first["etag"]
    with storage.open_file(url, "wb") as handle:
        handle.write(b"second")
    second = fingerprint(url)
    assert second["size"] == 6 and second["etag"] != first["etag"]
    folder = fingerprint(url.rsplit("/", 1)[0])
    assert folder["directory"] and [f["path"] for f in folder["files"]] == [url]
    local = tmp_path / "f.txt"
    local.write_text("x")
    assert fingerprint(str(local)) == file_fingerprint(local)
