"""``imagerank explain ID``: one image's two numbers, where they came from, and the evidence behind them."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from imagerank import datasets
from imagerank.reporting import analysis, data

#: Background rows for the contributions: a fixed uniform sample of the model's labelled rows.
BACKGROUND_ROWS = 24
ORDERINGS = 6
TOP_FEATURES = 10
MAX_COPIES = 20


class UnknownImage(KeyError):
    def __str__(self) -> str:  # KeyError quotes its message; this one is read by people
        return str(self.args[0])


def explain(workdir: str | Path, image_id: str, *, contributions: bool = True, top: int = TOP_FEATURES) -> dict:
    """The image's scores, their sources, the features that moved its predictions, its domain, links and copies."""
    workdir = Path(workdir)
    image_id = str(image_id).strip()
    scores = data.read_columns(Path(datasets.location(workdir, "scores")), ["image_id", "popularity", "authority", "popularity_source",
                                                    "authority_source", "model_version", "event_timestamp"],
                               filters=("image_id", [image_id]))
    if scores.empty:
        if not (Path(datasets.location(workdir, "scores"))).is_dir():
            raise FileNotFoundError(f"{workdir}/scores does not exist: run `imagerank recalculate` first")
        raise UnknownImage(f"unknown image_id {image_id!r}: not in {workdir}/scores")
    score = scores.iloc[0].to_dict()
    features = data.feature_rows(workdir, [image_id])
    row = features.iloc[0].to_dict() if not features.empty else {"image_id": image_id}
    catalog = data.read_columns(Path(datasets.location(workdir, "catalog")), ["image_id", "provider", "title", "creator", "foreign_landing_url",
                                                      "url", "license", "created_on"], filters=("image_id", [image_id]))
    out: dict[str, Any] = {
        "image_id": image_id,
        "model_version": score.get("model_version"),
        "scored_at": str(score.get("event_timestamp")),
        "catalog": _clean(catalog.iloc[0].to_dict()) if not catalog.empty else {},
        "popularity": {"value": float(score["popularity"]), "source": str(score["popularity_source"])},
        "authority": {"value": float(score["authority"]), "source": str(score["authority_source"])},
    }
    out["popularity"].update(_observed(workdir, row))
    out["authority"]["domain"] = _domain(row)
    out["authority"]["links"] = _links(workdir, row, image_id)
    out["duplicates"] = _duplicates(workdir, row, image_id)
    if contributions:
        models, card = _models(workdir, score.get("model_version"))
        for name, model in models.items():
            target = out.setdefault(name, {})
            try:
                target["model"] = _model_explanation(workdir, name, model, (card.get("models") or {}).get(name),
                                                     features, top)
            except Exception as exc:  # noqa: BLE001 - the scores and evidence stand without the model's view
                target["model"] = {"note": f"the {name} model could not be evaluated: {type(exc).__name__}: {exc}"}
    out["popularity"]["explanation"] = _popularity_sentence(out["popularity"])
    out["authority"]["explanation"] = _authority_sentence(out["authority"])
    return out


def _models(workdir: Path, version: Any) -> tuple[dict, dict]:
    version = str(version) if version is not None and str(version) != "nan" else None
    if not version or not datasets.exists(workdir, "models", version, "metrics.json"):
        version = data.model_version(workdir, {})
    card = data.model_card(workdir, version)
    if not card:
        return {}, {}
    from pipelines.score import load_models

    try:
        return load_models(workdir, version), card
    except Exception:  # noqa: BLE001 - e.g. a digest mismatch: explain without the models
        return {}, card


def _observed(workdir: Path, row: dict) -> dict:
    value = row.get("metric_value")
    if not data.finite(value):
        return {"observed": None}
    run = {}
    try:
        run = data.latest_run(workdir)
    except FileNotFoundError:
        pass
    provider = row.get("provider")
    constants = ((run.get("popularity") or {}).get("constants") or {}).get(str(provider), {})
    observed = {"provider": provider, "metric": constants.get("metric"), "raw_value": float(value),
                "standardized": _num(row.get("observed_popularity"))}
    if constants:
        observed.update(V=constants.get("percentile_value"), C=constants.get("constant"),
                        formula="p(x) = x / (x + C)")
    return {"observed": observed}


def _domain(row: dict) -> dict:
    keys = ["landing_host", "landing_domain", "host_rank_score", "domain_rank_score", "host_pr_val", "domain_pr_val",
            "domain_n_hosts", "domain_authority"]
    out = {k: _plain(row.get(k)) for k in keys if k in row}
    if out and all(out.get(k) is None for k in keys[2:]):
        out["note"] = "the landing host and domain are in no ranks file"
    return out


def _links(workdir: Path, row: dict, image_id: str) -> dict:
    if data.dataset_dir(workdir, "links") is None:
        return {"available": False, "note": "no crawl in this run (W/features/links absent)"}
    keys = ["has_link_evidence", "link_pages", "link_hosts", "link_domains", "link_alt_pages", "picashow",
            "landing_crawled", "landing_pagerank", "landing_in_links", "authority_prob", "link_authority"]
    out = {"available": True, **{k: _plain(row.get(k)) for k in keys if k in row}}
    pages = _embedding_pages(workdir, image_id)
    if pages:
        out["embedding_pages"] = pages
    return out


def _embedding_pages(workdir: Path, image_id: str, limit: int = 10) -> list[str]:
    """Crawled pages that embed the image: W/graph/edges image edges matched with the links stage's own keys."""
    edges = Path(datasets.location(workdir, "graph_edges"))
    if not edges.is_dir():
        return []
    try:
        import pyarrow.dataset as ds

        from imagerank.features.links import catalog_image_keys, image_edge_keys

        catalog = data.read_columns(Path(datasets.location(workdir, "catalog")), ["image_id", "url", "thumbnail"], filters=("image_id", [image_id]))
        keys = set(catalog_image_keys(catalog)["key"].astype(str))
        if not keys:
            return []
        pages: set[str] = set()
        scanner = ds.dataset(str(edges), format="parquet").scanner(
            columns=["src_url", "src_host", "src_domain", "dst_url", "kind", "text"], filter=ds.field("kind") == "image")
        for batch in scanner.to_batches():
            matched = image_edge_keys(batch.to_pandas())
            pages.update(matched.loc[matched["key"].astype(str).isin(keys), "src_url"].astype(str))
        return sorted(pages)[:limit]
    except Exception:  # noqa: BLE001 - optional evidence: a changed edge schema only loses the page list
        return []


def _duplicates(workdir: Path, row: dict, image_id: str) -> dict:
    if data.dataset_dir(workdir, "visual") is None and data.dataset_dir(workdir, "pixels") is None:
        return {"available": False, "note": "no images in this run (W/features/visual absent)"}
    out = {"available": True, **{k: _plain(row.get(k)) for k in ("has_phash", "dup_neighbors", "dup_cluster_size",
                                                                  "dup_hosts", "dup_providers", "visualrank")
                                 if k in row}}
    phash = row.get("phash")
    if not data.finite(phash) or data.dataset_dir(workdir, "pixels") is None:
        return out
    from imagerank.features.visual import DEFAULT_THRESHOLD

    threshold = DEFAULT_THRESHOLD
    try:
        threshold = int((data.latest_run(workdir).get("visual") or {}).get("threshold") or threshold)
    except (FileNotFoundError, TypeError, ValueError):
        pass
    import pyarrow.dataset as ds

    target = np.uint64(np.int64(phash).view(np.uint64))
    copies = []
    scanner = ds.dataset(str(data.dataset_dir(workdir, "pixels")), format="parquet").scanner(
        columns=["image_id", "phash"], filter=ds.field("phash").is_valid())
    for batch in scanner.to_batches():  # a linear scan of one int64 column: fine for one image
        frame = batch.to_pandas()
        if frame.empty:
            continue
        hashes = frame["phash"].astype("int64").to_numpy().view(np.uint64)
        distance = np.unpackbits((hashes ^ target).view(np.uint8).reshape(-1, 8), axis=1).sum(axis=1)
        hit = (distance <= threshold) & (frame["image_id"].astype(str).to_numpy() != image_id)
        copies += [(str(i), int(d)) for i, d in zip(frame["image_id"][hit], distance[hit])]
    copies.sort(key=lambda c: (c[1], c[0]))
    out["threshold"] = threshold
    out["copies_found"] = len(copies)
    if copies:
        ids = [c[0] for c in copies[:MAX_COPIES]]
        info = data.read_columns(Path(datasets.location(workdir, "catalog")), ["image_id", "provider", "title", "foreign_landing_url"],
                                 filters=("image_id", ids)).set_index("image_id")
        out["copies"] = [{"image_id": i, "hamming_distance": d,
                          **(_clean(info.loc[i].to_dict()) if i in info.index else {})} for i, d in copies[:MAX_COPIES]]
    return out


def _model_explanation(workdir: Path, name: str, model, entry: dict | None, features: pd.DataFrame, top: int) -> dict:
    columns = analysis.feature_columns(model, entry)
    if features.empty or not columns:
        return {"note": "no features for this image"}
    x = analysis.model_frame(features.iloc[:1], columns, model)
    background_ids = data.labelled_ids(workdir, name, limit=BACKGROUND_ROWS, seed=0)
    if background_ids.empty:
        return {"prediction": float(analysis.predict(model, x)[0]), "note": "no labelled rows for a background"}
    background = analysis.model_frame(data.feature_rows(workdir, background_ids["image_id"]), columns, model)
    result = analysis.contributions(model, x, background, orderings=ORDERINGS)
    shown = result.table.head(top)
    rest = result.table.iloc[top:]
    return {
        "prediction": result.prediction,
        "baseline": result.baseline,
        "contributions_sum": result.total,
        "method": (f"sampled interventional Shapley values: {result.orderings} feature orderings (antithetic pairs) x "
                   f"{result.background_rows} background rows (a uniform sample of the model's labelled rows); "
                   "contributions sum to prediction - baseline, baseline = mean prediction over the background"),
        "top_features": [{"feature": r.feature, "value": _plain(r.value), "background_median": _plain(r.background_median),
                          "contribution": float(r.contribution)} for r in shown.itertuples()],
        "other_features": {"count": int(len(rest)), "contribution": float(rest["contribution"].sum())},
    }


def _popularity_sentence(p: dict) -> str:
    if p["source"] == "observed" and p.get("observed"):
        o = p["observed"]
        return (f"observed: {o.get('provider')} {o.get('metric') or 'metric'} = {o['raw_value']:,.0f}, standardized "
                f"with V = {o.get('V')}, C = {_short(o.get('C'))} to {p['value']:.4f}")
    if p["source"] == "predicted":
        return "predicted by the popularity ensemble from the image's features (no provider metric)"
    return "prior: no provider metric and no trained model"


def _authority_sentence(a: dict) -> str:
    source = a["source"]
    if source == "links":
        links = a.get("links") or {}
        return (f"link evidence: embedded on {links.get('link_pages', 0)} crawled page(s) over "
                f"{links.get('link_domains', 0)} domain(s), landing page crawled: {links.get('landing_crawled')}")
    if source == "predicted":
        return "predicted by the authority ensemble (no link evidence for this image)"
    if source == "domain_rank":
        d = a.get("domain") or {}
        return f"the landing domain {d.get('landing_domain')}'s rank (domain_authority {_short(d.get('domain_authority'))})"
    return "prior: no link evidence and the landing host/domain is in no ranks file"


def format_text(result: dict) -> str:
    """A readable rendering of :func:`explain`'s result."""
    c = result.get("catalog") or {}
    lines = [f"image {result['image_id']}" + (f"  ({c.get('provider')})" if c.get("provider") else "")]
    if c.get("title"):
        lines.append(f"  title:   {c['title']}")
    if c.get("foreign_landing_url"):
        lines.append(f"  page:    {c['foreign_landing_url']}")
    lines.append(f"  models:  {result.get('model_version')}   scored at {result.get('scored_at')}")
    for name in ("popularity", "authority"):
        part = result[name]
        lines += ["", f"{name.upper()}  {part['value']:.4f}   source: {part['source']}", f"  {part['explanation']}"]
        model = part.get("model")
        if model and "baseline" in model:
            served = " (not served: the observed value wins)" if part["source"] == "observed" else ""
            lines.append(f"  model prediction {model['prediction']:.4f}{served} = baseline {model['baseline']:.4f} "
                         f"+ contributions {model['contributions_sum']:+.4f}")
            lines.append(f"  {'feature':<26} {'value':>14} {'typical':>14} {'contribution':>13}")
            for f in model["top_features"]:
                lines.append(f"  {f['feature']:<26} {_short(f['value']):>14} {_short(f['background_median']):>14} "
                             f"{f['contribution']:>+13.4f}")
            other = model["other_features"]
            lines.append(f"  {'(' + str(other['count']) + ' other features)':<56} {other['contribution']:>+13.4f}")
        elif model:
            lines.append(f"  model: {model.get('note')}")
    domain = result["authority"].get("domain") or {}
    if domain:
        lines += ["", "DOMAIN"] + [f"  {k}: {_whole(v)}" for k, v in domain.items()]
    links = result["authority"].get("links") or {}
    lines += ["", "LINK EVIDENCE"]
    if not links.get("available"):
        lines.append(f"  {links.get('note')}")
    else:
        lines += [f"  {k}: {_whole(v)}" for k, v in links.items() if k not in ("available", "embedding_pages")]
        lines += [f"  embedded on {p}" for p in links.get("embedding_pages", [])]
    dup = result.get("duplicates") or {}
    lines += ["", "NEAR-DUPLICATE COPIES"]
    if not dup.get("available"):
        lines.append(f"  {dup.get('note')}")
    else:
        lines += [f"  {k}: {_whole(v)}" for k, v in dup.items() if k not in ("available", "copies")]
        for copy in dup.get("copies", []):
            lines.append(f"  - {copy['image_id']}  distance {copy['hamming_distance']}  {copy.get('provider', '')}  "
                         f"{copy.get('title', '') or ''}")
    return "\n".join(lines)


def to_json(result: dict) -> str:
    return json.dumps(result, indent=2, default=str, allow_nan=False)


# --- values ------------------------------------------------------------------------------------------------

def _plain(value: Any) -> Any:
    """JSON-friendly scalars: numpy -> python, NaN/NA -> None, timestamps -> ISO text."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(float(value)) else None
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return value


def _clean(d: dict) -> dict:
    return {k: _plain(v) for k, v in d.items() if k != "image_id"}


def _num(value: Any) -> float | None:
    return float(value) if data.finite(value) else None


def _short(value: Any) -> str:
    """A value cut to fit a 14-character table column."""
    text = _whole(value)
    return text if len(text) <= 14 else text[:13] + "…"


def _whole(value: Any) -> str:
    """A value for a `key: value` line, never cut: host names and URLs must stay readable."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "–"
        return f"{value:.4g}" if abs(value) < 1e5 else f"{value:,.0f}"
    return str(value).replace("\n", " ")
