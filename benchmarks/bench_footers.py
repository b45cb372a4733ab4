"""Reading the footers of a many-file Parquet dataset on an S3 API: one file at a time vs all together.

    python -m benchmarks.bench_footers [--quick] [--files N] [--repeats R]

Starts a throwaway S3 API server (moto's standalone server over HTTP on 127.0.0.1, as the tests do),
writes N small Parquet files (catalog-like columns, two row groups each), then times, in turns, each
contender listing the dataset's ``(file, row group, rows)`` (medians of the repeats):

- sequential: every file opened and its footer parsed by pyarrow, one after the other (what the image
  stage's ``catalog_pieces`` and ingest's row count did before: a HEAD and a ranged GET per file, latency
  sets the pace);
- concurrent: :func:`imagerank.io.parquet_pieces` (one suffix-range GET per file, a batch of files in
  flight at once on fsspec's event loop).

The server runs on the same (shared) machine, so its round trip is far shorter than a real object store's
(~50-100 ms per footer request): the ratio here is a floor for what concurrency buys against S3 itself.
Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import io as _io
import json
import os
import statistics
import sys
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from imagerank import io, storage
from imagerank.testing import s3_environment, s3_server


def small_file(rng: np.random.Generator, index: int, rows: int = 200) -> bytes:
    """A small catalog-like Parquet file (ids, URLs, a provider, JSON ``meta_data``) in two row groups."""
    ids = [f"{index:05d}-{k:04d}" for k in range(rows)]
    table = pa.table({"image_id": ids, "url": [f"https://example.org/{i}.jpg" for i in ids],
                      "provider": rng.choice(["flickr", "wikimedia", "met"], rows).tolist(),
                      "width": rng.integers(100, 4000, rows), "meta_data": ['{"license_url": null}'] * rows})
    out = _io.BytesIO()
    pq.write_table(table, out, row_group_size=rows // 2)
    return out.getvalue()


def sequential_pieces(location: str) -> list[tuple[str, int, int]]:
    """The previous reading: each file opened and its footer parsed in turn."""
    fs, root = storage.filesystem(location)
    root = root.rstrip("/")
    pieces = []
    for file in sorted(p for p in fs.find(root) if p.endswith(".parquet")):
        with fs.open(file, "rb") as handle:
            meta = pq.ParquetFile(handle).metadata
        pieces.extend((file[len(root) + 1:], g, meta.row_group(g).num_rows) for g in range(meta.num_row_groups))
    return pieces


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke size (100 files)")
    parser.add_argument("--files", type=int, default=None, help="number of Parquet files (default 400)")
    parser.add_argument("--repeats", type=int, default=3, help="repeats per contender (default 3)")
    args = parser.parse_args(argv)
    n = args.files or (100 if args.quick else 400)
    rng = np.random.default_rng(20261203)
    blobs = [small_file(rng, i) for i in range(n)]

    with s3_server("imagerank") as endpoint:
        os.environ.update(s3_environment(endpoint))
        location = "s3://imagerank/bench/catalog"
        fs, root = storage.filesystem(location)
        fs.pipe({f"{root}/part.{i:06d}.parquet": blob for i, blob in enumerate(blobs)})

        def listed(fn):  # a fresh listing each time: no directory cache carried from one contender to the next
            fs.invalidate_cache()
            return fn(location)

        contenders = {"sequential": sequential_pieces, "concurrent": io.parquet_pieces}
        expected = listed(sequential_pieces)  # warm-up (connections, imports) and both give the same pieces
        assert len(expected) == 2 * n and listed(io.parquet_pieces) == expected
        times: dict[str, list[float]] = {name: [] for name in contenders}
        names = list(contenders)
        for rep in range(args.repeats):
            for name in names[rep % len(names):] + names[: rep % len(names)]:  # rotate who goes first
                start = time.perf_counter()
                listed(contenders[name])
                times[name].append(time.perf_counter() - start)

    median = {name: statistics.median(values) for name, values in times.items()}
    figures = {
        "benchmark": "footers", "files": n, "row_groups": len(expected), "repeats": args.repeats,
        "mean_file_kib": round(sum(map(len, blobs)) / n / 1024, 1),
        "files_at_once": io.FOOTER_FILES_AT_ONCE,
        "sequential_s_median": round(median["sequential"], 4),
        "concurrent_s_median": round(median["concurrent"], 4),
        "sequential_ms_per_file": round(1000 * median["sequential"] / n, 2),
        "concurrent_ms_per_file": round(1000 * median["concurrent"] / n, 2),
        "ratio_sequential_to_concurrent": round(median["sequential"] / median["concurrent"], 2),
        "load_average": round(os.getloadavg()[0], 2),
    }
    print(f"{n} Parquet footers from moto's S3 server, median of {args.repeats}: sequential "
          f"{median['sequential']:.3f} s, concurrent {median['concurrent']:.3f} s: "
          f"{figures['ratio_sequential_to_concurrent']}x", file=sys.stderr)
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main(sys.argv[1:])
