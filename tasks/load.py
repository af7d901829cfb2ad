"""Load: curated Parquet -> warehouse tables, through a staging table and one MERGE per table,
all in one transaction: the warehouse holds the old state or the new one, never a mix.

Only a strictly newer version replaces a row, so loading the same files twice changes nothing.
Only the rows of the run's scope (tasks.scope) are merged: a curated file holds every subreddit
of its day, and a run over r/rust must not load r/python rows it neither asked for nor checked.
The statements are plain SQL that DuckDB, PostgreSQL 15+ and Redshift all accept: Redshift's
MERGE takes no target alias and no `WHEN MATCHED AND`, and it lacks IS DISTINCT FROM and
FILTER, so staged rows that are not newer are pruned first and the MERGE is unconditional.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks import duck, faults, settings
from tasks.lake import Lake, readable_path
from tasks.scope import RunScope

# Each warehouse table: its key, and when a matched row is replaced.
TABLE_KEYS = {
    "posts": ("id",),
    "comments": ("id",),
    "subreddit_daily": ("subreddit", "day"),
}


# Ids asked about per query (PostgreSQL, Redshift): an unfiltered dump run has a watermark
# per subreddit (~100k in a real month), and one IN list of them all would be megabytes.
HELD_BATCH = 1000


@dataclass
class LoadResult:
    # table -> subreddit -> (rows inserted, rows replaced by a newer version)
    changes: dict[str, dict[str, tuple[int, int]]] = field(default_factory=dict)
    # table -> column -> text values cut to fit the warehouse (Redshift's 65,535-byte
    # VARCHAR); the rows are loaded, the cut is counted here and in the run summary.
    truncated: dict[str, dict[str, int]] = field(default_factory=dict)

    def inserted_totals(self) -> dict[str, int]:
        return {t: sum(n for n, _ in subs.values()) for t, subs in self.changes.items()}

    def updated_totals(self) -> dict[str, int]:
        return {t: sum(n for _, n in subs.values()) for t, subs in self.changes.items()}

    @property
    def changed(self) -> int:
        return sum(self.inserted_totals().values()) + sum(self.updated_totals().values())


@dataclass(frozen=True)
class MergeStatements:
    """What loading one staged table runs, in order: counts (one row per subreddit: inserted,
    replaced), prune (drop staged rows that are not newer), merge (unconditional)."""

    counts: str
    prune: str
    merge: str


def replace_condition(table: str, columns: Sequence[str], s: str, t: str) -> str:
    """When a staged row `s` replaces the warehouse row `t` with the same key: a strictly newer
    retrieval when the table has one, else any difference (null-safe, without IS DISTINCT FROM)."""
    if "retrieved_at" in columns:
        return (
            f"{s}.retrieved_at > {t}.retrieved_at "
            f"or ({t}.retrieved_at is null and {s}.retrieved_at is not null)"
        )
    keys = TABLE_KEYS[table]
    return " or ".join(
        f"({s}.{c} <> {t}.{c} or ({s}.{c} is null) <> ({t}.{c} is null))"
        for c in columns
        if c not in keys
    )


def merge_statements(table: str, columns: Sequence[str]) -> MergeStatements:
    """The portable load of `stage_{table}` into `table` (see the module docstring)."""
    keys = TABLE_KEYS[table]
    stage = f"stage_{table}"
    replace = replace_condition(table, columns, "s", "t")
    counts = (
        f"select s.subreddit, "
        f"cast(sum(case when t.{keys[0]} is null then 1 else 0 end) as bigint), "
        f"cast(sum(case when t.{keys[0]} is not null and ({replace}) then 1 else 0 end) "
        f"as bigint) from {stage} s left join {table} t on "
        + " and ".join(f"t.{k} = s.{k}" for k in keys)
        + " group by s.subreddit"
    )
    # The target of DELETE and MERGE takes no alias in Redshift: name the tables instead.
    prune = (
        f"delete from {stage} using {table} where "
        + " and ".join(f"{table}.{k} = {stage}.{k}" for k in keys)
        + f" and not coalesce(({replace_condition(table, columns, stage, table)}), false)"
    )
    merge = (
        f"merge into {table} using {stage} s on "
        + " and ".join(f"{table}.{k} = s.{k}" for k in keys)
        + " when matched then update set "
        + ", ".join(f"{c} = s.{c}" for c in columns if c not in keys)
        + f" when not matched then insert ({', '.join(columns)}) "
        f"values ({', '.join('s.' + c for c in columns)})"
    )
    return MergeStatements(counts, prune, merge)


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


def bare_ids(fullnames: Sequence[str]) -> dict[str, str]:
    """bare id -> fullname: the tables' key is the bare id (`t3_abc` is post `abc`), and a
    lookup by key is what PostgreSQL's primary key index answers."""
    return {name.rpartition("_")[2]: name for name in fullnames}


def held_sql(table: str, ids: Sequence[str]) -> str:
    """Which of the given ids a warehouse table holds; the same text on DuckDB, PostgreSQL and
    Redshift. Literals, not parameters: the three drivers spell placeholders differently, and
    the values are Reddit ids from the state store."""
    return f"select id from {table} where id in ({', '.join(duck.quote_literal(i) for i in ids)})"


def chunks(values: Sequence[str], size: int = HELD_BATCH) -> list[Sequence[str]]:
    return [values[i : i + size] for i in range(0, len(values), size)]


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
