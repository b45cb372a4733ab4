"""Training at growing catalog sizes: the project's bounded path vs the previous one, same data, same cluster.

    python -m benchmarks.bench_train [--quick] [--sizes N ...] [--repeat R] [--reference-max-rows N]
                                     [--link-evidence-share S]

Data: Openverse-shaped joined feature rows (the real feature columns of the metadata, popularity, domains,
links and text families, with their dtypes), generated partition by partition on the workers of a
LocalCluster (2 single-threaded workers, explicit memory limit): ~45 % Flickr rows with views, ~15 %
Wikimedia rows with (mostly zero) usage, the rest from providers without a metric; ~20 images per creator;
5 % of rows (``--link-evidence-share``) with link evidence over 2,000 landing domains; views and link
authority driven by a hidden quality that some columns (text length, tags, dimensions) reflect with noise.

Paths, each on the same persisted frame:
- ``project``: :func:`pipelines.train.train_models` with :meth:`TrainingLimits.from_env` (the defaults unless
  ``IMAGERANK_TRAIN_*`` is set, as in a run; samples drawn
  and persisted on the workers, handed to the training task as partition futures, folds through joblib's
  Dask backend, forests bounded to ``forest_max_samples`` rows per tree, authority evaluated on a sample);
- ``reference``: the previous path: the labelled rows (a uniform sample of at most 100,000 per provider)
  and up to 2,000,000 link-evidence rows computed into the driver and submitted with the task, unbounded
  forests, every fold and variant on every row, folds one after another in one task. It costs hours past a
  few tens of thousands of rows on two cores, so it runs only up to ``--reference-max-rows``.

Per size and path (median over ``--repeat`` runs): seconds, bytes of the two fitted models (joblib), driver
peak memory (tracemalloc above the level at the call: what the driver allocates, numpy and pandas buffers
included), and the card's headline figures (popularity creator-grouped CV Spearman of the ensemble candidate
for Flickr, authority domain-grouped CV Spearman) to show the bounds keep them. Progress on stderr; ends with
one JSON line on stdout.

Why the time stops growing: past the size where every bound is reached, the models see the same number of
rows (:func:`training_sample`); only the sampling passes (counts, a filter) grow with the catalog, and
they spread over the workers. A larger ``--link-evidence-share`` reaches ``authority_rows`` at a smaller
catalog: with 0.25, 400 k rows draw the sample that 2 M rows draw at the default 0.05.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import time
import tracemalloc

import joblib
import numpy as np
import pandas as pd

from imagerank.features.domains import DOMAIN_META
from imagerank.features.links import LINKS_META
from imagerank.features.metadata import METADATA_META
from imagerank.features.text import TEXT_META
from imagerank.models.train import TrainingLimits

ROWS_PER_PARTITION = 50_000
PROVIDERS = {"flickr": 0.45, "wikimedia": 0.15, "geographorguk": 0.15, "smithsonian": 0.10, "rawpixel": 0.10,
             "met": 0.05}
LINK_EVIDENCE_SHARE = 0.05
LANDING_DOMAINS = 2_000
IMAGES_PER_CREATOR = 20
#: the providers whose rows carry a popularity metric (flickr views, wikimedia usage; see feature_partition)
LABELLED_PROVIDERS = ("flickr", "wikimedia")
VOCABULARY = np.array([f"w{i}" for i in range(3_000)])
#: The previous path's limits: 100,000 labelled rows per provider and 2,000,000 authority rows, no other bound.
REFERENCE_LIMITS = TrainingLimits(rows_per_provider=100_000, authority_rows=2_000_000, evaluation_rows=None,
                                  forest_max_samples=None)


def feature_meta() -> pd.DataFrame:
    """The joined frame's columns and dtypes, from the families' own metas."""
    meta = METADATA_META.copy()
    meta["metric_value"] = pd.Series(dtype="float64")
    meta["observed_popularity"] = pd.Series(dtype="float64")
    for family in (DOMAIN_META, LINKS_META, TEXT_META):
        for column in family.columns:
            if column not in meta:
                meta[column] = family[column]
    return meta


def training_sample(rows: int, limits: TrainingLimits, link_evidence_share: float = LINK_EVIDENCE_SHARE) -> dict:
    """The rows the bounded path trains and evaluates on for a synthetic catalog of ``rows`` rows (expected
    counts from the generator's shares): what sets the training time once every bound is reached."""
    def bounded(n: float, limit: int | None) -> int:
        return int(round(n if limit is None else min(n, limit)))

    labelled = {p: bounded(rows * share, limits.rows_per_provider) for p, share in PROVIDERS.items()
                if p in LABELLED_PROVIDERS}
    linked = rows * link_evidence_share
    return {"popularity_rows": labelled, "authority_rows": bounded(linked, limits.authority_rows),
            "authority_evaluation_rows": bounded(bounded(linked, limits.authority_rows), limits.evaluation_rows),
            "forest_max_samples": limits.forest_max_samples,
            "saturated": all(limit is not None and n >= limit for n, limit in
                             [*((rows * PROVIDERS[p], limits.rows_per_provider) for p in labelled),
                              (linked, limits.authority_rows)])}


def feature_partition(index: int, rows: int, total_rows: int, seed: int = 0,
                      link_evidence_share: float = LINK_EVIDENCE_SHARE) -> pd.DataFrame:
    """One partition of synthetic joined feature rows (generated on a worker)."""
    rng = np.random.default_rng([seed, index])
    meta = feature_meta()
    names, shares = list(PROVIDERS), np.array(list(PROVIDERS.values()))
    provider = rng.choice(names, size=rows, p=shares / shares.sum())
    quality = rng.normal(size=rows)
    noisy = lambda scale=1.0: quality + rng.normal(0, scale, rows)  # noqa: E731
    creators = max(1, total_rows // IMAGES_PER_CREATOR)
    out = pd.DataFrame(index=pd.RangeIndex(rows))
    out["image_id"] = [f"img-{index:05d}-{i:06d}" for i in range(rows)]
    out["provider"] = provider
    out["source"] = provider
    out["creator"] = [f"{p}-c{c}" for p, c in zip(provider, rng.integers(0, creators, rows))]
    domain = rng.integers(0, LANDING_DOMAINS, rows)
    out["landing_domain"] = [f"d{d}.org" for d in domain]
    out["landing_host"] = [f"www.d{d}.org" for d in domain]
    for column in meta.columns:
        if column in out:
            continue
        dtype = meta[column].dtype
        if column.startswith(("license_", "has_", "category_", "title_is", "watermarked", "landing_crawled")):
            values = rng.random(rows) < 0.3
        elif column in ("text_chars", "description_chars", "title_chars"):
            values = np.round(np.exp(3.5 + 0.4 * noisy(1.0)))
        elif column in ("tag_count", "text_tokens", "tag_words", "title_words", "description_words"):
            values = np.round(np.exp(1.5 + 0.3 * noisy(1.5)))
        elif column in ("age_days", "taken_age_days"):
            values = rng.uniform(30, 5_000, rows)
        elif column in ("width", "height"):
            values = np.round(np.exp(7 + 0.2 * noisy(2.0)))
        else:
            values = rng.normal(size=rows)
        if pd.api.types.is_bool_dtype(dtype):
            out[column] = np.asarray(values, dtype=bool)
        elif pd.api.types.is_integer_dtype(dtype):
            out[column] = np.abs(np.round(np.asarray(values, dtype="float64") * 3)).astype(dtype)
        elif pd.api.types.is_numeric_dtype(dtype):
            out[column] = np.asarray(values, dtype="float64")
    # domain-level columns are constant within a landing domain
    for column in ("host_rank_score", "domain_rank_score", "host_pr_val", "domain_pr_val", "domain_n_hosts",
                   "domain_authority"):
        out[column] = np.random.default_rng([seed, 7, len(column)]).random(LANDING_DOMAINS)[domain]
    views = np.round(np.exp(3 + quality + rng.normal(0, 0.7, rows)))
    usage = np.where(rng.random(rows) < 0.9, 0.0, np.round(np.exp(0.5 * noisy(1.0))))
    metric = np.where(provider == "flickr", views, np.where(provider == "wikimedia", usage, np.nan))
    out["metric_value"] = metric
    out["observed_popularity"] = metric / (metric + 20.0)
    evidence = rng.random(rows) < link_evidence_share
    out["has_link_evidence"] = evidence
    out["link_authority"] = np.where(evidence, 1 / (1 + np.exp(-noisy(1.0))), np.nan)
    lengths = np.clip(out["text_tokens"].to_numpy(dtype="int64"), 1, 60)
    out["text"] = [" ".join(rng.choice(VOCABULARY, size=k)) for k in lengths]
    out = out[list(meta.columns)]
    return out.astype({c: meta[c].dtype for c in meta.columns})


def synthetic_features(client, rows: int, seed: int = 0, link_evidence_share: float = LINK_EVIDENCE_SHARE):
    """The persisted synthetic frame, ``rows`` rows, on the cluster."""
    import dask.dataframe as dd

    parts = [min(ROWS_PER_PARTITION, rows - start) for start in range(0, rows, ROWS_PER_PARTITION)]
    n = len(parts)
    frame = dd.from_map(feature_partition, range(n), parts, [rows] * n, [seed] * n, [link_evidence_share] * n,
                        meta=feature_meta(), enforce_metadata=False)
    with client.as_current():
        return frame.persist()


def reference_train(client, features, *, random_state: int = 0) -> dict:
    """The previous path: samples computed into the driver and shipped with the tasks, nothing bounded."""
    from imagerank.features.registry import PROVIDER_PROXIES, model_feature_columns
    from imagerank.models.popularity_model import evidence_columns, train_popularity
    from imagerank.models.train import train_authority
    from pipelines.train import provider_evidence

    limits = REFERENCE_LIMITS
    columns = model_feature_columns(features)
    labelled = features[features["observed_popularity"].notnull()]
    counts = labelled["provider"].value_counts().compute()
    fractions = {str(p): min(1.0, limits.rows_per_provider / n) for p, n in counts.items()}
    if any(f < 1.0 for f in fractions.values()):
        def sample(part: pd.DataFrame) -> pd.DataFrame:
            keep = [g.sample(frac=fractions.get(str(p), 1.0), random_state=random_state)
                    if fractions.get(str(p), 1.0) < 1 else g for p, g in part.groupby("provider", observed=True)]
            return pd.concat(keep) if keep else part.iloc[:0]
        labelled = labelled.map_partitions(sample, meta=labelled._meta)
    training = labelled.compute().sort_values("image_id", ignore_index=True)
    evidence = provider_evidence(features, evidence_columns(columns))
    popularity = client.submit(train_popularity, training, [c for c in columns if c not in PROVIDER_PROXIES],
                               random_state=random_state, provider_evidence=evidence, limits=limits, pure=False)
    rows = features.map_partitions(lambda p: p[p["has_link_evidence"].fillna(False).astype(bool)], meta=features._meta)
    n = int(rows.map_partitions(len).sum().compute())
    if n > limits.authority_rows:
        rows = rows.sample(frac=limits.authority_rows / n, random_state=random_state)
    authority = client.submit(train_authority, rows.compute(), columns, random_state=random_state, limits=limits,
                              pure=False)
    return {"popularity": popularity.result(), "authority": authority.result()}


def project_train(client, features, *, random_state: int = 0) -> dict:
    from pipelines.train import train_models

    return train_models(client, features, random_state=random_state, limits=TrainingLimits.from_env())


def model_bytes(model) -> int:
    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    return buffer.tell()


def card_figures(models: dict) -> dict:
    """The headline figures each model's card would show."""
    popularity = models["popularity"].metrics.get("evaluation", {}).get("providers", {}).get("flickr", {})
    authority = models["authority"].metrics.get("evaluation", {}).get("grouped_cv", {})
    return {"popularity_flickr_ensemble_cv_spearman": (popularity.get("grouped_cv") or {}).get("ensemble", {})
            .get("spearman"),
            "popularity_flickr_rows": popularity.get("rows"),
            "authority_cv_spearman": authority.get("spearman"), "authority_cv_rows": authority.get("rows"),
            "authority_training_rows": models["authority"].metrics.get("training_rows")}


def measure(path, client, features) -> dict:
    import gc

    gc.collect()
    tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    t0 = time.perf_counter()
    models = path(client, features)
    seconds = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    return {"seconds": seconds, "driver_peak_mb": peak / 2**20,
            "model_bytes": sum(model_bytes(m) for m in models.values()), **card_figures(models)}


def median_of(runs: list[dict]) -> dict:
    out = {}
    for key in runs[0]:
        values = [r[key] for r in runs if isinstance(r[key], (int, float)) and r[key] is not None]
        out[key] = statistics.median(values) if values else runs[0][key]
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (minutes on two cores)")
    ap.add_argument("--sizes", type=int, nargs="+", help="catalog rows (default 100k 500k 2M; --quick 4k 16k)")
    ap.add_argument("--repeat", type=int, default=None, help="runs per size and path (median; default 3, --quick 1)")
    ap.add_argument("--reference-max-rows", type=int, default=20_000,
                    help="run the previous path only up to this many rows (it takes hours beyond)")
    ap.add_argument("--memory-limit", default="3GiB", help="per worker")
    ap.add_argument("--link-evidence-share", type=float, default=LINK_EVIDENCE_SHARE,
                    help="share of rows with link evidence (default 0.05; 0.25 draws the 2 M-row sample at 400 k)")
    args = ap.parse_args(argv)
    if not 0 < args.link_evidence_share <= 1:
        ap.error(f"--link-evidence-share must lie in (0, 1], not {args.link_evidence_share}")
    limits = TrainingLimits.from_env()
    sizes = args.sizes or ([4_000, 16_000] if args.quick else [100_000, 500_000, 2_000_000])
    repeat = args.repeat or (1 if args.quick else 3)

    from distributed import Client, LocalCluster

    results = []
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, memory_limit=args.memory_limit,
                      dashboard_address=None, silence_logs=40) as cluster, Client(cluster) as client:
        for rows in sizes:
            features = synthetic_features(client, rows, link_evidence_share=args.link_evidence_share)
            entry = {"rows": rows, "sample": training_sample(rows, limits, args.link_evidence_share)}
            paths = [("project", project_train)]
            if rows <= args.reference_max_rows:
                paths.append(("reference", reference_train))
            for name, path in paths:
                runs = []
                for r in range(repeat):
                    print(f"[bench_train] {rows:,} rows: {name} run {r + 1}/{repeat}", file=sys.stderr, flush=True)
                    runs.append(measure(path, client, features))
                entry[name] = median_of(runs)
                print(f"[bench_train] {rows:,} rows {name}: {json.dumps(entry[name])}", file=sys.stderr, flush=True)
            if "reference" not in entry:
                entry["reference"] = {"skipped": f"previous path not run above {args.reference_max_rows:,} rows"}
            results.append(entry)
            del features
    print(f"{'rows':>10} {'path':>10} {'seconds':>9} {'model MB':>9} {'driver MB':>10} {'pop CV':>7} {'auth CV':>8}",
          file=sys.stderr)
    for entry in results:
        for name in ("project", "reference"):
            r = entry[name]
            if "seconds" in r:
                print(f"{entry['rows']:>10,} {name:>10} {r['seconds']:>9.1f} {r['model_bytes'] / 2**20:>9.1f} "
                      f"{r['driver_peak_mb']:>10.1f} {_f(r['popularity_flickr_ensemble_cv_spearman']):>7} "
                      f"{_f(r['authority_cv_spearman']):>8}", file=sys.stderr)
    project = [e["project"]["seconds"] for e in results]
    print(json.dumps({"benchmark": "train", "limits": limits.to_dict(), "repeat": repeat, "workers": 2,
                      "link_evidence_share": args.link_evidence_share, "sizes": results,
                      "project_seconds_ratio_largest_to_smallest": round(project[-1] / project[0], 3),
                      "rows_ratio_largest_to_smallest": round(sizes[-1] / sizes[0], 3),
                      "load_average": [round(x, 2) for x in os.getloadavg()]}))


def _f(value) -> str:
    return "" if value is None else f"{value:.3f}"


if __name__ == "__main__":
    main()
