"""The report's data stays bounded whatever the catalog size: on a synthetic work directory with many more rows
than the report shows, every frame that reaches the report's process (from Dask or read directly) is bounded,
and the aggregates it draws are exact."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from imagerank.reporting import build, data, plots

ROWS = 50_000
PARTS = 20  # > split_every: the tree reduction takes two levels
PROVIDERS = ["flickr", "wikimedia", "smithsonian"]
SAMPLE_ROWS = 6_000  # the report's uniform sample (data.score_summary's default)
#: the longest frame the report may receive: its sample (per-provider samples and top lists are smaller)
BOUND = SAMPLE_ROWS


def _write(frame: pd.DataFrame, path: Path, parts: int = PARTS) -> None:
    path.mkdir(parents=True)
    for i, part in enumerate(np.array_split(np.arange(len(frame)), parts)):
        frame.iloc[part].to_parquet(path / f"part.{i:03d}.parquet", index=False)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """scores, catalog, four feature families, rejects and a run manifest; scores with many exact ties."""
    root = tmp_path_factory.mktemp("bounded")
    rng = np.random.default_rng(7)
    ids = [f"id-{i:06d}" for i in range(ROWS)]
    provider = rng.choice(PROVIDERS, ROWS, p=[0.6, 0.3, 0.1])
    observed = rng.random(ROWS) < 0.4
    scores = pd.DataFrame({
        "image_id": ids,
        "popularity": np.where(observed, rng.random(ROWS).round(3), 0.25),  # ties: every prior is 0.25
        "authority": rng.beta(2, 5, ROWS).round(4),
        "popularity_source": np.where(observed, "observed", "prior"),
        "authority_source": rng.choice(["domain_rank", "prior"], ROWS),
    })
    _write(scores, root / "scores")
    _write(pd.DataFrame({"image_id": ids, "provider": provider, "title": [f"title {i}" for i in range(ROWS)],
                         "foreign_landing_url": [f"https://example.org/{i}" for i in range(ROWS)],
                         "url": [f"https://img.example.org/{i}.jpg" for i in range(ROWS)],
                         "creator": rng.choice(["a", "b", "c"], ROWS)}), root / "catalog")
    _write(pd.DataFrame({"image_id": ids, "provider": provider}), root / "features" / "metadata")
    metric = np.where(observed, rng.integers(0, 5000, ROWS), np.nan)
    _write(pd.DataFrame({"image_id": ids, "metric_value": metric,
                         "observed_popularity": np.where(observed, scores["popularity"], np.nan)}),
           root / "features" / "popularity")
    _write(pd.DataFrame({"image_id": ids, "pixels_error": np.where(rng.random(ROWS) < 0.2, "not_found", None)}),
           root / "features" / "pixels")
    _write(pd.DataFrame({"image_id": ids, "has_link_evidence": rng.random(ROWS) < 0.05}), root / "features" / "links")
    _write(pd.DataFrame({"source": "catalog.csv", "row": np.arange(20_000),
                         "reason": rng.choice(["missing url", "duplicate identifier: kept a later row"], 20_000),
                         "stage": "ingest"}), root / "rejects")
    constants = {p: {"metric": "views", "percentile_value": 100.0, "constant": 17.647, "n_observed": 1}
                 for p in PROVIDERS}
    (root / "runs").mkdir()
    (root / "runs" / "20260101T000000Z.json").write_text(json.dumps({
        "run_id": "20260101T000000Z", "event_timestamp": "2026-01-01T00:00:00+00:00",
        "reconciliation": {"input_rows": ROWS + 20_000, "catalog_rows": ROWS, "rejected_rows": 20_000, "ok": True},
        "popularity": {"constants": constants}, "timings_s": {"ingest": 1.0, "score": 2.0}}))
    return root


@pytest.fixture(scope="module")
def truth(workdir) -> pd.DataFrame:
    """The whole scores-with-provider frame, loaded here only to check the report's aggregates against."""
    scores = pd.read_parquet(workdir / "scores")
    return scores.merge(pd.read_parquet(workdir / "catalog"), on="image_id", how="left")


def _lengths(value) -> list[int]:
    """Row counts of every frame, series or array inside ``value`` (tuples, lists and dicts are searched)."""
    if isinstance(value, (pd.DataFrame, pd.Series, np.ndarray)):
        return [len(value)]
    if isinstance(value, (list, tuple)):
        return [n for item in value for n in _lengths(item)]
    if isinstance(value, dict):
        return [n for item in value.values() for n in _lengths(item)]
    return []


@pytest.mark.slow
def test_report_of_a_large_workdir_receives_only_bounded_frames(workdir, dask_client, monkeypatch):
    """Fails if a full load comes back: every result the Dask client hands to this process, every frame read
    directly from Parquet and every frame a plot receives is at most the report's sample size."""
    from distributed import Client

    received: list[tuple[str, int]] = []
    original_get = Client.get

    def recording_get(self, *args, **kwargs):
        result = original_get(self, *args, **kwargs)
        received.extend(("dask", n) for n in _lengths(result))
        return result

    monkeypatch.setattr(Client, "get", recording_get)
    original_read = data.read_columns

    def recording_read(*args, **kwargs):
        frame = original_read(*args, **kwargs)
        received.append(("read_columns", len(frame)))
        return frame

    monkeypatch.setattr(data, "read_columns", recording_read)
    for name in ("score_distributions", "standardization_curves", "popularity_vs_authority", "coverage_bars",
                 "horizontal_bars"):
        def spy(*args, _original=getattr(plots, name), _name=name, **kwargs):
            received.extend((f"plots.{_name}", n) for n in _lengths(list(args) + list(kwargs.values())))
            return _original(*args, **kwargs)

        monkeypatch.setattr(plots, name, spy)

    page = build.build_report(workdir, thumbnails=False)

    assert received and any(source == "dask" for source, _ in received)  # the aggregates came from the cluster
    too_long = [(source, n) for source, n in received if n > BOUND]
    assert not too_long, f"frames longer than {BOUND} rows reached the report: {too_long}"
    for anchor in build.SECTIONS:
        assert f'<section id="{anchor}">' in page
    assert f"uniform sample of {SAMPLE_ROWS:,}" in page  # the scatter and the Spearman table say they sample


@pytest.mark.slow
def test_score_summary_aggregates_are_exact(workdir, truth, dask_client):
    summary = data.score_summary(workdir, top_k=3, browse_rows=25, sample_rows=500)
    assert summary.rows == ROWS and summary.sampled
    assert summary.providers == truth["provider"].value_counts().index.tolist()
    assert max(len(frame) for frame in summary.frames()) <= 500
    for provider, part in truth.groupby("provider"):
        stats = summary.stats.loc[provider]
        for column in ("popularity", "authority"):
            assert stats[f"{column}_count"] == len(part)
            assert stats[f"{column}_mean"] == pytest.approx(part[column].mean(), rel=1e-12)
            assert stats[f"{column}_median"] == part[column].median()  # exact, ties included
            assert stats[f"{column}_std"] == pytest.approx(part[column].std(), rel=1e-9)
            counts, n = summary.histograms[provider][column]
            assert n == len(part) and list(counts) == list(np.histogram(part[column], bins=data.PLOT_BINS)[0])
            ordered = part.sort_values([column, "image_id"])
            assert summary.top[column, provider]["image_id"].tolist() == ordered["image_id"].iloc[::-1].head(3).tolist()
            assert summary.bottom[column, provider]["image_id"].tolist() == ordered["image_id"].head(3).tolist()
    browse = truth.sort_values(["popularity", "authority", "image_id"], ascending=[False, False, True]).head(25)
    assert summary.browse["image_id"].tolist() == browse["image_id"].tolist()
    assert summary.sample["image_id"].is_unique and set(summary.sample["image_id"]) <= set(truth["image_id"])
    # uniform: each provider's share of the sample is close to its share of the catalog (500 rows: +-7 points)
    shares = summary.sample["provider"].value_counts(normalize=True)
    assert abs(shares["flickr"] - (truth["provider"] == "flickr").mean()) < 0.07


@pytest.mark.slow
def test_coverage_and_rejects_are_exact(workdir, truth, dask_client):
    table = data.coverage(workdir)
    pixels = pd.read_parquet(workdir / "features" / "pixels").merge(truth[["image_id", "provider"]], on="image_id")
    expected = pixels["pixels_error"].isnull().groupby(pixels["provider"]).mean()
    for provider, share in expected.items():
        assert table.loc[provider, "pixels"] == pytest.approx(share, rel=1e-12)
        assert table.loc[provider, "images"] == (truth["provider"] == provider).sum()
    assert np.isnan(table.loc["all providers", "EXIF"])  # no exif dataset: not computed, not zero
    assert table.loc["all providers", "images"] == ROWS
    rejects = pd.read_parquet(workdir / "rejects")
    counts = data.rejects_by_reason(workdir, {})
    assert counts.to_dict() == rejects["reason"].str.split(":").str[0].str.strip().value_counts().to_dict()
    examples = data.reject_examples(workdir, per_reason=2)
    assert len(examples) == 4 and examples["row"].tolist() == sorted(examples["row"].tolist())
    first = rejects.groupby(rejects["reason"].str.split(":").str[0], sort=False).head(2)
    assert examples["row"].tolist() == first["row"].tolist()


@pytest.mark.slow
def test_labelled_sample_is_bounded_and_uniform(workdir, dask_client):
    sample = data.labelled_ids(workdir, "popularity", limit=300)
    everything = data.labelled_ids(workdir, "popularity")
    assert len(sample) == 300 and sample["image_id"].is_unique
    assert set(sample["image_id"]) <= set(everything["image_id"]) and len(everything) > 10_000
    assert data.labelled_ids(workdir, "popularity", limit=300)["image_id"].tolist() == sample["image_id"].tolist()
    assert set(data.labelled_ids(workdir, "popularity", limit=300, seed=1)["image_id"]) != set(sample["image_id"])
