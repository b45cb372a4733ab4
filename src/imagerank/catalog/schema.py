"""The catalog contract: Openverse ``image`` table columns as imagerank stores them in ``W/catalog/``."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa

#: Columns read from catalog files (all as text first, so that nothing is lost before validation).
TEXT_COLUMNS = [
    "provider", "source", "foreign_identifier", "foreign_landing_url", "url", "thumbnail",
    "license", "license_version", "creator", "creator_url", "title", "category", "filetype",
]
INT_COLUMNS = ["width", "height", "filesize"]
TIME_COLUMNS = ["created_on", "updated_on"]

CATALOG_SCHEMA = pa.schema(
    [("image_id", pa.string())]
    + [(c, pa.string()) for c in TEXT_COLUMNS]
    + [(c, pa.int64()) for c in INT_COLUMNS]
    + [(c, pa.timestamp("us", tz="UTC")) for c in TIME_COLUMNS]
    + [
        ("meta_data", pa.string()),  # canonical JSON object
        ("tags", pa.string()),  # JSON list of tag names
        ("watermarked", pa.bool_()),
        ("source_file", pa.string()),
        ("source_row", pa.int64()),
        ("input_order", pa.int64()),
    ]
)

REJECTS_SCHEMA = pa.schema([
    ("source_file", pa.string()),
    ("source_row", pa.int64()),  # 1-based data row; null when the row could not be delimited
    ("image_id", pa.string()),
    ("stage", pa.string()),
    ("reason", pa.string()),
    ("raw", pa.string()),
])


def empty_frame(schema: pa.Schema) -> pd.DataFrame:
    """An empty pandas frame with the dtypes Dask uses as ``meta`` for ``schema``."""
    return schema.empty_table().to_pandas(types_mapper=_dtype_for)


def _dtype_for(arrow_type: pa.DataType):
    if pa.types.is_string(arrow_type):
        return pd.StringDtype()
    if pa.types.is_int64(arrow_type):
        return pd.Int64Dtype()
    if pa.types.is_boolean(arrow_type):
        return pd.BooleanDtype()
    return None


def to_arrow_frame(df: pd.DataFrame, schema: pa.Schema) -> pd.DataFrame:
    """Coerce a frame to the exact pandas dtypes of ``schema`` (so every partition agrees with meta)."""
    table = pa.Table.from_pandas(df[schema.names], schema=schema, preserve_index=False)
    return table.to_pandas(types_mapper=_dtype_for)
