"""`imagerank export`: W/scores upserted into a real PostgreSQL table, idempotently, password never shown."""

from __future__ import annotations

import json
import uuid

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from imagerank.catalog.postgres import TableError
from imagerank.cli import main
from imagerank.scoring import SCORES_SCHEMA
from imagerank.store.postgres_server import PASSWORD
from pipelines.export import run_export

pytestmark = pytest.mark.slow  # a Dask job against a real PostgreSQL server per test


def write_scores(workdir, scores: pd.DataFrame, partitions: int = 3) -> None:
    directory = workdir / "scores"
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob("*.parquet"):
        old.unlink()
    bounds = np.linspace(0, len(scores), partitions + 1).astype(int)
    for i, (start, end) in enumerate(zip(bounds, bounds[1:])):
        part = scores.iloc[start:end]
        pq.write_table(pa.Table.from_pandas(part, schema=SCORES_SCHEMA, preserve_index=False),
                       directory / f"part.{i}.parquet")


def make_scores(rows: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "image_id": [str(uuid.UUID(int=int(rng.integers(1 << 62)) << 64 | i)) for i in range(rows)],
        "popularity": rng.random(rows), "authority": rng.random(rows),
        "popularity_source": rng.choice(["observed", "predicted", "prior"], rows),
        "authority_source": rng.choice(["links", "domain_rank", "predicted", "prior"], rows),
        "model_version": "20261203T000000Z",
        "event_timestamp": pd.Timestamp("2026-12-03 10:11:12.345678", tz="UTC"),
    })


def table_rows(postgres, table: str) -> pd.DataFrame:
    with postgres.connect() as connection:
        rows = connection.execute(f"SELECT identifier::text, popularity, authority, popularity_source, authority_source, "
                                  f"model_version, event_timestamp FROM {table}").fetchall()
    frame = pd.DataFrame(rows, columns=list(SCORES_SCHEMA.names))
    frame["event_timestamp"] = pd.to_datetime(frame["event_timestamp"], utc=True)
    return frame.sort_values("image_id", ignore_index=True)


def same_rows(table: pd.DataFrame, scores: pd.DataFrame) -> None:
    expected = scores.sort_values("image_id", ignore_index=True)
    assert len(table) == len(expected)
    for column in SCORES_SCHEMA.names:  # floats exactly: the COPY text round-trips every double
        left, right = table[column].tolist(), expected[column].tolist()
        assert left == right, column


def test_export_upserts_the_scores_and_is_idempotent(tmp_path, dask_client, postgres):
    scores = make_scores(500)
    write_scores(tmp_path, scores)
    url = postgres.url("image_popularity")
    first = run_export(dask_client, tmp_path, url)
    assert (first["rows"], first["inserted"], first["updated"], first["partitions"]) == (500, 500, 0, 3)
    same_rows(table_rows(postgres, "image_popularity"), scores)
    again = run_export(dask_client, tmp_path, url)
    assert (again["rows"], again["inserted"], again["updated"], again["unchanged"]) == (500, 0, 0, 500)
    same_rows(table_rows(postgres, "image_popularity"), scores)
    changed = scores.copy()
    changed.loc[:9, "popularity"] = 0.5
    changed.loc[:9, "popularity_source"] = "prior"
    extra = make_scores(5, seed=1)
    write_scores(tmp_path, pd.concat([changed, extra], ignore_index=True), partitions=2)
    update = run_export(dask_client, tmp_path, url)
    assert (update["inserted"], update["updated"], update["unchanged"]) == (5, 10, 490)
    same_rows(table_rows(postgres, "image_popularity"), pd.concat([changed, extra]))


def test_export_command_prints_counts_never_the_password(tmp_path, dask_client, postgres, capsys):
    write_scores(tmp_path, make_scores(50, seed=2), partitions=1)
    url = postgres.url("image_popularity_cli")
    assert main(["export", "--workdir", str(tmp_path), "--to", url, "--scheduler", dask_client.scheduler.address]) == 0
    out, err = capsys.readouterr()
    printed = json.loads(out)
    assert printed["inserted"] == 50 and printed["table"] == url.replace(PASSWORD, "***")
    assert PASSWORD not in out + err
    wrong = url.replace(PASSWORD, "guess")
    assert main(["export", "--workdir", str(tmp_path), "--to", wrong, "--scheduler", dask_client.scheduler.address]) == 1
    out, err = capsys.readouterr()
    assert "password authentication failed" in err and "guess" not in err and out == ""


def test_export_refuses_a_table_without_the_score_columns(tmp_path, dask_client, postgres):
    write_scores(tmp_path, make_scores(5, seed=3), partitions=1)
    with postgres.connect() as connection:
        connection.execute("CREATE TABLE IF NOT EXISTS popularity_old (identifier uuid PRIMARY KEY, popularity real)")
        connection.commit()
    with pytest.raises(TableError, match="without the score columns authority"):
        run_export(dask_client, tmp_path, postgres.url("popularity_old"))
