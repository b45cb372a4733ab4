"""pandas columns -> serialized Feast ``Value`` protos and entity keys, byte for byte what Feast's own
converter makes: vectorized (numpy/Arrow) for the scalar types, checked on a sample of every column against
Feast's converter, which encodes anything else."""

from __future__ import annotations

import struct
from datetime import datetime

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from feast.value_type import ValueType


def to_utc(ts: pd.Series) -> pd.Series:
    """Timestamps as tz-aware UTC (naive ones are UTC, as Feast reads them), whatever the source's dtype."""
    if not pd.api.types.is_datetime64_any_dtype(ts):
        ts = pd.to_datetime(ts, utc=True)
    if ts.dt.tz is None:
        return ts.dt.tz_localize("UTC")
    return ts.dt.tz_convert("UTC")


def _varint(n: int) -> bytes:
    out = bytearray()
    n &= (1 << 64) - 1
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


_SMALL_VARINT = [_varint(i) for i in range(1 << 14)]


def _varints(values: np.ndarray, tag: int) -> list[bytes]:
    """``tag + varint(v)`` for an int64 array (two's complement, as protobuf encodes int32/int64)."""
    u = values.astype(np.int64).view(np.uint64)
    n = len(u)
    mat = np.zeros((n, 11), dtype=np.uint8)
    mat[:, 0] = tag
    groups = np.ones(n, dtype=np.int64)
    rest = u.copy()
    for i in range(10):
        byte = (rest & np.uint64(0x7F)).astype(np.uint8)
        rest = rest >> np.uint64(7)
        more = rest != 0
        mat[:, i + 1] = byte | (more.astype(np.uint8) << np.uint8(7))
        groups = np.where(more, i + 2, groups)
        if not more.any():
            break
    buf = mat.tobytes()
    return [buf[i * 11:i * 11 + ln + 1] for i, ln in enumerate(groups.tolist())]


def _fixed(values: np.ndarray, tag: int, dtype: str) -> list[bytes]:
    rec = np.empty(len(values), dtype=[("t", "u1"), ("v", dtype)])
    rec["t"] = tag
    rec["v"] = values
    return _fixed_width(rec)


def _len_delimited(payloads: list, tag: bytes) -> list[bytes]:
    small = _SMALL_VARINT
    out = []
    for p in payloads:
        ln = len(p)
        out.append(tag + (small[ln] if ln < 16384 else _varint(ln)) + p)
    return out


def _feast_arrow_column(series: pd.Series) -> pa.Array:
    """The column as Feast's local engine holds it (pandas frame -> arrow, one chunk)."""
    return pa.Array.from_pandas(series)


def _feast_numpy(series: pd.Series) -> np.ndarray:
    """``table.column(c).to_numpy(zero_copy_only=False)`` in Feast's ``_columns_to_proto_values``."""
    return _feast_arrow_column(series).to_numpy(zero_copy_only=False)


_NON_EMPTY_BYTES = b"\x01"


def _feast_protos(series: pd.Series, value_type: ValueType, view_has_value: bool = False) -> list:
    """Feast's converter on the column, as if its batch were the whole view.

    Feast converts a batch (by default the whole view) at once and writes every value of a column as null
    when no value in the batch is non-empty: a partition of empty bytes would then be written null, where
    Feast's engine, seeing a non-empty value elsewhere in the view, writes empty bytes. ``view_has_value``
    says the view has one; it is put in front of the partition's values for the converter to see.
    """
    from feast.type_map import python_values_to_proto_values

    values = _feast_numpy(series)
    if not view_has_value:
        return python_values_to_proto_values(values, value_type)
    with_value = np.empty(len(values) + 1, dtype=object)
    with_value[0] = _NON_EMPTY_BYTES
    with_value[1:] = values
    return python_values_to_proto_values(with_value, value_type)[1:]


def _reference_values(series: pd.Series, value_type: ValueType, view_has_value: bool = False) -> list[bytes]:
    return [v.SerializeToString() for v in _feast_protos(series, value_type, view_has_value)]


def has_non_empty_value(series: pd.Series) -> bool:
    """Whether Feast's converter would find a sample (a value neither null nor empty) in the column."""
    from feast.type_map import _non_empty_value

    return any(_non_empty_value(v) for v in _feast_numpy(series))


def _fast_values(series: pd.Series, value_type: ValueType, with_text: bool) -> tuple[list[bytes], list | None] | None:
    """Vectorized encoding of one column; (value bytes, SQLite value_text or None) or None if not handled.

    The text (``str`` of every number, as Feast's SQLite store keeps it) costs more than the encoding
    itself, so it is only made when asked for.
    """
    arr = _feast_arrow_column(series)
    t = arr.type
    n = len(arr)
    if value_type in (ValueType.DOUBLE, ValueType.FLOAT):
        if not (pa.types.is_floating(t) or pa.types.is_integer(t)):
            return None
        if value_type == ValueType.DOUBLE and not (t == pa.float64() or t == pa.int64()):
            return None  # Feast asserts on other numeric types: let its converter decide
        vals = arr.to_numpy(zero_copy_only=False).astype(np.float64)
        null = np.isnan(vals)
        if value_type == ValueType.DOUBLE:
            enc = _fixed(vals, 0x29, "<f8")
            shown = vals
        else:
            f32 = vals.astype(np.float32)
            enc = _fixed(f32, 0x35, "<f4")
            shown = f32.astype(np.float64)
        text = list(map(repr, shown.tolist())) if with_text else None
    elif value_type in (ValueType.INT64, ValueType.INT32):
        if not (pa.types.is_integer(t) or pa.types.is_floating(t)):
            return None
        raw = arr.to_numpy(zero_copy_only=False)
        if raw.dtype.kind == "f":
            null = np.isnan(raw)
            vals = np.where(null, 0, raw).astype(np.int64)
        else:
            null = np.zeros(n, dtype=bool)
            if raw.dtype == np.uint64 and (raw > np.iinfo(np.int64).max).any():
                return None
            vals = raw.astype(np.int64)
        if value_type == ValueType.INT32 and ((vals < -(2 ** 31)) | (vals >= 2 ** 31)).any():
            return None
        enc = _varints(vals, 0x20 if value_type == ValueType.INT64 else 0x18)
        text = list(map(str, vals.tolist())) if with_text else None
    elif value_type == ValueType.BOOL:
        if not pa.types.is_boolean(t):
            return None
        null = arr.is_null().to_numpy(zero_copy_only=False)
        vals = arr.fill_null(False).to_numpy(zero_copy_only=False)
        enc = [b"\x38\x01" if v else b"\x38\x00" for v in vals.tolist()]
        text = ["True" if v else "False" for v in vals.tolist()] if with_text else None
    elif value_type == ValueType.STRING:
        if not (pa.types.is_string(t) or pa.types.is_large_string(t)):
            return None
        null = arr.is_null().to_numpy(zero_copy_only=False)
        strs = arr.fill_null("").to_pylist()
        enc = _len_delimited([s.encode("utf-8") for s in strs], b"\x12")
        text = strs if with_text else None
    elif value_type == ValueType.BYTES:
        if not (pa.types.is_binary(t) or pa.types.is_large_binary(t)):
            return None
        null = arr.is_null().to_numpy(zero_copy_only=False)
        enc = _len_delimited(arr.fill_null(b"").to_pylist(), b"\x0a")
        text = [None] * n if with_text else None
    elif value_type == ValueType.UNIX_TIMESTAMP:
        if not pa.types.is_timestamp(t):
            return None
        raw = arr.to_numpy(zero_copy_only=False)
        if raw.dtype.kind != "M":
            return None
        secs = raw.astype("datetime64[s]").astype(np.int64)  # NaT -> INT64_MIN, as Feast does
        if arr.null_count == n:
            null = np.ones(n, dtype=bool)
        else:
            null = np.zeros(n, dtype=bool)
        enc = _varints(secs, 0x40)
        text = [None] * n if with_text else None
    else:
        return None
    if null.any():
        for i in np.flatnonzero(null).tolist():
            enc[i] = b""
            if text is not None:
                text[i] = None
    return enc, text


def _check_sample(series: pd.Series, value_type: ValueType, enc: list[bytes],
                  view_has_value: bool = False) -> bool:
    """Compare a sample of the fast encoding (head, tail, nulls) with Feast's own converter."""
    n = len(series)
    if n == 0:
        return True
    idx = set(range(min(n, 32))) | set(range(max(0, n - 8), n))
    nulls = np.flatnonzero(series.isna().to_numpy())[:16].tolist()
    idx |= set(nulls)
    # Feast picks its type-check sample from the first non-null value: keep that row in the sample
    notnull = np.flatnonzero(~series.isna().to_numpy())
    if len(notnull):
        idx.add(int(notnull[0]))
    order = sorted(idx)
    sub = series.iloc[order].reset_index(drop=True)
    try:
        ref = _reference_values(sub, value_type, view_has_value)
    except Exception:  # noqa: BLE001
        return False
    # all-null columns: Feast's converter short-circuits per batch, keep its answer
    return all(ref[j] == enc[i] for j, i in enumerate(order))


def encode_column(series: pd.Series, value_type: ValueType, with_text: bool = True,
                  view_has_value: bool = False) -> tuple[list[bytes], list | None]:
    """Serialized Value protos of a column, plus the SQLite ``value_text`` of each value when asked for.

    ``view_has_value``: the view's column has a non-empty value outside this partition (see
    :func:`_feast_protos`; it only changes BYTES columns, the one type with empty values that are not null).
    """
    fast = _fast_values(series, value_type, with_text)
    if fast is not None and _check_sample(series, value_type, fast[0], view_has_value):
        if value_type == ValueType.UNIX_TIMESTAMP and series.isna().all():
            return [b""] * len(series), ([None] * len(series) if with_text else None)
        return fast
    from feast.infra.online_stores.helpers import extract_text_and_num

    protos = _feast_protos(series, value_type, view_has_value)
    text = [extract_text_and_num(p, False)[0] for p in protos] if with_text else None
    return [p.SerializeToString() for p in protos], text


def encode_entity_keys(df: pd.DataFrame, join_keys: dict[str, ValueType], version: int) -> list[bytes]:
    """``serialize_entity_key`` of every row (vectorized for one string or int64 join key)."""
    from feast.infra.key_encoding_utils import serialize_entity_key
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
    from feast.type_map import python_values_to_proto_values

    names = list(join_keys)
    n = len(df)
    if version >= 3 and len(names) == 1 and n:
        name = names[0]
        col = df[name]
        kname = name.encode("utf8")
        prefix = struct.pack("<I", 1) + struct.pack("<I", ValueType.STRING.value) + struct.pack("<I", len(kname)) + kname
        out = None
        vt = join_keys[name]
        if vt == ValueType.STRING and not col.isna().any():
            out = _string_keys(prefix + struct.pack("<I", ValueType.STRING.value), col)
        elif vt == ValueType.INT64 and col.dtype.kind == "i":
            p = prefix + struct.pack("<I", ValueType.INT64.value) + struct.pack("<I", 8)
            rec = np.empty(n, dtype=[("p", f"V{len(p)}"), ("v", "<i8")])
            rec["p"] = np.frombuffer(p, dtype=f"V{len(p)}")[0]
            rec["v"] = col.to_numpy()
            out = _fixed_width(rec)
        if out is not None:
            first = python_values_to_proto_values(_feast_numpy(col.iloc[:1]), vt)[0]
            ref = serialize_entity_key(EntityKeyProto(join_keys=names, entity_values=[first]),
                                       entity_key_serialization_version=version)
            if ref == out[0]:
                return out
    values = {k: python_values_to_proto_values(_feast_numpy(df[k]), vt) for k, vt in join_keys.items()}
    return [serialize_entity_key(EntityKeyProto(join_keys=names, entity_values=[values[k][i] for k in names]),
                                 entity_key_serialization_version=version) for i in range(n)]


def _fixed_width(records: np.ndarray) -> list[bytes]:
    """Each record of a structured array as one ``bytes``."""
    width = records.dtype.itemsize
    return pa.FixedSizeBinaryArray.from_buffers(pa.binary(width), len(records),
                                                [None, pa.py_buffer(records.tobytes())]).to_pylist()


def _string_keys(prefix: bytes, col: pd.Series) -> list[bytes]:
    """``prefix + le32(len) + utf8`` of every value, in Arrow (a Python loop cost half the read task)."""
    try:
        values = pa.array(col.to_numpy(dtype=object), pa.large_string()).cast(pa.large_binary())
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # not all str: as Feast's converter would see them
        return [prefix + struct.pack("<I", len(b)) + b for b in (str(v).encode("utf8") for v in col.tolist())]
    lengths = pc.binary_length(values).to_numpy(zero_copy_only=False).astype("<u4")
    length_bytes = pa.FixedSizeBinaryArray.from_buffers(pa.binary(4), len(values),
                                                        [None, pa.py_buffer(lengths.tobytes())])
    return pc.binary_join_element_wise(pa.scalar(prefix, pa.large_binary()), length_bytes.cast(pa.large_binary()),
                                       values, pa.scalar(b"", pa.large_binary())).to_pylist()


def py_datetimes(ts: pd.Series) -> list[datetime]:
    """Naive-UTC python datetimes (microseconds), as Feast's ``_coerce_datetime``/``to_naive_utc`` give."""
    us = to_utc(ts).dt.tz_localize(None).to_numpy().astype("datetime64[us]")
    return us.tolist()


def timestamp_protos(secs: np.ndarray, nanos: np.ndarray) -> list[bytes]:
    """Serialized ``google.protobuf.Timestamp`` of each (seconds, nanos) pair (proto3: zero fields omitted)."""
    from google.protobuf.timestamp_pb2 import Timestamp

    s_enc = _varints(secs, 0x08)
    n_enc = _varints(nanos, 0x10)
    out = [(a if s else b"") + (c if ns else b"") for a, c, s, ns in
           zip(s_enc, n_enc, (secs != 0).tolist(), (nanos != 0).tolist())]
    for i in {0, len(out) - 1}:  # check against protobuf itself
        t = Timestamp(seconds=int(secs[i]), nanos=int(nanos[i]))
        if t.SerializeToString() != out[i]:
            return [Timestamp(seconds=int(a), nanos=int(b)).SerializeToString()
                    for a, b in zip(secs.tolist(), nanos.tolist())]
    return out
