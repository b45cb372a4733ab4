"""What a write task carries (pickled into the task graph), and what every online-store writer shares."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import pandas as pd
from feast import FeatureView
from feast.value_type import ValueType

from imagerank.store.encoding import encode_column


ENTITY_KEY = "__imagerank_entity_key"
"""Column of Feast's serialized entity key, added by the read tasks: the write tasks partition, deduplicate
and write by it."""


@dataclass(frozen=True)
class WriteSpec:
    repo_config: Any
    feature_view_proto: bytes
    join_keys: tuple[tuple[str, int], ...]
    features: tuple[tuple[str, int], ...]
    ts_col: str
    created_col: str | None
    batch_size: int
    mode: str  # "sqlite" | "redis" | "generic"
    sqlite_path: str | None
    sqlite_table: str | None
    sqlite_wal: bool
    stage_dir: str | None
    """Directory of the run's SQLite staging files, shared by the workers and the driver, or
    ``sqlite_writer.WORKER_LOCAL``: each worker's own local directory."""
    run_id: str
    bytes_with_values: tuple[str, ...] = ()
    """BYTES features with a non-empty value somewhere in the rows written (empty bytes elsewhere in
    the view are then written as empty values, not nulls, as Feast's engine writes them)."""


_FV_CACHE: dict[bytes, FeatureView] = {}
_STORE_CACHE: dict[Any, Any] = {}


def cached_store(key, connect: Callable[[], Any]) -> Any:
    """The worker process's connection to an online store under ``key``, made by ``connect`` on first use:
    every partition a worker writes reuses it."""
    store = _STORE_CACHE.get(key)
    if store is None:
        store = _STORE_CACHE[key] = connect()
    return store


def feature_view_of(spec: WriteSpec) -> FeatureView:
    """The view a write task writes, decoded once per worker process from the task's proto bytes."""
    fv = _FV_CACHE.get(spec.feature_view_proto)
    if fv is None:
        from feast.protos.feast.core.FeatureView_pb2 import FeatureView as FeatureViewProto

        fv = FeatureView.from_proto(FeatureViewProto.FromString(spec.feature_view_proto))
        _FV_CACHE[spec.feature_view_proto] = fv
    return fv


def encode_batch(batch: pd.DataFrame, spec: WriteSpec, with_text: bool):
    """(entity keys, {feature: (values, texts)}): what every writer sends, in Feast's value encoding."""
    cols = {name: encode_column(batch[name], ValueType(vt), with_text, name in spec.bytes_with_values)
            for name, vt in spec.features}
    return batch[ENTITY_KEY].tolist(), cols
