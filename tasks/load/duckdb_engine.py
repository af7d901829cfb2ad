"""Load into a DuckDB file, the local warehouse: the merge of tasks.load.merge in one
transaction, the warehouse holding the old state or the new one, never a mix.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Sequence
from pathlib import Path

import duckdb
import pyarrow as pa
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks import settings
from tasks.core import RunScope, duck, faults
from tasks.lake import Lake, readable_path
from tasks.load.merge import TABLE_KEYS, LoadResult, bare_ids, merge_statements


def load_duckdb(
    warehouse: Path,
    lake: Lake,
    curated_keys: dict[str, list[str]],
    scope: RunScope | None = None,
) -> LoadResult:
    """Load the scope's rows of curated files (None: every row) into a DuckDB warehouse file."""
    scope = scope or RunScope()
    result = LoadResult()
    con = duck.connect(warehouse, settings.DUCKDB_LOAD_MEMORY_LIMIT, bounded=True)
    try:
        with tempfile.TemporaryDirectory(prefix="reddit-load-") as tmp:
            con.execute("begin transaction")
            for table, keys in curated_keys.items():
                if not keys:
                    continue
                paths = [str(readable_path(lake, key, Path(tmp))) for key in keys]
                source = (
                    f"select * exclude (dt) from read_parquet({duck.path_list(paths)}, "
                    f"hive_partitioning = true) where {scope.subreddit_sql()}"
                )
                if not _table_exists(con, table):
                    result.changes[table] = _first_load(con, table, source)
                else:
                    con.execute(f"create or replace temp table stage_{table} as {source}")
                    _refuse_duplicate_keys(con, table, f"stage_{table}")
                    columns = [row[0] for row in con.execute(f"describe stage_{table}").fetchall()]
                    _ensure_table(con, table, columns)
                    statements = merge_statements(table, columns)
                    result.changes[table] = {
                        sub: (new, updated)
                        for sub, new, updated in con.execute(statements.counts).fetchall()
                    }
                    con.execute(statements.prune)
                    con.execute(statements.merge)
                faults.crash_point(f"load:{table}")
            con.execute("commit")
    except BaseException:
        _rollback(con)
        raise
    finally:
        con.close()
    return result


def _table_exists(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    found = con.execute(
        "select count(*) from duckdb_tables() where table_name = ? and not temporary "
        "and database_name = current_database() and schema_name = 'main'",
        [table],
    ).fetchall()  # whole: DuckDB refuses other work while a result is unfinished
    return bool(found and found[0][0])


def _first_load(
    con: duckdb.DuckDBPyConnection, table: str, source: str
) -> dict[str, tuple[int, int]]:
    """A table's first load (a new warehouse, a backfill): no row can match, so the curated
    files go straight into the table, with no staging copy and no row-by-row MERGE."""
    con.execute(f"create table {table} as {source}")
    _refuse_duplicate_keys(con, table, table)
    return {
        sub: (count, 0)
        for sub, count in con.execute(
            f"select subreddit, count(*) from {table} group by subreddit"
        ).fetchall()
    }


def _refuse_duplicate_keys(con: duckdb.DuckDBPyConnection, table: str, relation: str) -> None:
    """Keys are unique because the rows loaded at once are, and the MERGE on the key replaces
    rather than adds: checked here, inside the load's transaction. The DuckDB warehouse has no
    PRIMARY KEY for this: DuckDB keeps a key's index in memory, outside its memory limit, so
    the load's memory grew with the table (~0.9 GiB at 3M rows) and its commit took seconds."""
    keys = ", ".join(TABLE_KEYS[table])
    found = con.execute(
        f"select {keys}, count(*) from {relation} group by all having count(*) > 1 limit 3"
    ).fetchall()
    if found:
        shown = "; ".join(f"{row[:-1]} x{row[-1]}" for row in found)
        raise ValueError(
            f"load of {table} refused: its rows repeat a key ({keys}): {shown}. The curated "
            "files should hold one row per key; rerun the model step for those days."
        )


def _ensure_table(con: duckdb.DuckDBPyConnection, table: str, columns: list[str]) -> None:
    con.execute(f"create table if not exists {table} as select * from stage_{table} where false")
    existing = {row[0] for row in con.execute(f"describe {table}").fetchall()}
    for column in columns:
        if column not in existing:
            kind = con.execute(
                f"select data_type from information_schema.columns "
                f"where table_name = 'stage_{table}' and column_name = ?",
                [column],
            ).fetchone()
            con.execute(f"alter table {table} add column {column} {kind[0] if kind else 'varchar'}")


def _rollback(con: duckdb.DuckDBPyConnection) -> None:
    with contextlib.suppress(duckdb.Error):
        con.execute("rollback")


def held_in_duckdb(warehouse: Path, table: str, fullnames: Sequence[str]) -> set[str]:
    """The fullnames a DuckDB warehouse file holds in `table` (posts, comments); none when
    the file or the table does not exist (a new or deleted warehouse), without creating
    either. One join, not IN lists: the DuckDB warehouse has no index, so each query scans."""
    ids = bare_ids(fullnames)
    if not ids or not warehouse.is_file():
        return set()
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        if not _table_exists(con, table):
            return set()
        con.register("wanted_ids", pa.table({"id": list(ids)}))
        found = con.execute(
            f"select id from {table} where id in (select id from wanted_ids)"
        ).fetchall()
        return {ids[row[0]] for row in found}
    finally:
        con.close()


@task(
    name="load",
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=5,
    retry_condition_fn=faults.retry_unless_interrupted,
)
def load_task(
    warehouse: Path,
    lake: Lake,
    curated_keys: dict[str, list[str]],
    scope: RunScope | None = None,
) -> LoadResult:
    """Retried: a warehouse file or server can be briefly locked or unreachable; the MERGE
    makes a retry safe."""
    return load_duckdb(warehouse, lake, curated_keys, scope)
