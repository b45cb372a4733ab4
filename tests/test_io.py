"""Atomic datasets and timestamp carry-over (what lets materialize-incremental write only changes)."""

import dask.dataframe as dd
import pandas as pd
import pytest

from imagerank.io import atomic_path, keep_unchanged_timestamps, write_frame

OLD, NEW = pd.Timestamp("2026-01-01", tz="UTC"), pd.Timestamp("2026-02-01", tz="UTC")


def test_a_failed_write_leaves_the_previous_dataset(tmp_path):
    write_frame(pd.DataFrame({"a": [1]}), tmp_path / "d")
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "d") as tmp:
            tmp.mkdir()
            (tmp / "part.0.parquet").write_text("half")
            raise RuntimeError("killed")
    assert pd.read_parquet(tmp_path / "d")["a"].tolist() == [1]
    # the dataset (a link to its committed version) and its versions: no temporary left, one version
    assert sorted(p.name for p in tmp_path.iterdir()) == [".d.v", "d"]
    assert len(list((tmp_path / ".d.v").iterdir())) == 1


def test_unchanged_rows_keep_their_timestamp_and_changed_rows_get_the_new_one(tmp_path):
    write_frame(pd.DataFrame({"image_id": ["a", "b", "c"], "score": [0.1, 0.2, None], "source": ["x", "y", "z"],
                              "event_timestamp": [OLD] * 3}), tmp_path / "scores")
    new = pd.DataFrame({"image_id": pd.array(["a", "b", "c", "d"], dtype="string"), "score": [0.1, 0.25, None, 0.4],
                        "source": pd.array(["x", "y", "z", "w"], dtype="string"), "event_timestamp": [NEW] * 4})
    out = keep_unchanged_timestamps(dd.from_pandas(new, npartitions=2), tmp_path / "scores").compute()
    stamps = out.set_index("image_id")["event_timestamp"]
    assert stamps.to_dict() == {"a": OLD, "b": NEW, "c": OLD, "d": NEW}
    assert list(out.columns) == list(new.columns)


def test_without_a_previous_dataset_nothing_changes(tmp_path):
    new = dd.from_pandas(pd.DataFrame({"image_id": ["a"], "event_timestamp": [NEW]}), npartitions=1)
    assert keep_unchanged_timestamps(new, tmp_path / "missing") is new


def test_dask_cached_properties_cannot_deadlock_across_threads():
    """Python 3.11's class-wide cached_property locks deadlocked a run (client thread vs in-process scheduler)."""
    import functools
    import gc

    import imagerank.cluster  # noqa: F401 - patches on import

    # From Python 3.12 on cached_property holds no lock at all (no ``lock`` attribute): nothing can deadlock.
    locked = [o for o in gc.get_objects() if isinstance(o, functools.cached_property)
              and getattr(o.func, "__module__", "").startswith("dask")
              and type(getattr(o, "lock", None)).__name__ not in ("_NoLock", "NoneType")]
    assert not locked, [o.func.__module__ + "." + o.func.__qualname__ for o in locked]
