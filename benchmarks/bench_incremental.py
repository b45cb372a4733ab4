"""What a re-run costs next to a full run: unchanged catalog, forced re-run, and a day of new rows.

    python -m benchmarks.bench_incremental [--quick] [--rows N] [--new N]

Generates the demo catalog with images, runs ``recalculate`` (without the Feast materialization, which
has its own benchmark) on one LocalCluster, then again: with nothing changed (skipped), forced with
nothing changed (every stage runs; pixels and EXIF are reused from their digests), forced with
``--recompute-images`` (the reference: a second full run on a warm cluster), and after adding ``--new``
rows. Prints seconds per run, the image stage's seconds and ratios to the full run; ends with JSON.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import pandas as pd

from imagerank.cluster import dask_client
from imagerank.demo import generate
from pipelines.recalculate import RecalculateOptions, recalculate

IMAGE_STAGE = "features: pixels + exif"


def run(inputs: dict, workdir: Path, scheduler: str, **extra) -> dict:
    options = RecalculateOptions(catalog=inputs["catalog"], workdir=workdir, images=inputs["images"],
                                 crawl=inputs["crawl"], ranks=inputs["ranks"], materialize=False,
                                 scheduler=scheduler, **extra)
    started = time.perf_counter()
    manifest = recalculate(options, quiet=True)
    return {"seconds": time.perf_counter() - started,
            "image_stage_s": manifest.get("timings_s", {}).get(IMAGE_STAGE, 0.0) if not manifest.get("unchanged") else 0.0,
            "reused": manifest.get("images", {}).get("pixels", {}).get("reused", 0) if not manifest.get("unchanged") else None,
            "unchanged": bool(manifest.get("unchanged"))}


def with_new_rows(inputs: dict, root: Path, new: int) -> dict:
    """The catalog plus ``new`` rows whose images join the same folder (a day of provider updates)."""
    extra = generate(root / "extra", rows=new, seed=99)
    for path in Path(extra["images"]).iterdir():
        shutil.copy(path, Path(inputs["images"]) / path.name)
    union = pd.concat([pd.read_csv(inputs["catalog"][0], dtype=str, keep_default_na=False),
                       pd.read_csv(extra["catalog"][0], dtype=str, keep_default_na=False)], ignore_index=True)
    union.to_csv(root / "union.csv", index=False)
    return {**inputs, "catalog": [str(root / "union.csv")]}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small smoke size")
    parser.add_argument("--rows", type=int, default=None, help="catalog rows with images (default 2,000)")
    parser.add_argument("--new", type=int, default=None, help="rows added for the incremental run (default 5%%)")
    args = parser.parse_args(argv)
    rows = args.rows or (300 if args.quick else 2_000)
    new = args.new or max(1, rows // 20)
    with tempfile.TemporaryDirectory() as tmp, dask_client() as client:
        root = Path(tmp)
        inputs = generate(root / "inputs", rows=rows)
        address = client.scheduler.address
        workdir = root / "W"
        runs = {"full": run(inputs, workdir, address)}
        runs["unchanged (skipped)"] = run(inputs, workdir, address)
        runs["forced, images reused"] = run(inputs, workdir, address, force=True)
        runs["forced, images recomputed"] = run(inputs, workdir, address, force=True, reuse_images=False)
        runs[f"+{new} new rows"] = run(with_new_rows(inputs, root, new), workdir, address)
    reference = runs["forced, images recomputed"]
    print(f"\n{rows} catalog rows with images, LocalCluster with one worker per core; ratio = to a forced full re-run")
    print(f"{'run':<28}{'seconds':>9}{'ratio':>8}{'image stage s':>15}{'ratio':>8}{'reused':>8}")
    for name, r in runs.items():
        ratio = r["seconds"] / reference["seconds"]
        image_ratio = r["image_stage_s"] / reference["image_stage_s"] if reference["image_stage_s"] else float("nan")
        print(f"{name:<28}{r['seconds']:>9.1f}{ratio:>8.2f}{r['image_stage_s']:>15.1f}{image_ratio:>8.2f}"
              f"{'' if r['reused'] is None else r['reused']:>8}")
    figures = {"benchmark": "incremental", "rows": rows, "new_rows": new, "runs": runs}
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
