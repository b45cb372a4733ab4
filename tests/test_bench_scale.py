"""benchmarks.bench_scale plans its stages from the stage table, and its planted hashes are what it claims."""

import numpy as np
import pandas as pd
import pytest

from benchmarks.bench_scale import (IMAGE_STAGE, MAX_PLANTED_BITS, PAIR_EVERY, benchmark_options, hamming,
                                    planned_stages, planted_phash)
from pipelines.stages import STAGES, Stage


def _names(stages):
    return [stage.name for stage in stages]


def test_planned_stages_are_the_tables_stages_recalculate_runs_for_a_catalog_and_images(tmp_path):
    planned = _names(planned_stages(benchmark_options(str(tmp_path / "c.csv"), str(tmp_path / "w"))))
    for name in ("ingest", "features: metadata", IMAGE_STAGE, "features: visual duplicates", "train", "score",
                 "reconcile"):
        assert name in planned
    for name in ("graph: extract + PageRank", "graph: linkgraph", "feast: apply + materialize"):
        assert name not in planned  # no crawl, link graph or materialization in this benchmark
    table = _names(STAGES)
    assert planned == sorted(planned, key=table.index)  # the table's order


def test_a_stage_added_to_the_table_is_benchmarked_in_its_place(tmp_path):
    added = Stage("features: captions", "captions", lambda ctx: None, reads=("catalog",), writes=("captions",))
    at = _names(STAGES).index("train")
    table = (*STAGES[:at], added, *STAGES[at:])
    planned = _names(planned_stages(benchmark_options(str(tmp_path / "c.csv"), str(tmp_path / "w")), table))
    assert planned.index("features: captions") == planned.index("train") - 1
    assert "features: join" in planned  # the table's own stages are all there


def test_a_table_without_the_image_stage_is_refused(tmp_path):
    table = tuple(stage for stage in STAGES if stage.name != IMAGE_STAGE)
    with pytest.raises(RuntimeError, match="no stage"):
        planned_stages(benchmark_options(str(tmp_path / "c.csv"), str(tmp_path / "w")), table)


def test_planted_copies_are_one_to_six_bits_from_their_original_and_others_are_far():
    numbers = np.arange(0, PAIR_EVERY * 60, dtype="int64")
    hashes = planted_phash(numbers)
    copies = numbers[numbers % PAIR_EVERY == 1]
    bits = hamming(hashes[copies], hashes[copies - 1])
    assert bits.min() == 1 and bits.max() == MAX_PLANTED_BITS
    assert set(bits.tolist()) == set(range(1, MAX_PLANTED_BITS + 1))
    others = numbers[(numbers % PAIR_EVERY) > 1]
    assert hamming(hashes[others[1:]], hashes[others[:-1]]).min() > MAX_PLANTED_BITS


def test_synthetic_pixel_rows_are_counted_by_the_image_stages_own_outcome_counts():
    import uuid

    import pandas as pd

    from benchmarks.bench_scale import synthetic_pixels
    from imagerank.features.pixels import PIXELS_META
    from pipelines.images import _outcome_counts

    catalog = pd.DataFrame({"image_id": [str(uuid.UUID(int=n + 1)) for n in range(6)]})
    pixels = synthetic_pixels(catalog, pd.Timestamp("2026-01-01", tz="UTC"))
    assert list(pixels.columns) == list(PIXELS_META.columns)
    counts = _outcome_counts(pixels[["pixels_error"]].assign(pixels_reused=False, image_fetched=False), ("pixels",))
    assert counts[["code", "n", "fetched"]].values.tolist() == [["ok", 6, 0]]


def test_disk_writes_count_a_p2p_shuffle_and_no_spill_for_a_small_frame(dask_client):
    import dask
    import dask.dataframe as dd

    from benchmarks.bench_scale import _worker_disk_writes

    before = dask_client.run(_worker_disk_writes)
    frame = dd.from_pandas(pd.DataFrame({"key": np.arange(20_000) % 97, "value": np.arange(20_000)}), npartitions=4)
    with dask.config.set({"dataframe.shuffle.method": "p2p"}):
        total = int(frame.shuffle("key")["value"].sum().compute())
    assert total == sum(range(20_000))
    after = dask_client.run(_worker_disk_writes)
    spilled = sum(after[w][0] - before.get(w, (0.0, 0.0))[0] for w in after)
    shuffled = sum(after[w][1] - before.get(w, (0.0, 0.0))[1] for w in after)
    assert spilled == 0
    assert shuffled >= 20_000 * 16  # both int64 columns of every row went through the shuffle's disk buffers


def test_planted_pairs_are_counted_from_the_catalog_so_a_lost_image_is_not_found(tmp_path):
    """An image the visual stage lost (no row) fails its pair instead of leaving the pair out of the count."""
    import uuid

    from benchmarks.bench_scale import planted_recall

    numbers = [0, 1, 200, 201, 5]  # pairs 0 and 1 (n % 200 in {0, 1}) and an unpaired image
    ids = [str(uuid.UUID(int=n + 1)) for n in numbers]
    (tmp_path / "catalog").mkdir()
    pd.DataFrame({"image_id": ids}).to_parquet(tmp_path / "catalog" / "part.0.parquet", index=False)
    visual = pd.DataFrame({"image_id": ids[:3] + ids[4:], "dup_neighbors": [1, 1, 1, 0], "has_phash": True})
    (tmp_path / "features" / "visual").mkdir(parents=True)
    visual.to_parquet(tmp_path / "features" / "visual" / "part.0.parquet", index=False)
    assert planted_recall(tmp_path) == {"planted_pairs": 2, "planted_pairs_found": 1, "planted_duplicates_found": 0.5}
