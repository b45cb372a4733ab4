"""``imagerank.cluster.persist``: it returns only once the pieces are computed, and a failed piece raises there."""

from __future__ import annotations

import dask.dataframe as dd
import pandas as pd
import pytest
from distributed import futures_of

from imagerank.cluster import persist


def _fail_on_third(part: pd.DataFrame) -> pd.DataFrame:
    if (part["x"] == 3).any():
        raise ValueError("row 3 is bad")
    return part


def test_persist_returns_computed_pieces(dask_client):
    frame = dd.from_pandas(pd.DataFrame({"x": range(100)}), npartitions=4).map_partitions(lambda p: p * 2)
    persisted = persist(dask_client, frame, "doubled")
    futures = futures_of(persisted)
    assert len(futures) == 4 and all(f.status == "finished" for f in futures)
    assert persisted["x"].sum().compute() == 2 * sum(range(100))


def test_a_failed_piece_raises_its_own_error_at_persist(dask_client):
    frame = dd.from_pandas(pd.DataFrame({"x": range(8)}), npartitions=4).map_partitions(_fail_on_third)
    with pytest.raises(ValueError, match="row 3 is bad"):
        persist(dask_client, frame, "failing")

