"""The per-request ranking boost search applies on top of relevance: popularity and authority blended.

Openverse boosts by ``min(popularity, authority)``: an image must be both viewed and reachable to rise.
``weighted`` is the linear blend ``weight * popularity + (1 - weight) * authority`` (``weight`` is
popularity's share, in [0, 1]); ``min`` ignores ``weight``. The result stays in [0, 1]; an image without
scores gets NaN (no boost), never an invented value. Used by the ``rank_boost`` on-demand feature view.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

BOOST_MODES = ("min", "weighted")


def rank_boost(popularity, authority, weight, mode, *, strict: bool = True) -> np.ndarray:
    """Element-wise boost; ``weight`` and ``mode`` may be scalars or one value per row.

    ``strict``: an unknown mode, or a weight outside [0, 1] in ``weighted`` mode, raises ``ValueError``; with
    ``strict=False`` those rows get NaN (no boost) instead — what the on-demand view does, since Feast calls it
    with placeholder request values when the repository is applied.
    """
    popularity = np.asarray(pd.to_numeric(pd.Series(np.atleast_1d(popularity)), errors="coerce"), dtype=np.float64)
    authority = np.asarray(pd.to_numeric(pd.Series(np.atleast_1d(authority)), errors="coerce"), dtype=np.float64)
    n = len(popularity)
    weight = np.broadcast_to(np.asarray(pd.to_numeric(pd.Series(np.atleast_1d(weight)), errors="coerce"),
                                        dtype=np.float64), (n,))
    mode = np.broadcast_to(np.asarray(np.atleast_1d(mode), dtype=object), (n,))
    known = np.isin(mode, BOOST_MODES)
    weighted = mode == "weighted"
    bad_weight = weighted & ~((weight >= 0) & (weight <= 1))
    if strict and not known.all():
        bad = sorted({str(m) for m in mode[~known]})
        raise ValueError(f"boost_mode must be one of {', '.join(BOOST_MODES)}, not {', '.join(bad)}")
    if strict and bad_weight.any():
        raise ValueError(f"boost_weight must lie in [0, 1] for mode 'weighted', not {weight[bad_weight][0]!r}")
    share = np.where(weighted, weight, 0.0)
    blended = np.where(weighted, share * popularity + (1.0 - share) * authority, np.fmin(popularity, authority))
    missing = np.isnan(popularity) | np.isnan(authority) | ~known | bad_weight
    return np.where(missing, np.nan, blended)


def rank_boost_frame(inputs: pd.DataFrame) -> pd.DataFrame:
    """On-demand feature view body: ``popularity, authority, boost_weight, boost_mode`` -> ``boost``
    (NaN for a row whose request values are not a known mode / valid weight)."""
    return pd.DataFrame({"boost": rank_boost(inputs["popularity"], inputs["authority"], inputs["boost_weight"],
                                             inputs["boost_mode"], strict=False)}, index=inputs.index)
