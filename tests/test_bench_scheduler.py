"""benchmarks.bench_scheduler's graphs count every row, and its per-task arithmetic is what it says."""

import dask
import pytest

from benchmarks.bench_scheduler import (ROWS_PER_PARTITION, build_graph, make_partition, marginal_bytes_per_task,
                                        per_task)


@pytest.mark.parametrize("shape", ["map", "join"])
def test_each_shape_counts_every_row_of_every_partition(shape):
    # in-process, whatever cluster another test left as the default client (P2P shuffles need one)
    with dask.config.set(scheduler="sync", **{"dataframe.shuffle.method": "tasks"}):
        counts = build_graph(shape, 7).compute()
    assert int(counts["rows"].sum()) == 7 * ROWS_PER_PARTITION
    assert counts["total"].notna().all()


def test_partitions_hold_consecutive_ids():
    assert make_partition(3)["image_id"].tolist() == list(range(3 * ROWS_PER_PARTITION, 4 * ROWS_PER_PARTITION))


def test_unknown_shape_is_refused():
    with pytest.raises(ValueError, match="shape"):
        build_graph("shuffle-all", 2)


def test_per_task_takes_medians_of_held_and_executed_runs():
    mb = 2**20
    held = [{"tasks": 1000, "before_rss": 100 * mb, "peak_rss": 104 * mb, "after_rss": 103 * mb, "submit_seconds": 1},
            {"tasks": 1000, "before_rss": 100 * mb, "peak_rss": 105 * mb, "after_rss": 103 * mb, "submit_seconds": 2},
            {"tasks": 1000, "before_rss": 100 * mb, "peak_rss": 150 * mb, "after_rss": 103 * mb, "submit_seconds": 3}]
    executed = [{"tasks": 1000, "seconds": 4.0, "before_rss": 0, "peak_rss": mb}]
    row = per_task(held, executed)
    assert row["peak_growth_mb"] == 5.0 and row["bytes_per_task"] == round(5 * mb / 1000)
    assert row["after_growth_mb"] == 3.0 and row["ms_per_task"] == 4.0 and row["submit_seconds"] == 2
    assert "ms_per_task" not in per_task(held, [])


def test_marginal_bytes_per_task_drops_the_fixed_overhead():
    sizes = [{"tasks": 1_000, "peak_growth_mb": 14.0}, {"tasks": 5_000, "peak_growth_mb": 30.0}]
    assert marginal_bytes_per_task(sizes) == round(16 * 2**20 / 4_000)
    assert marginal_bytes_per_task(sizes[:1]) is None
