"""Bounded training samples drawn where the rows live: a pure partition function, so the sample is drawn on
the workers and only the sample ever leaves them.

A row is kept when a hash of its ``image_id`` (salted by the random state) falls below its stratum's share:
the same rows whatever the partitioning, the same rows on a re-run, and a stratum never holds more than
about its cap (the count is binomial around it)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from pandas.util import hash_array

KEY_COLUMN = "image_id"
ALL_ROWS = "__all__"


def uniform_from_ids(ids: pd.Series, random_state: int = 0) -> np.ndarray:
    """A uniform number in [0, 1) per id, fixed by the id and ``random_state`` alone."""
    salt = f"imagerank{int(random_state) % 10_000_000:07d}"  # hash_array needs a 16-character key
    hashed = hash_array(ids.astype("string").fillna("").to_numpy(dtype=object), hash_key=salt, categorize=False)
    return (hashed >> np.uint64(11)).astype("float64") / float(1 << 53)


def sample_shares(counts: pd.Series, cap: int | None) -> dict[str, float]:
    """Per stratum (``counts``: rows per stratum), the share of its rows that keeps it at most ``cap``."""
    return {str(k): (1.0 if cap is None or n <= cap else cap / n) for k, n in counts.items() if n > 0}


def stratified_sample(part: pd.DataFrame, shares: dict[str, float], stratum: str | None,
                      random_state: int = 0) -> pd.DataFrame:
    """The rows of ``part`` whose id hash falls below their stratum's share (``stratum`` None: one stratum,
    share ``shares[ALL_ROWS]``); a stratum without a share keeps every row."""
    if part.empty:
        return part
    if stratum is None:
        share = np.full(len(part), shares.get(ALL_ROWS, 1.0))
    else:
        share = part[stratum].astype("string").map(shares).astype("float64").fillna(1.0).to_numpy()
    if (share >= 1.0).all():
        return part
    return part[uniform_from_ids(part[KEY_COLUMN], random_state) < share]
