"""The report's figures: matplotlib (Agg backend, no display), SVG output, embedded as data URIs.

SVG stays sharp at any zoom and is small for line and bar charts; scatter plots are rasterized inside the
SVG when they have many points. Every figure is returned as a ``data:image/svg+xml;base64,...`` string, so
the report's ``<img>`` tags need no file next to the HTML and the SVGs' ids and styles stay isolated.
"""

from __future__ import annotations

import base64
import io

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from imagerank.settings import STANDARDIZATION_PERCENTILE  # noqa: E402

PALETTE = ["#2f6db3", "#e07b39", "#3a9a5b", "#c44e52", "#8172b2", "#937860", "#da8bc3", "#8c8c8c",
           "#ccb974", "#64b5cd"]
STYLE = {
    "font.family": "DejaVu Sans", "font.size": 10, "axes.titlesize": 11, "axes.titleweight": "bold",
    "axes.labelsize": 10, "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True,
    "grid.color": "#e5e7eb", "grid.linewidth": 0.8, "axes.axisbelow": True, "axes.edgecolor": "#9ca3af",
    "legend.frameon": False, "legend.fontsize": 9, "xtick.color": "#374151", "ytick.color": "#374151",
    "svg.fonttype": "path", "figure.dpi": 100,
}


def colors(names) -> dict:
    return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(names)}


def to_data_uri(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)
    return "data:image/svg+xml;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def figure(width: float = 8.0, height: float = 3.6, ncols: int = 1, nrows: int = 1, **kwargs):
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(nrows, ncols, figsize=(width, height), squeeze=False, **kwargs)
    return fig, axes


def _styled(fn):
    def wrapper(*args, **kwargs):
        with plt.rc_context(STYLE):
            return fn(*args, **kwargs)
    wrapper.__name__, wrapper.__doc__ = fn.__name__, fn.__doc__
    return wrapper


@_styled
def score_distributions(histograms: dict, providers: list[str]) -> str:
    """Per provider, the share of its images in each score bin, for popularity and authority.

    ``histograms[provider][column]`` is (counts over the 40 bins of 0.025, number of non-null values): the
    counts are summed over the catalog's partitions, so the plot never sees the rows themselves."""
    palette = colors(providers)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=False)
    bins = np.linspace(0, 1, 41)
    centers = (bins[:-1] + bins[1:]) / 2
    for ax, column in zip(axes, ("popularity", "authority")):
        for provider in providers:
            counts, n = histograms.get(provider, {}).get(column, (None, 0))
            if not n:
                continue
            ax.step(centers, 100 * np.asarray(counts) / n, where="mid", color=palette[provider], lw=1.6,
                    label=f"{provider} (n={n:,})")
        ax.set_xlim(0, 1)
        ax.set_xlabel(f"{column} score (0–1, bins of 0.025)")
        ax.set_ylabel("share of the provider's images (%)")
        ax.set_title(column.capitalize())
    axes[1].legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    return to_data_uri(fig)


@_styled
def standardization_curves(constants: dict, observed: pd.DataFrame, metric_names: dict,
                           percentile: float = STANDARDIZATION_PERCENTILE, ranges: dict | None = None) -> str:
    """p(x) = x / (x + C) per provider on a log metric axis, with V marked (at the run's ``percentile``) and the
    observed values as a rug.

    ``observed`` holds (provider, metric_value) rows (a bounded sample per provider is enough); ``ranges``
    (provider -> (min, max) of the positive values of all rows) sets the axis when the sample is partial."""
    names = list(constants)
    palette = colors(names)
    fig, ax = plt.subplots(figsize=(10, 4))
    lo, hi = 0.1, 10.0
    for provider in names:
        c = constants[provider]
        v = float(c.get("percentile_value", np.nan))
        lo, hi = min(lo, v / 100 if v > 0 else lo), max(hi, v * 100)
        values = observed.loc[observed["provider"] == provider, "metric_value"].dropna() if not observed.empty \
            else pd.Series(dtype=float)
        if ranges and provider in ranges:
            lo, hi = min(lo, ranges[provider][0]), max(hi, ranges[provider][1] * 2)
        elif len(values):
            positive = values[values > 0]
            if len(positive):
                lo, hi = min(lo, positive.min()), max(hi, positive.max() * 2)
    x = np.logspace(np.log10(lo), np.log10(hi), 400)
    for i, provider in enumerate(names):
        c = constants[provider]
        C, V = float(c.get("constant", np.nan)), float(c.get("percentile_value", np.nan))
        metric = metric_names.get(provider) or c.get("metric") or "metric"
        ax.plot(x, x / (x + C), color=palette[provider], lw=2,
                label=f"{provider}: {metric}, V={V:,.4g}, C={C:,.4g}")
        ax.plot([V], [V / (V + C)], "o", color=palette[provider], ms=6, mec="white")
        values = observed.loc[observed["provider"] == provider, "metric_value"].dropna() if not observed.empty \
            else pd.Series(dtype=float)
        values = values[values > 0]
        if len(values):
            sample = values.sample(min(len(values), 400), random_state=0).to_numpy()
            ax.plot(sample, np.full(len(sample), -0.03 - 0.035 * i), "|", color=palette[provider], ms=7, alpha=0.5)
    ax.axhline(percentile, color="#6b7280", lw=0.8, ls="--")
    ax.text(x[-1], percentile - 0.03, f"p(V) = r = {percentile:g} ", color="#6b7280", fontsize=8, ha="right",
            va="top")
    ax.set_xscale("log")
    ax.set_ylim(-0.04 - 0.035 * len(names), 1.02)
    ax.set_xlabel("raw provider metric x (count: views, global usages, downloads; log scale)")
    ax.set_ylabel("standardized popularity p(x)")
    ax.set_title("p(x) = x / (x + C), C = (1 − r) / r · V;  ● = V, ticks below = observed rows")
    ax.legend(loc="center left", fontsize=8)
    fig.tight_layout()
    return to_data_uri(fig)


@_styled
def spearman_anchors(rows: list[tuple[str, float]]) -> str:
    """Cross-validated Spearman of each evaluated model next to the published content-only bars."""
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(rows) + 2.0))
    ax.axvspan(0.22, 0.52, color="#fde7c2", zorder=0, label="SVR baselines: 0.22–0.52")
    ax.axvspan(0.31, 0.40, color="#c7d8ee", zorder=0, label="Khosla et al. 2014: 0.31–0.40")
    labels = [name for name, _ in rows]
    values = [value for _, value in rows]
    ax.barh(labels, values, color="#2f6db3", height=0.35, zorder=2, label="this run (held-out)")
    for i, value in enumerate(values):
        ax.text(min(value, 0.98) + 0.01, i, f"{value:.3f}", va="center", fontsize=9)
    ax.set_xlim(0, 1.05)
    ax.invert_yaxis()
    ax.set_xlabel("Spearman rank correlation with the raw metric (held-out, creator-grouped CV)")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.28), ncol=3, fontsize=8)
    ax.grid(axis="y", visible=False)
    fig.tight_layout()
    return to_data_uri(fig)


@_styled
def observed_vs_predicted(observed: np.ndarray, predicted: np.ndarray, providers: pd.Series, title: str) -> str:
    names = sorted(providers.astype(str).unique())
    palette = colors(names)
    fig, ax = plt.subplots(figsize=(5.6, 5.2))
    for provider in names:
        mask = (providers.astype(str) == provider).to_numpy()
        ax.scatter(observed[mask], predicted[mask], s=12, alpha=0.6, color=palette[provider], label=provider,
                   rasterized=len(observed) > 3000, edgecolors="none")
    ax.plot([0, 1], [0, 1], color="#6b7280", lw=1, ls="--", label="perfect prediction")
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.set_aspect("equal")
    ax.set_xlabel("observed standardized popularity (0–1)")
    ax.set_ylabel("out-of-fold predicted popularity (0–1)")
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return to_data_uri(fig)


@_styled
def importances(table: pd.DataFrame, title: str, top: int = 15) -> str:
    shown = table.head(top).iloc[::-1]
    fig, ax = plt.subplots(figsize=(8, 0.3 * len(shown) + 1.4))
    ax.barh(shown["feature"], shown["mae_rise"], xerr=shown["mae_rise_std"], color="#2f6db3", height=0.6,
            error_kw={"ecolor": "#6b7280", "lw": 1})
    ax.axvline(0, color="#374151", lw=0.8)
    ax.set_xlabel("rise in mean absolute error when the feature is shuffled (score points, 0–1 scale)")
    ax.set_title(title)
    ax.grid(axis="y", visible=False)
    fig.tight_layout()
    return to_data_uri(fig)


@_styled
def popularity_vs_authority(frame: pd.DataFrame, providers: list[str], total_rows: int | None = None,
                            max_points: int = 6000) -> str:
    """One dot per image of ``frame`` (a uniform sample of ``total_rows`` images when that is larger)."""
    palette = colors(providers)
    total_rows = len(frame) if total_rows is None else total_rows
    sample = frame.sample(min(len(frame), max_points), random_state=0) if len(frame) > max_points else frame
    fig, ax = plt.subplots(figsize=(6.4, 5.4))
    rng = np.random.default_rng(0)
    for provider in providers:
        part = sample[sample["provider"] == provider]
        if part.empty:
            continue
        jitter = rng.uniform(-0.004, 0.004, size=(2, len(part)))  # ties (observed 0 / prior) stay visible
        ax.scatter(part["popularity"] + jitter[0], part["authority"] + jitter[1], s=10, alpha=0.55,
                   color=palette[provider], label=provider, edgecolors="none", rasterized=len(sample) > 3000)
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("popularity (0–1)")
    ax.set_ylabel("authority (0–1)")
    note = f" (uniform sample of {len(sample):,})" if total_rows > len(sample) else ""
    ax.set_title(f"Each dot is an image{note}")
    ax.legend(loc="upper right", fontsize=8, markerscale=1.6)
    fig.tight_layout()
    return to_data_uri(fig)


@_styled
def coverage_bars(table: pd.DataFrame) -> str:
    columns = [c for c in table.columns if c != "images"]
    rows = list(table.index)
    fig, ax = plt.subplots(figsize=(9, 0.42 * len(rows) * max(1, len(columns)) / 2 + 1.6))
    height = 0.8 / max(len(columns), 1)
    palette = colors(columns)
    for k, column in enumerate(columns):
        values = 100 * table[column].astype(float).to_numpy()
        positions = np.arange(len(rows)) + k * height - 0.4 + height / 2
        ax.barh(positions, np.nan_to_num(values), height=height, color=palette[column],
                label=column if np.isfinite(values).any() else f"{column} (not computed)")
    ax.set_yticks(np.arange(len(rows)), rows)
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("share of the provider's catalog rows (%)")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(axis="y", visible=False)
    fig.tight_layout()
    return to_data_uri(fig)


@_styled
def horizontal_bars(labels: list[str], values: list[float], xlabel: str, color: str = "#2f6db3",
                    fmt: str = "{:,.0f}") -> str:
    fig, ax = plt.subplots(figsize=(8, 0.36 * len(labels) + 1.2))
    ax.barh(labels, values, color=color, height=0.6)
    top = max(values) if values else 1
    for i, value in enumerate(values):
        ax.text(value + top * 0.01, i, fmt.format(value), va="center", fontsize=9)
    ax.set_xlim(0, top * 1.15 if top > 0 else 1)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.grid(axis="y", visible=False)
    fig.tight_layout()
    return to_data_uri(fig)
