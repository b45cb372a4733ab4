"""What the image stage's joins shuffle: one join per previous family (before) vs both families at once.

    python -m benchmarks.bench_image_joins [--rows N]

Takes the first N rows of the real Openverse sample (``image_id`` = identifier, its real ``meta_data``),
gives 9 in 10 of them one of the real JPEGs of the shared EXIF fixtures (the others are not in the store),
runs the image stage once (the previous run: pixels and EXIF in 4 files each), lists the store into a
3-file listing, then builds the joined catalog of the next run both ways:

- before: the listing joined on by path with the path kept, then the previous pixels rows and the previous
  EXIF rows joined on by ``image_id``, one hash join each (what ``pipelines.images`` did);
- after: :func:`pipelines.images.joined_catalog` (the previous families read side by side, one join).

For every frame the optimized graph hash-partitions, it counts the frame's bytes in memory (pandas, deep)
by computing that frame: the bytes each shuffle moves. Synchronous scheduler, no timing. Ends with one
JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import dask
import dask.dataframe as dd
import fsspec
import pandas as pd
from dask.dataframe.dask_expr._collection import new_collection

import pipelines.images as stage
from imagerank import datasets, io
from imagerank.features.image_source import ImageSource
from imagerank.features.images import LISTED_PATH, PREVIOUS
from imagerank.testing import shared_fixture


def one_join_per_family(catalog_path: str, slices, columns: list[str], source: ImageSource, listing: str,
                        targets: dict[str, str]) -> dd.DataFrame:
    """The joins as they were: the path kept after the listing join, a hash join per previous family."""
    catalog = dd.from_map(stage.read_catalog_slice, slices, catalog_path=catalog_path, columns=columns,
                          meta=stage._catalog_meta(columns), divisions=[None] * (len(slices) + 1),
                          label="catalog-slice", enforce_metadata=False)
    catalog = catalog.map_partitions(stage.with_image_paths, source,
                                     meta=stage.with_image_paths(stage._catalog_meta(columns), source))
    listed = dd.read_parquet(listing).astype({LISTED_PATH: stage.KEY_DTYPE, "image.version": stage.KEY_DTYPE})
    catalog = catalog.merge(listed, on=LISTED_PATH, how="left", npartitions=catalog.npartitions)
    for family, target in targets.items():
        names = [c for c in stage.COLUMNS[family] if c != "image_id"]
        previous = io.read_ddf(io.current(target))[["image_id", *names]].astype({"image_id": stage.KEY_DTYPE})
        previous = previous.rename(columns={c: f"{PREVIOUS}{family}.{c}" for c in names})
        catalog = catalog.astype({"image_id": stage.KEY_DTYPE}).merge(previous, on="image_id", how="left",
                                                                      npartitions=catalog.npartitions)
    return catalog


def shuffled(frame: dd.DataFrame) -> list[dict]:
    """Columns and in-memory bytes of every frame the optimized graph hash-partitions."""
    sides = []
    for expr in frame.optimize().expr.lower_completely().walk():
        if "Shuffle" in type(expr).__name__:
            part = new_collection(expr.frame)
            sides.append({"columns": len(part.columns) - 1,  # without the partition number column
                          "bytes": int(part.memory_usage(deep=True, index=False).sum().compute())})
    return sides


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=600, help="catalog rows from the sample (default 600)")
    args = parser.parse_args(argv)
    sample = pd.read_csv(shared_fixture("catalog/openverse_sample_images.csv"), dtype=str,
                         keep_default_na=False).head(args.rows)
    n = len(sample)
    blobs = [p.read_bytes() for p in sorted(shared_fixture("exif").rglob("*")) if p.suffix.lower() == ".jpg"]
    with tempfile.TemporaryDirectory() as tmp, dask.config.set(scheduler="synchronous"):
        folder = Path(tmp) / "images"
        folder.mkdir()
        for i, identifier in enumerate(sample["identifier"]):
            if i % 10 != 9:
                (folder / f"{identifier}.jpg").write_bytes(blobs[i % len(blobs)])
        workdir = Path(tmp) / "W"
        io.write_frame(pd.DataFrame({"image_id": sample["identifier"], "meta_data": sample["meta_data"]}),
                       workdir / "catalog")
        template = f"{folder}/{{image_id}}.jpg"
        first = stage.run_image_features(None, str(workdir), template, images_per_task=100,
                                         rows_per_file=-(-n // 4), progress=False)
        print(f"previous run: {first['pixels']['files']} files per family, errors {first['pixels']['errors']}",
              file=sys.stderr)
        source = ImageSource(template)
        catalog = datasets.current(str(workdir), "catalog")
        slices = stage.plan_slices(io.parquet_pieces(catalog), 6)
        listing = str(Path(tmp) / "listing")
        stage.write_listing(source, fsspec.filesystem("file"), listing, rows_per_file=-(-n // 3))
        targets = {f: datasets.location(str(workdir), f) for f in ("pixels", "exif")}
        columns = ["image_id", "meta_data"]
        plans = {"before": one_join_per_family(catalog, slices, columns, source, listing, targets),
                 "after": stage.joined_catalog(catalog, slices, columns, source, listing, targets)}
        sides = {name: shuffled(frame) for name, frame in plans.items()}
        assert len(plans["before"].compute()) == len(plans["after"].compute()) == n

    figures = {"benchmark": "image_joins", "rows": n}
    for name, found in sides.items():
        total = sum(s["bytes"] for s in found)
        figures[name] = {"shuffles": len(found), "bytes": total, "bytes_per_row": round(total / n, 1),
                         "sides": found}
    figures["ratio_bytes_before_to_after"] = round(figures["before"]["bytes"] / figures["after"]["bytes"], 2)
    print(f"{n} sample rows: before {figures['before']['shuffles']} shuffles, {figures['before']['bytes_per_row']} "
          f"B/row; after {figures['after']['shuffles']} shuffles, {figures['after']['bytes_per_row']} B/row "
          f"({figures['ratio_bytes_before_to_after']}x)", file=sys.stderr)
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main(sys.argv[1:])
