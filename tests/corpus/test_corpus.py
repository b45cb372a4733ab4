"""The whole `imagerank recalculate` over the generated bad-input corpus, against a control run without the bad rows."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from badcorpus import write_corpus  # noqa: E402
from imagerank.graph import warc as W  # noqa: E402

SECRET = "s3cr3t-Redis-Pa55word-7f1c"
OBJECT_STORE_SECRET = "AKIA-FAKE-SECRET-KEY-91b2"


def _read(workdir: Path, name: str, columns=None) -> pd.DataFrame:
    return pd.read_parquet(workdir / name, columns=columns)


def _run(catalogs, workdir, corpus, crawls, dask_client):
    from pipelines.recalculate import RecalculateOptions, recalculate

    options = RecalculateOptions(catalog=[str(p) for p in catalogs], workdir=workdir, images=str(corpus.images),
                                 crawl=[str(p) for p in crawls], ranks=[str(p) for p in corpus.ranks],
                                 materialize=False, scheduler=dask_client.scheduler.address)
    return recalculate(options, quiet=True)


@pytest.mark.slow
def test_recalculate_over_the_bad_input_corpus(tmp_path, dask_client, monkeypatch, capfd, caplog):
    """A run over good + hostile inputs finishes, accounts for every input row, and gives the good rows exactly
    the values a run without the hostile rows gives them — for the values that cannot depend on anything else.

    Both runs see the same image folder, crawl files and ranks file; only the catalog differs (the hostile run's
    catalog adds rejected rows, split across CSV / TSV-latin-1 / malformed / cut-gzip files). So:

    - every good row is in ``catalog/`` and ``scores/`` in both runs; every hostile row is in ``rejects/``;
    - the *observed* popularity (provider percentile over catalog rows only) and its source are identical:
      rejected rows never reach the percentile;
    - the domain-rank authority (``features/domains``: ranks file + own host graph of the same crawls) is
      identical;
    - rows whose *image* is hostile (truncated, bomb, EXIF loop, symlink out of the root, ...) stay valid
      catalog rows in both runs, with the same pixel error codes;
    - *predicted* values are not compared: the model is retrained in each run and may see its rows in another
      order/partitioning (the rows are split over four files), which is allowed to change the fit.
    """
    monkeypatch.setenv("IMAGERANK_REDIS", f"127.0.0.1:6399,password={SECRET}")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", OBJECT_STORE_SECRET)
    corpus = write_corpus(tmp_path / "corpus")
    hostile_dir, control_dir = tmp_path / "hostile-run", tmp_path / "control-run"
    hostile = _run(corpus.catalogs, hostile_dir, corpus, corpus.crawls, dask_client)
    control = _run([corpus.good_catalog], control_dir, corpus, corpus.crawls, dask_client)

    # reconciliation: input = catalog + rejects, every catalog row scored, scores in [0, 1]
    rec = hostile["reconciliation"]
    assert rec["ok"] and rec["input_rows"] == rec["catalog_rows"] + rec["rejected_rows"]
    assert rec["catalog_rows"] == len(corpus.good_ids) == control["reconciliation"]["catalog_rows"]
    assert rec["rejected_rows"] >= corpus.n_bad_rows + 2 + 1  # hostile rows, 2 malformed lines, the gzip cut
    rejects = _read(hostile_dir, "rejects")
    assert rejects["reason"].notna().all() and (rejects["reason"].str.len() > 0).all()
    kinds = set(rejects["reason"].str.split(": ").str[0])
    assert {"missing identifier", "identifier is not a UUID", "NUL character", "field too long", "truncated file",
            "malformed line", "meta_data is not a JSON object", "tags is not a JSON list"} <= kinds, kinds
    catalog_ids = set(_read(hostile_dir, "catalog", ["image_id"])["image_id"])
    assert catalog_ids == set(corpus.good_ids)

    scores = {name: _read(d, "scores").set_index("image_id").sort_index() for name, d in
              (("hostile", hostile_dir), ("control", control_dir))}
    for frame in scores.values():
        assert set(frame.index) == set(corpus.good_ids) and frame.index.is_unique
        assert frame[["popularity", "authority"]].apply(lambda c: c.between(0, 1)).all().all()
    h, c = scores["hostile"], scores["control"]
    observed = c["popularity_source"] == "observed"
    assert observed.any() and (h["popularity_source"] == "observed").equals(observed)
    assert (h.loc[observed, "popularity"] == c.loc[observed, "popularity"]).all()

    domains = {name: _read(d, "features/domains").set_index("image_id").sort_index()["domain_authority"]
               for name, d in (("hostile", hostile_dir), ("control", control_dir))}
    assert domains["control"].notna().any()
    pd.testing.assert_series_equal(domains["hostile"], domains["control"])

    # hostile images: valid rows, scored, each with its error code (limits reported)
    pixels = {name: _read(d, "features/pixels", ["image_id", "pixels_error"]).set_index("image_id")["pixels_error"]
              for name, d in (("hostile", hostile_dir), ("control", control_dir))}
    pd.testing.assert_series_equal(pixels["hostile"].sort_index(), pixels["control"].sort_index())
    for image_id, expected in corpus.bad_image_ids.items():
        code = pixels["hostile"][image_id]
        code = "ok" if code is pd.NA or code is None else code
        assert expected == "any" or code in expected.split("|"), (image_id, code, expected)
        assert code != "internal_error"
    assert hostile["images"]["pixels"]["errors"].get("too_many_pixels", 0) >= 2

    # every crawl file read; every WARC record ends as a page, a reject or a counted skip; limits are counts
    graph = json.loads((hostile_dir / "graph" / "summary.json").read_text())
    assert graph["crawl_files"] == len(corpus.crawls) and graph["pages"] > 0
    counts = _read(hostile_dir, "graph/extract_counts")
    crawl_rejects = _read(hostile_dir, "graph/rejects")
    for source, per_file in counts.groupby("source_file"):
        c = dict(zip(per_file["counter"], per_file["count"]))
        rejected = crawl_rejects[(crawl_rejects["source_file"] == source) & (crawl_rejects["reason"] != W.R_READ_ERROR)]
        outcomes = (c.get("pages_html", 0) + c.get("pages_wat", 0) + c.get("pages_redirect", 0) + len(rejected)
                    + sum(v for k, v in c.items() if k.startswith("skipped_record:")))
        assert outcomes == c.get("records", 0), (source, c)
    # the spam page links 6,000 URLs: the links over the per-page cap are counted, not kept
    assert graph["skipped_links_by_reason"].get("page_cap", 0) >= 6_000 - W.MAX_LINKS_PER_PAGE, graph

    # secrets from the environment appear in no manifest, log or output
    captured = capfd.readouterr()
    outputs = [captured.out, captured.err, caplog.text, json.dumps(hostile, default=str)]
    outputs += [p.read_text(errors="replace") for d in (hostile_dir, control_dir) for p in (d / "runs").rglob("*")
                if p.is_file()]
    for secret in (SECRET, OBJECT_STORE_SECRET):
        assert not any(secret in out for out in outputs)
    print(f"corpus: {sum(corpus.inputs.values())} hostile inputs ({corpus.inputs})")
