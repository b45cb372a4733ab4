"""The run report: one self-contained static HTML file (inline CSS, SVG plots and JPEG thumbnails as data URIs).

``write_report(workdir)`` reads the newest run manifest of ``W/runs/`` and the datasets of the work directory
and writes ``W/report/index.html`` atomically. Every part beyond the scores is optional: a section whose
inputs are absent says so instead of failing the report.

Figures and tables come from bounded aggregates computed with Dask (:func:`data.score_summary`, counts,
histograms, medians, top rows and a uniform sample per provider): the report's memory does not grow with the
catalog. It runs on the current Dask client when there is one, else on the local threaded scheduler.
"""

from __future__ import annotations

import sys
import time
import warnings
from html import escape
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from imagerank.io import atomic_path
from imagerank.reporting import analysis, data, html, plots
from imagerank.settings import STANDARDIZATION_PERCENTILE

ANCHORS = [("Khosla et al. 2014 (content-only)", 0.31, 0.40), ("SVR baseline (content-only)", 0.22, 0.52)]
SECTIONS = ["summary", "distributions", "standardization", "evaluation", "importance", "popularity-authority",
            "coverage", "rejects", "timings", "top-images", "browse", "method"]


def write_report(workdir: str | Path, output: str | Path | None = None, *, importance_rows: int = 400,
                 oof_rows: int = 0, thumbnails: bool = True, quiet: bool = True) -> Path:
    """Write ``W/report/index.html`` (or ``output``) for the newest run of ``workdir``, atomically; return its path."""
    workdir = Path(workdir)
    page = build_report(workdir, importance_rows=importance_rows, oof_rows=oof_rows, thumbnails=thumbnails,
                        quiet=quiet)
    target = Path(output) if output is not None else data.location(workdir, "report", "index.html")
    with atomic_path(target) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return target


def build_report(workdir: str | Path, *, importance_rows: int = 400, oof_rows: int = 0, thumbnails: bool = True,
                 quiet: bool = True) -> str:
    workdir = Path(workdir)
    run = data.latest_run(workdir)
    started = time.perf_counter()

    def log(message: str) -> None:
        if not quiet:
            print(f"[imagerank report] {message} ({time.perf_counter() - started:.1f} s)", file=sys.stderr, flush=True)

    summary = data.score_summary(workdir)
    if summary is None:
        raise FileNotFoundError(f"{data.location(workdir, 'scores')} is empty or missing: nothing to report")
    providers = summary.providers
    version = data.model_version(workdir, run)
    card = data.model_card(workdir, version)
    models = _load_models(workdir, version)
    log("data loaded")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sections = [
            ("summary", "Run summary", _summary(run, summary, version)),
            ("distributions", "Score distributions per provider", _distributions(summary, providers)),
            ("standardization", "Popularity standardization per provider", _standardization(workdir, run)),
            ("evaluation", "Model evaluation (held-out)", _evaluation(workdir, card, models, oof_rows, log)),
            ("importance", "Feature importance", _importance(workdir, card, models, importance_rows, log)),
            ("popularity-authority", "Popularity vs authority", _pop_vs_auth(summary, providers)),
            ("coverage", "Coverage of the evidence", _coverage(workdir)),
            ("rejects", "Rejected input rows", _rejects(workdir, run)),
            ("timings", "Stage timings", _timings(run)),
            ("top-images", "Top and bottom images per provider", _top_images(summary, providers, run, thumbnails)),
            ("browse", "Browse the top 200", _browse(summary)),
            ("method", "How to read this report", _method()),
        ]
    log("sections built")
    subtitle = (f"run <code>{escape(str(run.get('run_id')))}</code> · {escape(str(run.get('event_timestamp', '')))}"
                f" · models <code>{escape(str(version))}</code> · work directory <code>{escape(str(workdir))}</code>")
    return html.page(f"imagerank report — {run.get('run_id')}", subtitle, sections)


# --- sections ------------------------------------------------------------------------------------------------

def _load_models(workdir: Path, version: str | None) -> dict:
    if not version:
        return {}
    try:
        from pipelines.score import load_models

        return load_models(workdir, version)
    except Exception as exc:  # noqa: BLE001 - the report still shows everything that does not need models
        print(f"[imagerank report] models of {version} not loaded: {exc}", file=sys.stderr)
        return {}


def _summary(run: dict, summary: data.ScoreSummary, version: str | None) -> str:
    rec = run.get("reconciliation") or {}
    ok = rec.get("ok")
    items = [("input rows", rec.get("input_rows"), ""), ("catalog rows", rec.get("catalog_rows"), ""),
             ("rejected rows", rec.get("rejected_rows"), ""), ("scored images", summary.rows, ""),
             ("reconciled", bool(ok) if ok is not None else None, "ok" if ok else "bad"),
             ("total time (s)", float(sum((run.get("timings_s") or {}).values())), "")]
    sources = []
    for column, label in (("popularity_source", "popularity"), ("authority_source", "authority")):
        counts = summary.counts.groupby(column)["n"].sum().sort_values(ascending=False, kind="stable")
        for source, n in counts.items():
            sources.append((label, source, int(n), n / summary.rows))
    body = html.cards(items)
    body += ('<p class="lead">Every input row ends in exactly one of <code>catalog/</code> or <code>rejects/</code>; '
             "every catalog row has exactly one score, and both numbers lie in [0, 1]. "
             "Where each served number came from:</p>")
    body += html.table(["score", "source", "images", "share"],
                       [(a, b, n, f"{100 * s:.1f} %") for a, b, n, s in sources], numeric=(2, 3), raw=True)
    body += html.table(["reconciliation check", "value"], [(k, v) for k, v in rec.items()], numeric=(1,))
    return body


def _distributions(summary: data.ScoreSummary, providers: list[str]) -> str:
    uri = plots.score_distributions(summary.histograms, providers)
    rows = []
    for provider in providers:
        counts = summary.counts[summary.counts["provider"] == provider]
        images = int(counts["n"].sum())
        observed = int(counts.loc[counts["popularity_source"] == "observed", "n"].sum())
        authority = counts.groupby("authority_source")["n"].sum().sort_values(ascending=False, kind="stable")
        stats = summary.stats.loc[provider]
        rows.append((provider, images, stats["popularity_median"], stats["popularity_mean"],
                     f"{100 * observed / images:.0f} %", stats["authority_median"], stats["authority_mean"],
                     ", ".join(f"{k} {v}" for k, v in authority.items())))
    return (html.plot(uri, "Histograms of popularity and authority per provider",
                      "Share of each provider's images per score bin (bins of 0.025). Observed popularity "
                      "piles up near 0 and above 0.85 by construction of the standardization.")
            + html.table(["provider", "images", "popularity median", "popularity mean", "observed",
                          "authority median", "authority mean", "authority sources"], rows,
                         numeric=(1, 2, 3, 4, 5, 6), raw=True))


def _standardization(workdir: Path, run: dict) -> str:
    popularity = run.get("popularity") or {}
    constants = popularity.get("constants") or {}
    if not constants:
        return '<p class="note">No provider of this run has a popularity metric: nothing was standardized.</p>'
    observed, ranges = data.observed_metrics(workdir)
    config = popularity.get("config") or popularity.get("standardization") or {}
    metric_names = (config.get("metrics") if isinstance(config, dict) else None) or {}
    r = config.get("percentile", STANDARDIZATION_PERCENTILE) if isinstance(config, dict) else STANDARDIZATION_PERCENTILE
    uri = plots.standardization_curves(constants, observed, metric_names, r, ranges)
    rows = [(p, c.get("metric") or metric_names.get(p, ""), c.get("n_observed"), c.get("percentile_value"),
             c.get("constant")) for p, c in constants.items()]
    return (f'<p class="lead">Raw metrics are not comparable across providers; each provider\'s metric x becomes '
            f"p(x) = x / (x + C) with C = (1 − r) / r · V, r = {r}, and V the provider's {int(r * 100)}th percentile "
            "(PostgreSQL <code>percentile_disc</code>, NULLs ignored, a V of 0 replaced by 1) — exactly as "
            "Openverse does. An image at V scores r.</p>"
            + html.plot(uri, "Standardization curves per provider", "Curves from the run manifest's constants; "
                        "the ticks under the curves are observed rows (a sample of up to 400 per provider).")
            + html.table(["provider", "metric", "rows with the metric", "V (percentile value)", "C (constant)"],
                         rows, numeric=(2, 3, 4)))


def _spearman_rows(evaluation: Any, prefix: str = "") -> list[tuple[str, float]]:
    """(name, spearman) for every (nested) dict of the evaluation that carries a finite ``spearman``."""
    out = []
    if isinstance(evaluation, dict):
        for key, value in evaluation.items():
            if isinstance(value, dict):
                if data.finite(value.get("spearman")):
                    out.append((f"{prefix}{key}", float(value["spearman"])))
                out += _spearman_rows({k: v for k, v in value.items() if k != "spearman"}, f"{prefix}{key} / ")
    return out


def _flatten(value: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(value, dict):
        out = []
        for key, item in value.items():
            out += _flatten(item, f"{prefix}{key}." if not isinstance(item, dict) or not item else f"{prefix}{key}.")
        return out
    if isinstance(value, list) and len(value) > 12:
        return [(prefix.rstrip("."), f"[{len(value)} values]")]
    return [(prefix.rstrip("."), value)]


def _evaluation(workdir: Path, card: dict, models: dict, oof_rows: int, log) -> str:
    entries = (card.get("models") or {}) if card else {}
    if not entries:
        return '<p class="note">No model card (<code>W/models/&lt;version&gt;/metrics.json</code>) for this run.</p>'
    body = ('<p class="lead">Cross-validated metrics as the model card records them. Spearman is the rank '
            "correlation between the out-of-fold prediction and the provider's raw metric — what ranking needs. "
            "Published content-only bars for predicting image popularity: Spearman 0.31–0.40 (Khosla, Das Sarma "
            "&amp; Hamid 2014, content features) and 0.22–0.52 (their SVR baselines across feature sets).</p>")
    for name, entry in entries.items():
        metrics = entry.get("metrics") or {}
        body += f"<h3>{escape(name)} model</h3>"
        evaluation = metrics.get("evaluation")
        facts = [(k, v) for k, v in metrics.items() if k != "evaluation" and not isinstance(v, (dict, list))]
        facts += [(k, ", ".join(f"{a}: {b}" for a, b in v.items())) for k, v in metrics.items()
                  if k != "evaluation" and isinstance(v, dict) and len(v) <= 12]
        if facts:
            body += html.table(["fact", "value"], facts, numeric=(1,))
        if not evaluation:
            body += '<p class="note">The model card holds no evaluation for this model.</p>'
        else:
            spearman = _spearman_rows(evaluation)
            if spearman:
                body += html.plot(plots.spearman_anchors(spearman), f"Cross-validated Spearman of the {name} models",
                                  "Bars: held-out Spearman recorded in the model card. Shaded: published bars.")
            body += "<details><summary>every evaluation key of the model card</summary>"
            body += html.table(["key", "value"], _flatten(evaluation), numeric=(1,)) + "</details>"
        model = models.get(name)
        version_dir = data.location(workdir, "models", str(card.get("model_version")))
        if model is not None or _stored_oof(version_dir, name, entry) is not None:
            try:
                body += _oof_scatter(workdir, version_dir, name, model, entry, oof_rows, log)
            except Exception as exc:  # noqa: BLE001 - a model this code cannot refit or predict with
                body += f'<p class="note">No out-of-fold scatter: {escape(type(exc).__name__)}: {escape(str(exc))}</p>'
    return body


def _stored_oof(version_dir: Path, name: str, entry: dict) -> pd.DataFrame | None:
    """Out-of-fold predictions the training stage may store (``oof_<name>.parquet`` or a file the card names):
    columns image_id, observed (or y_true), predicted (or y_pred), optionally provider."""
    names = [entry.get("oof_file"), ((entry.get("metrics") or {}).get("evaluation") or {}).get("oof_file"),
             f"oof_{name}.parquet", f"{name}_oof.parquet"]
    for file in filter(None, names):
        path = version_dir / file
        if path.exists():
            frame = pd.read_parquet(path)
            observed = next((c for c in ("observed", "y_true", "target", "observed_popularity") if c in frame), None)
            predicted = next((c for c in ("predicted", "y_pred", "prediction", "oof") if c in frame), None)
            if observed and predicted:
                return frame.rename(columns={observed: "observed", predicted: "predicted"})
    return None


def _oof_scatter(workdir: Path, version_dir: Path, name: str, model, entry: dict, oof_rows: int, log) -> str:
    stored = _stored_oof(version_dir, name, entry)
    if stored is not None:
        if "provider" not in stored and "image_id" in stored:
            providers = data.read_columns(data.dataset_dir(workdir, "metadata"), ["image_id", "provider"],
                                          filters=("image_id", stored["image_id"].astype(str).unique()))
            stored = stored.merge(providers.drop_duplicates("image_id"), on="image_id", how="left")
        source = "stored by the training stage"
        frame = stored
    else:
        if oof_rows <= 0:
            return ('<p class="note">The model card stores no out-of-fold predictions for this model, so there is '
                    "no observed-vs-predicted scatter. <code>imagerank report --oof-rows 1000</code> refits the saved "
                    "estimator on a sample (5 creator-grouped folds) to draw one.</p>")
        labelled = data.labelled_ids(workdir, name, limit=oof_rows)
        if len(labelled) < 20:
            return f'<p class="note">Too few labelled rows ({len(labelled)}) for an out-of-fold scatter.</p>'
        rows = data.feature_rows(workdir, labelled["image_id"])
        rows = labelled.merge(rows, on="image_id", how="inner")
        creators = data.read_columns(data.location(workdir, "catalog"), ["image_id", "creator"],
                                     filters=("image_id", rows["image_id"]))
        rows = rows.merge(creators, on="image_id", how="left") if "creator" not in rows else rows
        X = analysis.model_frame(rows, analysis.feature_columns(model, entry), model)
        predicted = analysis.out_of_fold(model, X, rows["target"].to_numpy(),
                                         rows["creator"] if "creator" in rows else None)
        log(f"out-of-fold predictions for {name}")
        if predicted is None:
            return '<p class="note">The saved model cannot be refitted here: no out-of-fold scatter.</p>'
        frame = pd.DataFrame({"observed": rows["target"].to_numpy(), "predicted": predicted,
                              "provider": rows.get("provider", pd.Series("?", index=rows.index)).astype(str).to_numpy()})
        source = (f"computed for this report: 5-fold creator-grouped refits of the saved estimator on "
                  f"{len(frame):,} labelled rows (a uniform sample when there are more than {oof_rows:,})")
    frame = frame.dropna(subset=["observed", "predicted"])
    provider = frame["provider"].astype(str) if "provider" in frame else pd.Series("all", index=frame.index)
    per_provider = [(p, int((provider == p).sum()),
                     analysis.spearman(frame.loc[provider == p, "observed"], frame.loc[provider == p, "predicted"]),
                     float(np.mean(np.abs(frame.loc[provider == p, "observed"] - frame.loc[provider == p, "predicted"]))))
                    for p in sorted(provider.unique())]
    uri = plots.observed_vs_predicted(frame["observed"].to_numpy(), frame["predicted"].to_numpy(), provider,
                                      f"{name}: observed vs out-of-fold prediction")
    return ('<div class="two"><div>' + html.plot(uri, f"Observed vs out-of-fold predicted {name}",
                                                f"Held-out predictions, {escape(source)}.")
            + "</div><div><p class=\"lead\">Within one provider the standardization is monotonic, so Spearman "
              "against the standardized value equals Spearman against the raw metric.</p>"
            + html.table(["provider", "held-out rows", "Spearman", "MAE (0–1)"], per_provider, numeric=(1, 2, 3))
            + "</div></div>")


def _importance(workdir: Path, card: dict, models: dict, rows: int, log) -> str:
    if not models:
        return '<p class="note">No trained model could be loaded for this run: no importances.</p>'
    body = ('<p class="lead">Permutation importance: how much worse each saved model gets when one feature\'s '
            "values are shuffled across rows (mean over 3 shuffles, bars show ±1 std). Measured on a uniform "
            f"sample of up to {rows:,} labelled rows — rows the model was trained on, so it shows what the model "
            "relies on, not what generalizes.</p>")
    entries = (card.get("models") or {}) if card else {}
    for name, model in models.items():
        labelled = data.labelled_ids(workdir, name, limit=rows)
        if len(labelled) < 10:
            body += f'<p class="note">{escape(name)}: too few labelled rows ({len(labelled)}).</p>'
            continue
        frame = labelled.merge(data.feature_rows(workdir, labelled["image_id"]), on="image_id", how="inner")
        X = analysis.model_frame(frame, analysis.feature_columns(model, entries.get(name)), model)
        try:
            table = analysis.permutation_importance(model, X, frame["target"].to_numpy())
        except Exception as exc:  # noqa: BLE001 - a saved model the current code cannot run
            body += (f'<p class="note">{escape(name)}: the saved model could not be evaluated '
                     f"({escape(type(exc).__name__)}: {escape(str(exc))}).</p>")
            continue
        log(f"permutation importance for {name}")
        body += f"<h3>{escape(name)} model</h3>"
        body += html.plot(plots.importances(table, f"{name}: top features ({len(X):,} rows)"),
                          f"Permutation importance of the {name} model",
                          f"In-sample MAE {table.attrs['mae']:.3f}, Spearman {table.attrs['spearman']:.3f} on these rows.")
        shown = table.head(25)
        body += "<details><summary>table of the top 25 features</summary>" + html.table(
            ["feature", "MAE rise", "± std", "Spearman drop", "± std"],
            shown[["feature", "mae_rise", "mae_rise_std", "spearman_drop", "spearman_drop_std"]].itertuples(index=False),
            numeric=(1, 2, 3, 4)) + "</details>"
    return body


def _pop_vs_auth(summary: data.ScoreSummary, providers: list[str]) -> str:
    sample = summary.sample
    images = summary.counts.groupby("provider")["n"].sum()
    rows = [("all providers", summary.rows, analysis.spearman(sample["popularity"], sample["authority"]))]
    for provider in providers:
        part = sample[sample["provider"] == provider]
        rows.append((provider, int(images[provider]), analysis.spearman(part["popularity"], part["authority"])))
    sampled = (f" Spearman is measured on a uniform sample of {len(sample):,} of the {summary.rows:,} images."
               if summary.sampled else "")
    return ('<p class="lead">The two numbers should measure different things: a much-viewed image need not be '
            "much-linked. A Spearman near 1 within a provider would mean authority adds little beyond popularity; "
            "– means one of them is constant for that provider (e.g. every authority from the same domain rank)."
            f"{sampled}</p>"
            '<div class="two"><div>'
            + html.plot(plots.popularity_vs_authority(sample, providers, summary.rows), "Popularity vs authority scatter",
                        "Tiny jitter (±0.004) keeps tied values visible.")
            + "</div><div>" + html.table(["provider", "images", "Spearman(popularity, authority)"], rows,
                                         numeric=(1, 2)) + "</div></div>")


def _coverage(workdir: Path) -> str:
    table = data.coverage(workdir)
    absent = [c for c in table.columns if c != "images" and table[c].isna().all()]
    rows = [(idx, *[(f"{100 * v:.1f} %" if np.isfinite(v) else "not computed") if c != "images" else int(v)
                    for c, v in row.items()]) for idx, row in table.iterrows()]
    note = (f'<p class="note">Not computed in this run (their datasets are absent): {", ".join(absent)}.</p>'
            if absent else "")
    return ('<p class="lead">Share of catalog rows per provider that carry each kind of evidence: decoded pixels, '
            "EXIF (from the image or provider metadata), link evidence from the crawl, an observed popularity metric.</p>"
            + html.plot(plots.coverage_bars(table), "Coverage per provider", "From the W/features/* datasets of this run.")
            + html.table(["provider", *table.columns], rows, numeric=range(1, len(table.columns) + 1), raw=True) + note)


def _rejects(workdir: Path, run: dict) -> str:
    counts = data.rejects_by_reason(workdir, run)
    if counts.empty:
        return '<p class="lead ok">No input row was rejected.</p>'
    body = html.plot(plots.horizontal_bars([str(k) for k in counts.index], [int(v) for v in counts.values],
                                           "rejected rows", color="#c44e52"),
                     "Rejected rows by reason", "From W/rejects (one row per rejected input row, with its reason).")
    examples = data.reject_examples(workdir, per_reason=2)
    if not examples.empty:
        body += "<details><summary>examples</summary>" + html.table(
            list(examples.columns), examples.astype(str).itertuples(index=False)) + "</details>"
    return body


def _timings(run: dict) -> str:
    timings = run.get("timings_s") or {}
    if not timings:
        return '<p class="note">The run manifest holds no timings.</p>'
    labels, values = list(timings), [float(v) for v in timings.values()]
    return (html.plot(plots.horizontal_bars(labels, values, "wall-clock time (seconds)", fmt="{:,.1f} s"),
                      "Stage timings", f"Total {sum(values):,.1f} s (manifest <code>timings_s</code>).")
            + "<details><summary>table</summary>"
            + html.table(["stage", "seconds"], [(k, v) for k, v in zip(labels, values)], numeric=(1,)) + "</details>")


def _link(url: Any, text: str) -> str:
    if isinstance(url, str) and url.lower().startswith(("https://", "http://")):
        return f'<a href="{escape(url, quote=True)}" rel="noopener noreferrer" target="_blank">{text}</a>'
    return text


def _tile(row: dict, source, thumbnails: bool) -> str:
    title = row.get("title") if isinstance(row.get("title"), str) and row.get("title") else "(untitled)"
    uri = data.thumbnail(source, row) if thumbnails else None
    image = (f'<img class="thumb" src="{uri}" alt="{escape(title)}">' if uri
             else '<div class="nothumb">no local image</div>')
    return (f'<div class="tile">{_link(row.get("foreign_landing_url"), image)}<div class="meta">'
            f'<span class="title" title="{escape(title)}">{_link(row.get("foreign_landing_url"), escape(title))}</span>'
            f'<div class="nums">pop {row["popularity"]:.3f} <span class="pill">{escape(str(row["popularity_source"]))}</span></div>'
            f'<div class="nums">auth {row["authority"]:.3f} <span class="pill">{escape(str(row["authority_source"]))}</span></div>'
            f'<code>{escape(str(row["image_id"]))}</code></div></div>')


def _top_images(summary: data.ScoreSummary, providers: list[str], run: dict, thumbnails: bool) -> str:
    source = data.image_source(run) if thumbnails else None
    note = ("Thumbnails are read from the run's local image folder." if source is not None else
            "The run's images are not a local folder: titles and links only.")
    k = max((len(rows) for rows in summary.top.values()), default=0)
    body = f'<p class="lead">The {k} highest and {k} lowest images of each provider. {escape(note)} ' \
           "Titles link to the landing pages (opening them needs the network; the report itself does not).</p>"
    for column in ("popularity", "authority"):
        body += f"<h3>By {column}</h3>"
        for provider in providers:
            top, bottom = summary.top[column, provider], summary.bottom[column, provider]
            body += (f'<div class="two"><div><h4>{escape(provider)} — top {len(top)}</h4><div class="gallery">'
                     + "".join(_tile(r, source, thumbnails) for r in top.to_dict("records"))
                     + f'</div></div><div><h4>{escape(provider)} — bottom {len(bottom)}</h4><div class="gallery">'
                     + "".join(_tile(r, source, thumbnails) for r in bottom.to_dict("records")) + "</div></div></div>")
    return body


def _browse(summary: data.ScoreSummary) -> str:
    top = summary.browse
    rows = [(i + 1, _link(r["foreign_landing_url"], escape(r["title"] if isinstance(r["title"], str) and r["title"]
                                                           else "(untitled)")),
             escape(str(r["provider"])), f"{r['popularity']:.4f}", escape(str(r["popularity_source"])),
             f"{r['authority']:.4f}", escape(str(r["authority_source"])), f"<code>{escape(str(r['image_id']))}</code>")
            for i, r in enumerate(top.to_dict("records"))]
    return ('<p class="lead">The most popular images of the run (ties broken by authority). Type to filter by '
            'title, provider, source or id. <code>imagerank explain ID</code> tells why an image scores as it does.</p>'
            '<input class="filter" type="search" placeholder="filter…" data-table="top-table" aria-label="filter">'
            + html.table(["#", "title", "provider", "popularity", "source", "authority", "source", "image_id"], rows,
                         numeric=(0, 3, 5), table_id="top-table", raw=True))


def _method() -> str:
    return """<ul>
<li><b>Popularity</b> is observed (the provider's metric, standardized as above) where a metric exists, else the
ensemble's prediction from metadata, pixel, EXIF, domain and link features; <b>authority</b> comes from link evidence
(PicASHOW over the crawl's page graph), else the authority model, else the landing domain's rank, else a prior.</li>
<li>Held-out metrics are creator-grouped cross-validation: no photographer is in both the training and the test folds.</li>
<li>Permutation importance is in-sample; per-image contributions (<code>imagerank explain ID</code>) are a sampled
interventional Shapley approximation that sums to the prediction minus the mean prediction over a background sample.</li>
<li>This file is self-contained: plots are SVG and thumbnails JPEG data URIs; no network is needed to view it.</li>
</ul>"""
