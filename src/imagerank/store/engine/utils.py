"""What the engine's modules share: the row-order column and latest-row rule, the shuffle choice, the
progress bar, and the cluster the engine runs on."""

from __future__ import annotations

import sys
from typing import Sequence

import pandas as pd

ROW_ORDER = "__imagerank_row_order"
"""Position of a row in the source (chunk << 32 | row): the last tie-breaker between an entity's rows."""


def latest_per_entity(df: pd.DataFrame, keys: Sequence[str], ts_col: str,
                      created_col: str | None) -> pd.DataFrame:
    """Keep each entity's row with the latest event timestamp, then created timestamp, then the last in
    source order (Feast's local engine sorts ascending and keeps the last row; its order among exact
    ties is not defined, this one is)."""
    if df.empty:
        return df
    sort_cols = [ts_col] + ([created_col] if created_col else []) + [ROW_ORDER]
    df = df.sort_values(sort_cols, kind="stable")
    return df.drop_duplicates(subset=list(keys), keep="last")


def shuffle_method(partitions: int) -> str:
    """Named, not left to Dask: its default depends on whether our client is the global one, and its
    fallback ("disk") only works when all workers share one disk. A task shuffle costs little for a few
    partitions, where p2p spends seconds setting up its run on every worker; p2p scales to thousands."""
    return "tasks" if partitions <= 64 else "p2p"


def progress_bar(label: str, total: int):
    """A bar on stderr over the run's tasks (key pass, then written partitions), when the project's
    progress switch is on (an interactive terminal, or IMAGERANK_PROGRESS=1)."""
    from tqdm import tqdm

    from imagerank.cluster import show_progress

    return tqdm(total=total, desc=label, unit="task", file=sys.stderr, disable=not show_progress(),
                dynamic_ncols=True, leave=True)


def import_worker_modules() -> None:
    """Import what the engine's tasks run on a worker (``dask.dataframe`` alone takes ~1 s): done once when
    the engine starts its cluster, instead of inside the first shuffle task of the first run."""
    import dask.dataframe  # noqa: F401
    import feast.feature_view  # noqa: F401

    import imagerank.store.engine  # noqa: F401


def engine_client(scheduler: str | None, n_workers: int | None):
    """``(client, owned)``: the cluster's policy is :func:`imagerank.cluster.shared_client`'s; the engine's
    own LocalCluster imports what its tasks run when it starts."""
    from imagerank.cluster import shared_client

    return shared_client(scheduler, n_workers=n_workers, worker_setup=import_worker_modules)
