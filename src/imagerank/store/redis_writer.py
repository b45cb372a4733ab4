"""Redis online store, written from the workers in Feast's exact layout, commands packed in Arrow."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from imagerank.store.encoding import timestamp_protos, to_utc
from imagerank.store.spec import WriteSpec, cached_store, encode_batch, feature_view_of


def _redis_client(spec: WriteSpec):
    from feast.infra.online_stores.redis import RedisOnlineStore

    store_cfg = spec.repo_config.online_store
    return cached_store(("redis", store_cfg.connection_string), lambda: RedisOnlineStore()._get_client(store_cfg))


_BULK = pa.large_binary()


def _literal(value: bytes) -> pa.Scalar:
    return pa.scalar(value, _BULK)


def _concat(*parts) -> pa.Array:
    """Row-wise concatenation of binary arrays and literals, in Arrow (no Python object per row)."""
    return pc.binary_join_element_wise(*parts, _literal(b""))


def _bulk_strings(values) -> pa.Array:
    """Each value as a RESP bulk string, ``$<length>\r\n<value>\r\n``."""
    values = pa.array(values, _BULK) if not isinstance(values, pa.Array) else values.cast(_BULK)
    lengths = pc.cast(pc.binary_length(values), pa.string()).cast(_BULK)
    return _concat(_literal(b"$"), lengths, _literal(b"\r\n"), values, _literal(b"\r\n"))


def _resp(value: bytes) -> pa.Scalar:
    return _literal(b"$%d\r\n%b\r\n" % (len(value), value))


_REDIS_ROUND = 10_000
"""Commands sent before their replies are read (bounds the client's buffers)."""


def _read_replies(conn, n: int) -> list:
    """The next ``n`` replies on the connection; an error reply is returned as its exception.

    With hiredis, straight from its reader: redis-py's per-reply ``read_response`` costs ~8 us, which
    was more than the server spends on the HSET itself.
    """
    parser = getattr(conn, "_parser", None)
    reader = getattr(parser, "_reader", None)
    if reader is None or not hasattr(parser, "read_from_socket"):
        from redis.exceptions import ResponseError

        out = []
        for _ in range(n):
            try:
                out.append(conn.read_response(disconnect_on_error=True))
            except ResponseError as e:
                out.append(e)
        return out
    try:  # what redis-py's reader answers while a reply is incomplete (hiredis' own default: False)
        from redis._parsers.hiredis import NOT_ENOUGH_DATA
    except ImportError:
        NOT_ENOUGH_DATA = False
    out: list = []
    gets = reader.gets
    while len(out) < n:
        reply = gets()
        if reply is NOT_ENOUGH_DATA:
            parser.read_from_socket()
        else:
            out.append(reply)
    return out


def _redis_round_trips(client, commands: pa.Array) -> list:
    """Send pre-packed RESP commands on one pooled connection in rounds; return every reply.

    This is what ``pipeline(transaction=False)`` does, without redis-py packing each argument in Python:
    each round is one slice of the commands' Arrow buffer. Error replies are raised after the round
    (as redis-py's pipeline does after reading all its replies).
    """
    commands = commands.cast(_BULK)
    n = len(commands)
    offsets = np.frombuffer(commands.buffers()[1], dtype=np.int64)[commands.offset:commands.offset + n + 1]
    data = memoryview(commands.buffers()[2])
    pool = client.connection_pool
    conn = pool.get_connection()
    replies: list = []
    try:
        for start in range(0, n, _REDIS_ROUND):
            stop = min(n, start + _REDIS_ROUND)
            conn.send_packed_command([data[offsets[start]:offsets[stop]]])
            got = _read_replies(conn, stop - start)
            error = next((r for r in got if isinstance(r, Exception)), None)
            if error is not None:
                raise error
            replies.extend(got)
    except BaseException:
        conn.disconnect()
        raise
    finally:
        pool.release(conn)
    return replies


def write_redis(batch: pd.DataFrame, spec: WriteSpec) -> int:
    """Feast's Redis layout: one hash per entity key (+ project), ``_ts:<view>`` and mmh3 field names.

    Commands are packed in Arrow (RESP) and sent in large non-transactional rounds; the timestamp rule is
    Feast's: an entity whose stored event timestamp is not older keeps its values.
    """
    from feast.infra.online_stores.helpers import _mmh3
    from feast.infra.online_stores.redis import _versioned_fv_name

    cfg = spec.repo_config
    store_cfg = cfg.online_store
    fv_name = _versioned_fv_name(feature_view_of(spec), cfg)
    ts_field = _resp(f"_ts:{fv_name}".encode())
    ek, cols = encode_batch(batch, spec, with_text=False)
    n = len(ek)
    if n == 0:
        return 0
    keys = _bulk_strings(_concat(pa.array(ek, _BULK), _literal(cfg.project.encode("utf-8"))))
    us = to_utc(batch[spec.ts_col]).dt.tz_localize(None).to_numpy().astype("datetime64[us]").astype(np.int64)
    secs, micros = np.divmod(us, 1_000_000)
    client = _redis_client(spec)
    keep = np.ones(n, dtype=bool)
    if not store_cfg.skip_dedup:
        stored = _redis_round_trips(client, _concat(_literal(b"*3\r\n$5\r\nHMGET\r\n"), keys, ts_field))
        from google.protobuf.timestamp_pb2 import Timestamp

        ts_nanos = secs * 1_000_000_000 + micros * 1000
        for i, reply in enumerate(stored):
            if reply and reply[0]:
                t = Timestamp.FromString(reply[0])
                if int(ts_nanos[i]) <= t.seconds * 1_000_000_000 + t.nanos:
                    keep[i] = False
    if not keep.any():
        return 0
    parts = [_literal(b"*%d\r\n$4\r\nHSET\r\n" % (4 + 2 * len(cols))), keys, ts_field,
             _bulk_strings(timestamp_protos(secs, micros * 1000))]
    for name, (values, _) in cols.items():
        parts += [_resp(_mmh3(f"{fv_name}:{name}")), _bulk_strings(values)]
    commands = _concat(*parts)
    if not keep.all():
        commands, keys = commands.filter(keep), keys.filter(keep)
    if store_cfg.key_ttl_seconds:  # after every HSET of the batch: same connection, same order
        ttl = str(int(store_cfg.key_ttl_seconds)).encode()
        expires = _concat(_literal(b"*3\r\n$6\r\nEXPIRE\r\n"), keys, _resp(ttl))
        commands = pa.concat_arrays([commands, expires])
    _redis_round_trips(client, commands)
    return int(keep.sum())
