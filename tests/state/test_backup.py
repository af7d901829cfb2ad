"""State store backup and restore on this machine's PostgreSQL: back up to a lake (a folder, and
S3 on a moto server), restore into an empty database, and every row comes back equal."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from aws_fixtures import CREDENTIALS, REGION, moto_server  # noqa: F401 (fixture)
from helpers import PG_ADMIN_DSN

from flows.backup import main
from tasks.lake.base import Lake
from tasks.lake.local import LocalLake
from tasks.quality.contracts import CheckReport, CheckRow, record_check_results
from tasks.state.backup import NoStateError, RestoreError, backup_state, list_backups, restore_state
from tasks.state.pool import close_pools, pooled_state
from tasks.state.store import RunRecord, StateStore, open_duckdb_state, open_postgres_state

ORDER = {
    "pipeline_runs": "run_id",
    "watermarks": "source, subreddit, kind",
    "check_results": "run_id, dataset, check_name",
}


@pytest.fixture
def empty_dsn() -> Iterator[str]:
    """A second fresh database: where the restore goes."""
    name = f"reddit_restore_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
        admin.execute(f'create database "{name}"')
    try:
        yield PG_ADMIN_DSN.rsplit("/", 1)[0] + f"/{name}"
    finally:
        close_pools()
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
            admin.execute(f'drop database if exists "{name}" with (force)')


def _fill(store: StateStore) -> None:
    """Runs (one finished, one failed, one still running), watermarks and check results, with
    nulls, unicode and fractional timestamps, as the pipeline writes them."""
    window = datetime(2024, 3, 1, tzinfo=UTC)
    for i, status in enumerate(["completed", "failed", "running"]):
        store.start_run(RunRecord(f"run-{i}", "api", f"flow-{i}", window, None, {"sub": "ü"}))
        if status != "running":
            store.finish_run(
                f"run-{i}",
                status,
                {"staged": 10 * i},
                1234 + i,
                {"load": 0.123456},
                "RuntimeError: boom ✓" if status == "failed" else None,
            )
    store.advance_watermarks(
        "api",
        "duckdb:/w.duckdb",
        {("python", "posts"): (1709251200.25, "t3_abc"), ("rust", "comments"): (1.5, "t1_z")},
        "run-0",
    )
    report = CheckReport(
        rows=[
            CheckRow("posts", "id duplicate", "failed", "error", 3),
            CheckRow("comments", "row count", "passed", "error", None),
        ]
    )
    record_check_results(store, "run-0", report)


def _all_rows(dsn: str) -> dict[str, list[tuple[Any, ...]]]:
    with psycopg.connect(dsn) as connection:
        return {
            table: connection.execute(f"select * from {table} order by {order}").fetchall()
            for table, order in ORDER.items()
        }


@pytest.fixture(params=["local", "s3"])
def lake(request: pytest.FixtureRequest, tmp_path: Path) -> Lake:
    if request.param == "local":
        return LocalLake(tmp_path / "lake")
    import boto3

    from tasks.lake.s3 import S3Lake

    endpoint = request.getfixturevalue("moto_server")
    bucket = f"lake-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=endpoint, region_name=REGION, **CREDENTIALS).create_bucket(
        Bucket=bucket
    )
    return S3Lake.from_params(
        bucket, "prod", endpoint_url=endpoint, region_name=REGION, credentials=CREDENTIALS
    )


def test_backup_then_restore_into_an_empty_database_gives_equal_rows(
    pg_dsn: str, empty_dsn: str, lake: Lake
) -> None:
    source = open_postgres_state(pg_dsn)
    _fill(source)
    backup = backup_state(source, lake, now=datetime(2024, 3, 2, 4, 5, 6, tzinfo=UTC))
    source.close()

    with pooled_state(empty_dsn) as target:
        restored = restore_state(target, lake)

    assert backup.prefix == "backups/state/20240302T040506Z"
    assert backup.rows == {"pipeline_runs": 3, "watermarks": 2, "check_results": 2}
    assert restored.rows == backup.rows
    assert sorted(lake.list_keys(backup.prefix)) == [
        f"{backup.prefix}/{name}"
        for name in (
            "check_results.parquet",
            "manifest.json",
            "pipeline_runs.parquet",
            "watermarks.parquet",
        )
    ]
    assert _all_rows(empty_dsn) == _all_rows(pg_dsn)


def test_restore_refuses_a_database_that_already_has_state(pg_dsn: str, tmp_path: Path) -> None:
    lake = LocalLake(tmp_path / "lake")
    store = open_postgres_state(pg_dsn)
    _fill(store)
    backup_state(store, lake)

    with pytest.raises(RestoreError, match="pipeline_runs already holds 3 rows"):
        restore_state(store, lake)
    store.close()


def test_a_backup_without_its_manifest_is_never_restored(pg_dsn: str, tmp_path: Path) -> None:
    lake = LocalLake(tmp_path / "lake")
    store = open_postgres_state(pg_dsn)
    _fill(store)
    first = backup_state(store, lake, now=datetime(2024, 3, 1, tzinfo=UTC))
    second = backup_state(store, lake, now=datetime(2024, 3, 2, tzinfo=UTC))
    store.close()
    (tmp_path / "lake" / second.prefix / "manifest.json").unlink()  # as if cut short

    assert list_backups(lake) == [first.prefix]


def test_the_cli_backs_up_and_restores_a_named_backup(
    prefect_api: str,
    pg_dsn: str,
    empty_dsn: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    source = open_postgres_state(pg_dsn)
    _fill(source)
    source.close()
    lake_dir = str(tmp_path / "lake")

    assert main(["backup", "--state-dsn", pg_dsn, "--lake-dir", lake_dir]) == 0
    assert main(["list", "--lake-dir", lake_dir]) == 0
    stamp = capsys.readouterr().out.strip().splitlines()[-1].rsplit("/", 1)[1]
    code = main(["restore", "--backup", stamp, "--state-dsn", empty_dsn, "--lake-dir", lake_dir])

    assert code == 0
    assert _all_rows(empty_dsn) == _all_rows(pg_dsn)
    assert main(["restore", "--backup", "nope", "--state-dsn", empty_dsn, "--lake-dir", lake_dir])
    assert "no complete backup 'nope'" in capsys.readouterr().err


class _WriterBetweenReads:
    """The store's connection, with another session committing a new run and its watermark
    right after the backup has read pipeline_runs and before it reads watermarks."""

    def __init__(self, inner: Any, dsn: str) -> None:
        self.inner, self.dsn, self.wrote = inner, dsn, False

    def execute(self, query: str, params: Any = ()) -> Any:
        result = self.inner.execute(query, params)
        if query.startswith("select * from pipeline_runs") and not self.wrote:
            rows = result.fetchall()  # read before the other session commits
            other = open_postgres_state(self.dsn)
            other.start_run(RunRecord("run-late", "api"))
            other.advance_watermarks(
                "api", "duckdb:/w.duckdb", {("go", "posts"): (9.0, "t3_late")}, "run-late"
            )
            other.close()
            self.wrote = True
            return _Fetched(result.description, rows)
        return result

    def commit(self) -> None:
        self.inner.commit()

    def close(self) -> None:
        self.inner.close()


class _Fetched:
    def __init__(self, description: Any, rows: list[Any]) -> None:
        self.description, self.rows = description, rows

    def fetchall(self) -> list[Any]:
        return self.rows


def test_a_backup_is_one_snapshot_of_every_table(pg_dsn: str, tmp_path: Path) -> None:
    store = open_postgres_state(pg_dsn)
    _fill(store)
    store.con = _WriterBetweenReads(store.con, pg_dsn)
    try:
        backup = backup_state(store, LocalLake(tmp_path / "lake"))
    finally:
        store.close()

    assert store.con.wrote
    # Neither the late run nor its watermark: the tables agree with each other.
    assert backup.rows == {"pipeline_runs": 3, "watermarks": 2, "check_results": 2}
    assert len(_all_rows(pg_dsn)["watermarks"]) == 3


def test_a_backup_of_an_empty_state_store_fails_and_writes_nothing(
    pg_dsn: str, tmp_path: Path
) -> None:
    lake = LocalLake(tmp_path / "lake")
    store = open_postgres_state(pg_dsn)
    try:
        with pytest.raises(NoStateError, match="holds no pipeline run"):
            backup_state(store, lake)
    finally:
        store.close()
    assert list_backups(lake) == []


def test_the_backup_without_a_state_dsn_or_file_fails_at_once_and_creates_nothing(
    prefect_api: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import time

    monkeypatch.delenv("REDDIT_PIPELINE_STATE_DSN", raising=False)
    state = tmp_path / "missing" / "state.duckdb"
    started = time.monotonic()

    code = main(["backup", "--state", str(state), "--lake-dir", str(tmp_path / "lake")])

    assert code == 1
    assert "no state store" in capsys.readouterr().err
    assert not state.exists()
    assert time.monotonic() - started < 25  # not retried: the retries wait 30 s and more


def _duckdb_rows(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    import duckdb

    con = duckdb.connect(str(path), read_only=True)
    try:
        present = {row[0] for row in con.execute("show tables").fetchall()}
        return {
            table: con.execute(f"select * from {table} order by {order}").fetchall()
            for table, order in ORDER.items()
            if table in present
        }
    finally:
        con.close()


def _pg_tables(dsn: str) -> list[str]:
    with psycopg.connect(dsn) as connection:
        rows = connection.execute(
            "select table_name from information_schema.tables where table_schema = 'public'"
        ).fetchall()
    return sorted(r[0] for r in rows)


def _craft(lake_dir: Path, prefix: str, how: str) -> None:
    """Turn a real backup into a crafted one, the way someone with write access to the lake
    could: every name in it is data that a restore must not run as SQL."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = lake_dir / prefix
    manifest = json.loads((folder / "manifest.json").read_text())
    if how == "sql in a table name":
        name = "watermarks; drop table pipeline_runs; select 0"
        (folder / f"{name}.parquet").write_bytes((folder / "watermarks.parquet").read_bytes())
        manifest["tables"][name] = manifest["tables"].pop("watermarks")
    elif how == "unknown table":
        pq.write_table(pa.table({"name": ["x"]}), folder / "users.parquet")
        manifest["tables"]["users"] = 1
    else:  # a column the schema does not have, its name an injection too
        runs = pq.read_table(folder / "pipeline_runs.parquet")
        column = "error) select 1; drop table watermarks; --"
        pq.write_table(
            runs.append_column(column, pa.array(["x"] * runs.num_rows)),
            folder / "pipeline_runs.parquet",
        )
    (folder / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("how", ["sql in a table name", "unknown table", "unknown column"])
def test_a_crafted_backup_is_refused_before_any_state_store_is_touched(
    pg_dsn: str, empty_dsn: str, tmp_path: Path, how: str
) -> None:
    lake = LocalLake(tmp_path / "lake")
    source = open_postgres_state(pg_dsn)
    _fill(source)
    backup = backup_state(source, lake)
    source.close()
    _craft(tmp_path / "lake", backup.prefix, how)
    # A DuckDB state store in use, whose rows must survive, and an empty PostgreSQL database
    # in which not even the schema may appear.
    held = tmp_path / "held.duckdb"
    store = open_duckdb_state(held)
    _fill(store)
    store.close()
    before = _duckdb_rows(held)

    for target in (open_duckdb_state(held), open_postgres_state(empty_dsn)):
        with pytest.raises(RestoreError, match=r"state (store|schema) does not"):
            try:
                restore_state(target, lake)
            finally:
                target.close()
    fresh = tmp_path / "fresh.duckdb"
    code = main(["restore", "--state", str(fresh), "--lake-dir", str(tmp_path / "lake")])

    assert _duckdb_rows(held) == before
    assert code == 1 and not fresh.exists()


def test_a_crafted_backup_leaves_an_empty_postgresql_database_without_tables(
    pg_dsn: str, empty_dsn: str, tmp_path: Path
) -> None:
    lake = LocalLake(tmp_path / "lake")
    source = open_postgres_state(pg_dsn)
    _fill(source)
    backup = backup_state(source, lake)
    source.close()
    _craft(tmp_path / "lake", backup.prefix, "unknown table")

    code = main(["restore", "--state-dsn", empty_dsn, "--lake-dir", str(tmp_path / "lake")])

    assert code == 1
    assert _pg_tables(empty_dsn) == []


def test_a_duckdb_backup_restores_into_a_new_duckdb_file_with_equal_rows(tmp_path: Path) -> None:
    lake = LocalLake(tmp_path / "lake")
    source_path = tmp_path / "state.duckdb"
    source = open_duckdb_state(source_path)
    _fill(source)
    backup_state(source, lake)
    source.close()
    restored = tmp_path / "restored" / "state.duckdb"

    code = main(["restore", "--state", str(restored), "--lake-dir", str(tmp_path / "lake")])

    assert code == 0
    assert _duckdb_rows(restored) == _duckdb_rows(source_path)
    assert set(_duckdb_rows(restored)) == set(ORDER)
