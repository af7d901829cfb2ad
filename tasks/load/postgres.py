"""Load curated Parquet into PostgreSQL (15+): COPY into a temporary staging table, then one
MERGE per table, all in one transaction, the same way tasks/load/duckdb_engine.py loads DuckDB.

The staging and merge statements here are written in the subset PostgreSQL, Redshift and DuckDB
all accept, so tasks/load/redshift.py runs the very same text after its own COPY:
- Redshift's MERGE has no alias for the target and no `WHEN MATCHED AND <condition>`, so rows
  that must not replace anything are first deleted from the stage ("prune"), and the MERGE that
  follows is unconditional.
- Redshift has neither `IS DISTINCT FROM` nor aggregate `FILTER (WHERE ...)`: the null-safe
  comparison is spelled out, and counts are `sum(case ...)`.
"""

from __future__ import annotations

import io
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.core import RunScope, faults
from tasks.lake import Lake, readable_path
from tasks.load.merge import TABLE_KEYS, LoadResult, bare_ids, chunks, held_sql, merge_statements

BATCH_ROWS = 50_000  # rows per COPY chunk: memory stays bounded by this, not by the file.
PARTITION_COLUMN = "dt"  # the hive partition in curated keys; not a table column.


class Cursor(Protocol):
    def execute(self, query: str, params: Any = ...) -> Any: ...
    def fetchall(self) -> list[tuple[Any, ...]]: ...


def pg_type(kind: pa.DataType, text_type: str = "text") -> str:
    """A PostgreSQL/Redshift column type for an Arrow type of the curated Parquet."""
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return text_type
    if pa.types.is_boolean(kind):
        return "boolean"
    if pa.types.is_integer(kind):
        return "bigint" if kind.bit_width > 32 else "integer"
    if pa.types.is_floating(kind):
        return "double precision"
    if pa.types.is_timestamp(kind):
        # Curated timestamps are naive UTC (see the models); a zone would mean a model changed.
        return "timestamptz" if kind.tz else "timestamp"
    if pa.types.is_date(kind):
        return "date"
    raise TypeError(f"no warehouse type for Arrow type {kind}")


def column_defs(schema: pa.Schema, text_type: str = "text") -> list[tuple[str, str]]:
    return [(f.name, pg_type(f.type, text_type)) for f in schema if f.name != PARTITION_COLUMN]


def stage_ddl(table: str, columns: list[tuple[str, str]]) -> list[str]:
    """A fresh temporary stage; dropped first because Redshift has no ON COMMIT DROP and a
    session may load twice."""
    cols = ", ".join(f"{name} {kind}" for name, kind in columns)
    return [f"drop table if exists stage_{table}", f"create temp table stage_{table} ({cols})"]


def ensure_table(cur: Cursor, table: str, columns: list[tuple[str, str]]) -> None:
    """The target table with its primary key (enforced by PostgreSQL, informational in
    Redshift), and any column the curated files gained since it was created."""
    cols = ", ".join(f"{name} {kind}" for name, kind in columns)
    keys = ", ".join(TABLE_KEYS[table])
    cur.execute(f"create table if not exists {table} ({cols}, primary key ({keys}))")
    cur.execute(
        "select column_name from information_schema.columns "
        "where table_name = %s and table_schema = current_schema()",
        (table,),
    )
    existing = {row[0] for row in cur.fetchall()}
    for name, kind in columns:
        if name not in existing:
            cur.execute(f"alter table {table} add column {name} {kind}")


def apply_merge(cur: Cursor, table: str, columns: list[str]) -> dict[str, tuple[int, int]]:
    """Counts, prune and merge of one staged table; returns subreddit -> (inserted, replaced)."""
    statements = merge_statements(table, columns)
    cur.execute(statements.counts)
    changes = {sub: (int(new), int(updated)) for sub, new, updated in cur.fetchall()}
    cur.execute(statements.prune)
    cur.execute(statements.merge)
    return changes


def iter_csv_chunks(
    paths: Sequence[Path], columns: list[str], scope: RunScope | None = None
) -> Iterator[bytes]:
    """The Parquet rows (only the scope's, when given) as CSV for COPY, a batch at a time.
    pyarrow quotes every string and writes null as an empty unquoted field, which is exactly
    how COPY ... CSV tells them apart."""
    options = pacsv.WriteOptions(include_header=False, batch_size=BATCH_ROWS)
    for path in paths:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=BATCH_ROWS, columns=columns):
            if scope is not None:
                batch = scope.filter_batch(batch)
            buffer = io.BytesIO()
            pacsv.write_csv(pa.Table.from_batches([batch]), buffer, options)
            yield buffer.getvalue()


def copy_into_stage(
    cur: Any, table: str, columns: list[str], paths: Sequence[Path], scope: RunScope | None = None
) -> None:
    """psycopg 3 COPY FROM STDIN, streamed."""
    with cur.copy(f"copy stage_{table} ({', '.join(columns)}) from stdin (format csv)") as copy:
        for chunk in iter_csv_chunks(paths, columns, scope):
            copy.write(chunk)


def held_in(cur: Cursor, table: str, fullnames: Sequence[str]) -> set[str]:
    """The fullnames `table` holds in the connection's current schema (PostgreSQL or
    Redshift); none when the table does not exist yet."""
    cur.execute(
        "select count(*) from information_schema.tables "
        "where table_name = %s and table_schema = current_schema()",
        (table,),
    )
    if not cur.fetchall()[0][0]:
        return set()
    ids = bare_ids(fullnames)
    held: set[str] = set()
    for part in chunks(list(ids)):
        cur.execute(held_sql(table, part))
        held |= {ids[row[0]] for row in cur.fetchall()}
    return held


def held_in_postgres(warehouse: Any, table: str, fullnames: Sequence[str]) -> set[str]:
    """`warehouse` is a blocks.warehouse.PostgresWarehouse."""
    if not fullnames:
        return set()
    with warehouse.connect() as connection, connection.cursor() as cur:
        return held_in(cur, table, fullnames)


def load_postgres(
    connection: Any,
    lake: Lake,
    curated_keys: dict[str, list[str]],
    scope: RunScope | None = None,
) -> LoadResult:
    """Load the scope's rows of curated files (None: every row) into PostgreSQL in one
    transaction: the warehouse holds the old state or the new one, never a mix; loading the
    same files twice changes nothing."""
    result = LoadResult()
    with (
        tempfile.TemporaryDirectory(prefix="reddit-load-pg-") as tmp,
        connection.transaction(),
        connection.cursor() as cur,
    ):
        for table, keys in curated_keys.items():
            if not keys:
                continue
            paths = [readable_path(lake, key, Path(tmp)) for key in keys]
            columns = column_defs(pq.read_schema(paths[0]))
            names = [name for name, _ in columns]
            for statement in stage_ddl(table, columns):
                cur.execute(statement)
            copy_into_stage(cur, table, names, paths, scope)
            ensure_table(cur, table, columns)
            result.changes[table] = apply_merge(cur, table, names)
            faults.crash_point(f"load:{table}")
    return result


@task(
    name="load-postgres",
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=5,
    retry_condition_fn=faults.retry_unless_interrupted,
)
def load_postgres_task(
    warehouse: Any,
    lake: Lake,
    curated_keys: dict[str, list[str]],
    scope: RunScope | None = None,
) -> LoadResult:
    """Retried: the server can be briefly unreachable; the MERGE makes a retry safe.
    `warehouse` is a blocks.warehouse.PostgresWarehouse."""
    with warehouse.connect() as connection:
        return load_postgres(connection, lake, curated_keys, scope)
