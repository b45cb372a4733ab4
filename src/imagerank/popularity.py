"""Openverse's standardized popularity, reproduced exactly and kept configurable.

Each provider publishes one raw metric (flickr views, wikimedia global usage, ...). Raw counts are not
comparable across providers, so Openverse maps them onto [0, 1] with ``p(x) = x / (x + C)``, where
``C = ((1 - r) / r) * V`` and ``V`` is the provider's ``r``-th percentile (PostgreSQL
``percentile_disc``: the smallest value whose cumulative share reaches ``r``; NULLs ignored; a ``V``
of 0 becomes 1). A value at the percentile scores exactly ``r``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from imagerank.catalog.fields import meta_object
from imagerank.settings import STANDARDIZATION_PERCENTILE

#: provider -> key inside ``meta_data`` holding its popularity metric (Openverse's table).
DEFAULT_METRICS: dict[str, str] = {
    "flickr": "views",
    "wikimedia": "global_usage_count",
    "stocksnap": "downloads_raw",
    "nappy": "downloads",
    "rawpixel": "download_count",
}


@dataclass(frozen=True)
class StandardizationConfig:
    """What to standardize and how; saved with every run so scores can be traced back."""

    metrics: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_METRICS))
    percentile: float = STANDARDIZATION_PERCENTILE

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ProviderConstant:
    provider: str
    metric: str
    percentile_value: float  # V, after replacing 0 by 1
    constant: float  # C
    n_observed: int


def percentile_disc(values, fraction: float) -> float | None:
    """PostgreSQL ``percentile_disc(fraction) WITHIN GROUP (ORDER BY value)``; NULL/NaN ignored."""
    arr = np.asarray(pd.to_numeric(pd.Series(values), errors="coerce").dropna(), dtype="float64")
    if arr.size == 0:
        return None
    arr.sort()
    return float(arr[max(0, math.ceil(fraction * arr.size) - 1)])


def percentile_disc_from_counts(counts: pd.Series, fraction: float) -> float | None:
    """Same as :func:`percentile_disc` from a value -> count table (exact, and cheap at catalog scale)."""
    counts = counts[counts > 0].sort_index()
    total = int(counts.sum())
    if total == 0:
        return None
    needed = math.ceil(fraction * total)
    position = int(np.searchsorted(counts.cumsum().to_numpy(), max(needed, 1)))
    return float(counts.index[position])


def metric_value(meta_data: str | dict | None, key: str) -> float:
    """The numeric metric under ``key`` in a row's meta_data; NaN when absent or not a finite number >= 0
    (a malformed meta_data holds no metric: :mod:`imagerank.catalog.fields`)."""
    raw = meta_object(meta_data).get(key)
    if raw is None or isinstance(raw, bool):
        return math.nan
    try:
        value = float(raw)
    except (TypeError, ValueError):
        return math.nan
    return value if math.isfinite(value) and value >= 0 else math.nan


def raw_metrics(catalog: pd.DataFrame, config: StandardizationConfig) -> pd.DataFrame:
    """Partition function: image_id, provider, metric name and raw metric value (NaN when unobserved)."""
    metric_names = catalog["provider"].map(config.metrics)
    values = [
        metric_value(meta, name) if isinstance(name, str) else math.nan
        for meta, name in zip(catalog["meta_data"], metric_names)
    ]
    return pd.DataFrame({
        "image_id": catalog["image_id"].to_numpy(),
        "provider": catalog["provider"].to_numpy(),
        "metric": metric_names.astype("string").to_numpy(),
        "metric_value": np.asarray(values, dtype="float64"),
    })


def provider_constants(value_counts: pd.DataFrame, config: StandardizationConfig) -> dict[str, ProviderConstant]:
    """Per-provider constants from a (provider, metric_value, count) table."""
    r = config.percentile
    out: dict[str, ProviderConstant] = {}
    for provider, group in value_counts.groupby("provider"):
        if provider not in config.metrics:
            continue
        counts = group.set_index("metric_value")["count"]
        v = percentile_disc_from_counts(counts, r)
        if v is None:
            continue
        v = v if v != 0 else 1.0
        out[provider] = ProviderConstant(provider, config.metrics[provider], v, ((1 - r) / r) * v,
                                         int(counts.sum()))
    return out


def standardize(metrics: pd.DataFrame, constants: dict[str, ProviderConstant]) -> pd.Series:
    """``x / (x + C)`` per row with its provider's C; NaN where there is no metric or no constant."""
    c = metrics["provider"].map({p: k.constant for p, k in constants.items()}).astype("float64")
    x = metrics["metric_value"].astype("float64")
    return x / (x + c)
