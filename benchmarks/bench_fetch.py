"""Fetching images from an S3 API: one at a time vs many per call, on the same objects.

    python -m benchmarks.bench_fetch [--quick] [--n N] [--repeats R]

Starts a throwaway S3 API server (moto's standalone server over HTTP on 127.0.0.1, as the tests do),
uploads N generated JPEGs (640x427, as ``bench_pixels``), then times, in turns, each contender reading
every object once (medians of the repeats):

- sequential: one ranged GET per image, each waiting for the last (what the image stage did before: latency
  sets the pace), through :meth:`ImageSource.fetch` with one path per call;
- sequential open + read: ``fs.open(path).read()`` per image (the previous code path: a HEAD, then a GET);
- concurrent: :meth:`ImageSource.fetch` of the batches the partition function forms (``fetch_bytes`` of
  listed sizes per call; all requests of a call in flight at once on s3fs's event loop).

The server runs on the same (shared) machine, so its round trip is far shorter than a real object store's:
the ratio here is a floor for what concurrency buys against S3 itself. Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

from benchmarks.bench_pixels import natural_jpeg
from imagerank.features.image_source import ImageSource
from imagerank.features.images import ImageLimits
from imagerank.testing import s3_environment, s3_server


def batches(paths: list[str], sizes: list[int], budget: int) -> list[list[str]]:
    """Paths in the batches :func:`imagerank.features.images._fetch_batches` forms (listed sizes up to ``budget``)."""
    out: list[list[str]] = [[]]
    held = 0
    for path, size in zip(paths, sizes):
        if out[-1] and held + size > budget:
            out.append([])
            held = 0
        out[-1].append(path)
        held += size
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke size (60 images, 3 repeats)")
    parser.add_argument("--n", type=int, default=None, help="number of images (default 300)")
    parser.add_argument("--repeats", type=int, default=None, help="repeats per contender (default 5)")
    args = parser.parse_args(argv)
    n = args.n or (60 if args.quick else 300)
    repeats = args.repeats or (3 if args.quick else 5)
    limits = ImageLimits()
    rng = np.random.default_rng(20261203)
    blobs = [natural_jpeg(rng) for _ in range(n)]

    with s3_server("imagerank") as endpoint:
        os.environ.update(s3_environment(endpoint))
        source = ImageSource("s3://imagerank/bench/{image_id}.jpg")
        fs = source.fs
        paths = [source.path_for({"image_id": f"img{i:05d}"}) for i in range(n)]
        for path, blob in zip(paths, blobs):
            fs.pipe(path, blob)
        listed = {t["image.path"]: t["image.size"] for batch in source.listing() for t in batch.to_pylist()}
        assert len(listed) == n
        plan = batches(paths, [listed[p] for p in paths], limits.fetch_bytes)

        def sequential() -> list:
            return [source.fetch([p], limits.max_bytes)[0] for p in paths]

        def open_read() -> list:
            out = []
            for p in paths:
                with fs.open(p, "rb") as fh:
                    out.append(fh.read(limits.max_bytes + 1))
            return out

        def concurrent() -> list:
            return [data for batch in plan for data in source.fetch(batch, limits.max_bytes)]

        contenders = {"sequential": sequential, "sequential_open_read": open_read, "concurrent": concurrent}
        for fn in contenders.values():  # warm-up: connections, imports; and every contender reads the same bytes
            assert fn() == blobs
        times: dict[str, list[float]] = {name: [] for name in contenders}
        names = list(contenders)
        for rep in range(repeats):
            for name in names[rep % len(names):] + names[: rep % len(names)]:  # rotate who goes first
                start = time.perf_counter()
                contenders[name]()
                times[name].append(time.perf_counter() - start)

    median = {name: statistics.median(values) for name, values in times.items()}
    figures = {
        "benchmark": "fetch", "images": n, "repeats": repeats,
        "mean_kib": round(sum(map(len, blobs)) / n / 1024, 1), "calls_concurrent": len(plan),
        "fetch_bytes": limits.fetch_bytes,
        "sequential_s_median": round(median["sequential"], 4),
        "sequential_open_read_s_median": round(median["sequential_open_read"], 4),
        "concurrent_s_median": round(median["concurrent"], 4),
        "sequential_img_s": round(n / median["sequential"], 1),
        "concurrent_img_s": round(n / median["concurrent"], 1),
        "ratio_sequential_to_concurrent": round(median["sequential"] / median["concurrent"], 2),
        "ratio_open_read_to_concurrent": round(median["sequential_open_read"] / median["concurrent"], 2),
        "load_average": round(os.getloadavg()[0], 2),
    }
    print(f"{n} JPEGs (mean {figures['mean_kib']} KiB) from moto's S3 server, median of {repeats}: sequential "
          f"{median['sequential']:.3f} s, open+read {median['sequential_open_read']:.3f} s, concurrent "
          f"{median['concurrent']:.3f} s ({len(plan)} call(s)): {figures['ratio_sequential_to_concurrent']}x",
          file=sys.stderr)
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main(sys.argv[1:])
