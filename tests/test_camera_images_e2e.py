"""`imagerank recalculate --images` on real camera JPEGs and broken ones, through to online lookups.

The catalog is one provider whose landing pages all sit on one host (real flickr rows of the Openverse
sample), so the domain views have a single entity: the shape that once failed inside the Dask engine.
"""

from __future__ import annotations

import csv
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from imagerank.testing import shared_fixture

pytestmark = pytest.mark.slow

BROKEN_KINDS = ("truncated", "random-bytes", "zero-bytes", "header-then-garbage")


def _broken(kind: str, good: bytes, rng: random.Random) -> bytes:
    return {"truncated": good[: len(good) // 3], "random-bytes": rng.randbytes(5000), "zero-bytes": b"",
            "header-then-garbage": good[:600] + rng.randbytes(20000)}[kind]


@pytest.fixture(scope="module")
def camera_run(tmp_path_factory, sample_catalog):
    root = tmp_path_factory.mktemp("camera")
    jpegs = sorted(p for p in shared_fixture("exif/exifpy/jpg").rglob("*") if p.suffix.lower() == ".jpg")
    with open(sample_catalog, newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["provider"] == "flickr"]
    broken_per_kind = 5
    rows = rows[: len(jpegs) + broken_per_kind * len(BROKEN_KINDS)]
    (root / "img").mkdir()
    rng = random.Random(14)
    broken = {}
    for i, row in enumerate(rows):
        if i < len(jpegs):
            data = jpegs[i].read_bytes()
        else:
            kind = BROKEN_KINDS[i % len(BROKEN_KINDS)]
            data = _broken(kind, jpegs[i % len(jpegs)].read_bytes(), rng)
            broken[row["identifier"]] = kind
        (root / "img" / f"{row['identifier']}.jpg").write_bytes(data)
    with open(root / "catalog.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    # the user's command as typed, relative paths included: its own LocalCluster, started in this directory
    env = {k: v for k, v in os.environ.items() if k != "DASK_SCHEDULER_ADDRESS"}
    done = subprocess.run([sys.executable, "-m", "imagerank.cli", "recalculate", "--catalog", "catalog.csv",
                           "--images", "img/{image_id}.jpg", "--workdir", "w"],
                          cwd=root, env=env, capture_output=True, text=True, timeout=1800)
    return root, rows, broken, done


def test_the_run_completes_and_materializes(camera_run):
    root, rows, _, done = camera_run
    assert done.returncode == 0, done.stderr[-4000:]
    hosts = {r["foreign_landing_url"].split("://")[-1].split("/")[0] for r in rows}
    assert hosts == {"www.flickr.com"}  # the shape of the original failure: one provider, one host
    manifests = [p for p in (root / "w" / "runs").glob("*.json") if p.name != "in-progress.json"]
    assert len(manifests) == 1
    rec = json.loads(manifests[0].read_text())["reconciliation"]
    # every input row is scored or rejected with its reason (the reconciliation checks the sum)
    assert rec["ok"] and rec["input_rows"] == len(rows) and rec["score_rows"] == rec["catalog_rows"] == len(rows)
    assert "materialize" in done.stderr  # the Feast stage ran (its failure would have failed the run)


def test_broken_images_are_feature_rows_with_an_error_code(camera_run):
    root, rows, broken, done = camera_run
    assert done.returncode == 0, done.stderr[-4000:]
    pixels = pd.read_parquet(root / "w" / "features" / "pixels").set_index("image_id")
    assert set(pixels.index) == {r["identifier"] for r in rows}  # every image a row, broken or not
    errors = pixels["pixels_error"]
    assert errors.loc[list(broken)].notna().all(), errors.loc[list(broken)]
    real = [r["identifier"] for r in rows if r["identifier"] not in broken]
    assert errors.loc[real].isna().mean() > 0.9  # the real camera files decode


def test_lookup_reads_every_row_from_the_online_store(camera_run):
    root, rows, broken, done = camera_run
    assert done.returncode == 0, done.stderr[-4000:]
    ids = [r["identifier"] for r in rows]
    scores = pd.read_parquet(root / "w" / "scores").set_index("image_id")
    looked = subprocess.run([sys.executable, "-m", "imagerank.cli", "lookup", "--workdir", "w", "--file", "-"],
                            cwd=root, input="\n".join(ids) + "\n", capture_output=True, text=True, timeout=600)
    assert looked.returncode == 0, looked.stderr[-2000:]
    found = [json.loads(line) for line in looked.stdout.splitlines()]
    assert [f["image_id"] for f in found] == ids
    assert all(f["found"] for f in found)
    for f in found:
        assert f["popularity"] == pytest.approx(scores.loc[f["image_id"], "popularity"])
        assert f["authority"] == pytest.approx(scores.loc[f["image_id"], "authority"])
    assert {f["image_id"] for f in found} >= set(broken)  # broken images are scored too
