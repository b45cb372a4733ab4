"""Arrow schemas are the one statement of what a stage writes; everything else is derived from them here.

Every writer declares a ``pyarrow`` schema next to its partition function (``METADATA_SCHEMA``,
``PIXELS_SCHEMA``, ``SCORES_SCHEMA`` ...). From it follow:

- the pandas ``meta`` Dask needs (:func:`empty_frame`): a nullable field of an integer or boolean type
  becomes pandas' nullable dtype (``Int16``, ``boolean``), a non-nullable one the numpy dtype;
- the written schema once the run's event time is stamped on (:func:`with_event_time`);
- the Feast fields of ``feature_repo/views.py`` (:func:`feast_fields`), so a view cannot declare a type its
  dataset does not hold.
"""

from __future__ import annotations

from typing import Iterable

import pandas as pd
import pyarrow as pa

#: The column Feast reads as event time, as :func:`imagerank.io.stamped` writes it.
EVENT_TIME = pa.field("event_timestamp", pa.timestamp("us", tz="UTC"))


def pandas_dtype(field: pa.Field):
    """The pandas dtype a partition function gives ``field``'s column."""
    typ = field.type
    if pa.types.is_string(typ) or pa.types.is_large_string(typ):
        return "string"
    if pa.types.is_boolean(typ):
        return "boolean" if field.nullable else "bool"
    if pa.types.is_integer(typ):
        name = str(typ)  # int16, int64, ...
        return name.capitalize() if field.nullable else name
    if pa.types.is_floating(typ):
        return {16: "float16", 32: "float32", 64: "float64"}[typ.bit_width]
    if pa.types.is_timestamp(typ):
        return f"datetime64[{typ.unit}, {typ.tz}]" if typ.tz else f"datetime64[{typ.unit}]"
    raise TypeError(f"no pandas dtype for the Arrow type {typ} of {field.name!r}")


def pandas_dtypes(schema: pa.Schema) -> dict:
    return {field.name: pandas_dtype(field) for field in schema}


def empty_frame(schema: pa.Schema) -> pd.DataFrame:
    """An empty frame with ``schema``'s columns and the dtypes of :func:`pandas_dtype` (Dask's ``meta``)."""
    return pd.DataFrame({name: pd.Series(dtype=dtype) for name, dtype in pandas_dtypes(schema).items()})


def with_event_time(schema: pa.Schema) -> pa.Schema:
    """``schema`` as written after the run's event time is stamped on (:data:`EVENT_TIME` last)."""
    return schema.append(EVENT_TIME)


def without(schema: pa.Schema, names: Iterable[str]) -> pa.Schema:
    drop = set(names)
    return pa.schema([f for f in schema if f.name not in drop])


def feast_type(typ: pa.DataType):
    """The Feast type of an Arrow type (the ones the feature views serve)."""
    from feast import types as F

    if pa.types.is_string(typ) or pa.types.is_large_string(typ):
        return F.String
    if pa.types.is_boolean(typ):
        return F.Bool
    if pa.types.is_int32(typ):
        return F.Int32
    if pa.types.is_int64(typ):
        return F.Int64
    if pa.types.is_float32(typ):
        return F.Float32
    if pa.types.is_float64(typ):
        return F.Float64
    if pa.types.is_timestamp(typ):
        return F.UnixTimestamp
    raise TypeError(f"no Feast type for the Arrow type {typ} (Feast has no 8/16-bit or unsigned integers: a served "
                    "integer column is written as int32 or int64)")


def feast_fields(schema: pa.Schema, names: Iterable[str]) -> list:
    """Feast ``Field``s for ``names`` with the types ``schema`` gives them (a name not in it is an error)."""
    from feast import Field

    missing = [n for n in names if n not in schema.names]
    if missing:
        raise KeyError(f"not in the writer's schema: {missing}; it has {schema.names}")
    return [Field(name=name, dtype=feast_type(schema.field(name).type)) for name in names]
