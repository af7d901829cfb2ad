"""Back up the state store to the lake, and restore it into an empty database.

The lake can rebuild the warehouse and the watermarks (tasks.run.rebuild), but not the history of
runs and checks: that lives only in the state store. A backup is one Parquet file per table
under backups/state/{timestamp}/ plus a manifest written last, so a backup cut short by a crash
is never the one a restore picks. Parquet keeps the types (timestamps, doubles, nulls) exactly,
which NDJSON would turn into strings.

Tables are small (one row per run and per check), so each is read whole; the lake's own
versioning and lifecycle (tasks.lake.setup) keep old backups as long as the bucket says.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from tasks.core import duck
from tasks.lake import Lake
from tasks.state.store import SCHEMA, StateStore

BACKUP_PREFIX = "backups/state"
MANIFEST = "manifest.json"
# Order matters only for reading; check_results is optional (created by the first check run).
TABLES = ("pipeline_runs", "watermarks", "check_results")


class RestoreError(RuntimeError):
    """The backup cannot be restored here: none found, incomplete, or the target not empty."""


class NoStateError(RuntimeError):
    """There is no state to back up: the store is missing or holds no run. A scheduled backup
    that wrote an empty copy would look fine until the day it is needed."""


@dataclass(frozen=True)
class BackupResult:
    prefix: str
    rows: dict[str, int]


def _existing_tables(store: StateStore) -> list[str]:
    # information_schema.tables is answered by both DuckDB and PostgreSQL; current_schema()
    # keeps a PostgreSQL store's own schema (its search_path) and ignores others.
    rows = store.execute(
        "select table_name from information_schema.tables where table_schema = current_schema()"
    ).fetchall()
    present = {r[0] for r in rows}
    return [t for t in TABLES if t in present]


@cache
def state_columns() -> dict[str, tuple[str, ...]]:
    """Each state table's columns, read back from the DDL the store itself runs
    (tasks.state.store.SCHEMA) in an in-memory DuckDB: what a restore may write
    is the schema's own list, not a copy that could drift from it."""
    con = duck.connect()
    try:
        for statement in SCHEMA:
            con.execute(statement)
        rows = con.execute(
            "select table_name, column_name from information_schema.columns "
            "order by table_name, ordinal_position"
        ).fetchall()
    finally:
        con.close()
    columns: dict[str, tuple[str, ...]] = {}
    for table, column in rows:
        columns[table] = (*columns.get(table, ()), column)
    return columns


def quote_identifier(store: StateStore, name: str) -> str:
    """A table or column name as SQL, quoted by the store's driver (psycopg's Identifier;
    DuckDB has no such call, and its rule is the standard one: double quotes, doubled)."""
    raw: Any = getattr(store.con, "raw", None)
    if store.placeholder == "%s" and raw is not None:
        from psycopg import sql

        return sql.Identifier(name).as_string(raw)
    return '"' + name.replace('"', '""') + '"'


def _read_table(store: StateStore, table: str) -> pa.Table:
    cursor = store.execute(f"select * from {table}")  # table: one of TABLES
    names = [d[0] for d in cursor.description]
    rows = cursor.fetchall()
    return pa.table({name: [row[i] for row in rows] for i, name in enumerate(names)})


def read_snapshot(store: StateStore) -> dict[str, pa.Table]:
    """Every state table as of one moment: a run that commits between two tables' reads
    (its watermarks, then its pipeline_runs row) is in both or in neither. PostgreSQL reads
    in one REPEATABLE READ, READ ONLY transaction; DuckDB's transactions are snapshots
    already, and the store keeps one open until commit."""
    store.commit()  # whatever the store had open ends here; the snapshot starts fresh
    if store.placeholder == "%s":  # PostgreSQL: the first statement of the transaction
        store.execute("set transaction isolation level repeatable read, read only")
    try:
        return {table: _read_table(store, table) for table in _existing_tables(store)}
    finally:
        store.commit()  # end the read transaction: PostgreSQL would hold it open otherwise


def backup_state(store: StateStore, lake: Lake, now: datetime | None = None) -> BackupResult:
    """Write every state table as Parquet under backups/state/{timestamp}/, then the manifest
    (table -> row count), so a restore can tell a complete backup from an interrupted one."""
    stamp = f"{(now or datetime.now(UTC)).astimezone(UTC):%Y%m%dT%H%M%SZ}"
    prefix = f"{BACKUP_PREFIX}/{stamp}"
    tables = read_snapshot(store)
    runs = tables.get("pipeline_runs")
    if runs is None or runs.num_rows == 0:
        raise NoStateError(
            "the state store holds no pipeline run: nothing to back up. If runs have happened, "
            "this is not their store: set REDDIT_PIPELINE_STATE_DSN (or state_dsn) where the "
            "backup runs"
        )
    rows: dict[str, int] = {}
    for table, data in tables.items():
        buffer = io.BytesIO()
        pq.write_table(data, buffer, compression="zstd")
        lake.put_bytes(f"{prefix}/{table}.parquet", buffer.getvalue())
        rows[table] = data.num_rows
    manifest = {"created_at": stamp, "tables": rows, "format": "parquet"}
    lake.put_bytes(f"{prefix}/{MANIFEST}", json.dumps(manifest, indent=2).encode())
    return BackupResult(prefix, rows)


def list_backups(lake: Lake) -> list[str]:
    """Complete backups (with a manifest), oldest first, as their prefixes."""
    keys = lake.list_keys(BACKUP_PREFIX)
    return sorted(k.rsplit("/", 1)[0] for k in keys if k.endswith(f"/{MANIFEST}"))


def _resolve(lake: Lake, backup: str | None) -> str:
    found = list_backups(lake)
    if not found:
        raise RestoreError(f"no complete backup under {lake.describe(BACKUP_PREFIX)}")
    if backup is None:
        return found[-1]
    wanted = backup if backup.startswith(BACKUP_PREFIX) else f"{BACKUP_PREFIX}/{backup}"
    if wanted.rstrip("/") not in found:
        raise RestoreError(
            f"no complete backup {backup!r}; found: {', '.join(p.rsplit('/', 1)[1] for p in found)}"
        )
    return wanted.rstrip("/")


@dataclass(frozen=True)
class CheckedBackup:
    """A backup read whole from the lake and checked against the state schema: only known
    tables, only their known columns, the manifest's row counts. Nothing in it has reached
    a database yet."""

    prefix: str
    tables: dict[str, pa.Table]


def _manifest_counts(prefix: str, manifest: Any) -> dict[str, int]:
    """The manifest's table -> row count, refused unless every table is a state table and
    every count a whole number: its names become SQL identifiers, so a crafted manifest
    (a name with SQL in it, a table of another application) must stop here."""
    tables = manifest.get("tables") if isinstance(manifest, dict) else None
    if not isinstance(tables, dict) or "pipeline_runs" not in tables:
        raise RestoreError(
            f"{prefix}/{MANIFEST} is not a state backup manifest (no table list with "
            "pipeline_runs); restore another backup"
        )
    unknown = sorted(str(t) for t in tables if t not in TABLES)
    if unknown:
        raise RestoreError(
            f"{prefix}/{MANIFEST} names tables the state store does not have: "
            f"{', '.join(repr(t) for t in unknown)} (known: {', '.join(TABLES)}); "
            "this backup was not written by this pipeline, restore another"
        )
    for table, count in tables.items():
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise RestoreError(f"{prefix}/{MANIFEST}: the row count of {table} is {count!r}")
    return {table: tables[table] for table in TABLES if table in tables}


def read_backup(lake: Lake, backup: str | None = None) -> CheckedBackup:
    """Read and check a backup (default: the newest complete one) without touching any
    database: a restore that would fail on the data fails here, with the store untouched."""
    prefix = _resolve(lake, backup)
    try:
        manifest = json.loads(lake.get_bytes(f"{prefix}/{MANIFEST}"))
    except ValueError as exc:
        raise RestoreError(f"{prefix}/{MANIFEST} is not JSON: {exc}") from None
    known = state_columns()
    tables: dict[str, pa.Table] = {}
    for table, expected in _manifest_counts(prefix, manifest).items():
        try:
            data = pq.read_table(io.BytesIO(lake.get_bytes(f"{prefix}/{table}.parquet")))
        except pa.ArrowInvalid as exc:
            raise RestoreError(f"{prefix}/{table}.parquet is not readable Parquet: {exc}") from None
        if data.num_rows != expected:
            raise RestoreError(
                f"{prefix}/{table}.parquet has {data.num_rows} rows, manifest says {expected}"
            )
        extra = [c for c in data.column_names if c not in known[table]]
        if extra:
            raise RestoreError(
                f"{prefix}/{table}.parquet has columns the state schema does not know: "
                f"{', '.join(repr(c) for c in extra)}; restore another backup"
            )
        tables[table] = data
    return CheckedBackup(prefix, tables)


def _insert_rows(store: StateStore, table: str, data: pa.Table) -> None:
    columns = data.column_names
    placeholders = ", ".join([store.placeholder] * len(columns))
    names = ", ".join(quote_identifier(store, c) for c in columns)
    statement = f"insert into {quote_identifier(store, table)} ({names}) values ({placeholders})"
    records = [tuple(row[c] for c in columns) for row in data.to_pylist()]
    if not records:
        return
    raw: Any = getattr(store.con, "raw", None)
    if raw is not None and hasattr(raw, "cursor") and not hasattr(raw, "executemany"):
        with raw.cursor() as cursor:  # psycopg: executemany lives on the cursor
            cursor.executemany(statement, records)
    elif raw is not None and hasattr(raw, "executemany"):
        raw.executemany(statement, records)  # DuckDB: the connection, inside its transaction
    else:
        for record in records:
            store.con.execute(statement, record)


def restore_state(
    store: StateStore, lake: Lake, backup: str | CheckedBackup | None = None
) -> BackupResult:
    """Load a backup (default: the newest complete one; or one read_backup has checked) into
    a store whose state tables are empty: the backup is checked before the store is touched
    (read_backup), the schema is created with StateStore.ensure_schema, and the rows are
    inserted in one transaction."""
    checked = backup if isinstance(backup, CheckedBackup) else read_backup(lake, backup)
    store.ensure_schema()
    for table in checked.tables:
        count = store.execute(f"select count(*) from {quote_identifier(store, table)}")
        count = count.fetchone()[0]
        if count:
            store.commit()
            raise RestoreError(
                f"table {table} already holds {count} rows: restore only into an empty "
                "database (create a new one, point REDDIT_PIPELINE_STATE_DSN at it)"
            )
    try:
        for table, data in checked.tables.items():
            _insert_rows(store, table, data)
    except BaseException:
        _rollback(store)
        raise
    store.commit()
    return BackupResult(checked.prefix, {t: d.num_rows for t, d in checked.tables.items()})


def _rollback(store: StateStore) -> None:
    """Undo the partial restore. The DuckDB wrapper keeps a transaction open between commits,
    so it rolls back and begins the next one; psycopg begins its own on the next statement."""
    raw: Any = getattr(store.con, "raw", None)
    if raw is None:
        return
    if store.placeholder == "?":
        raw.execute("rollback")
        raw.execute("begin transaction")
    else:
        raw.rollback()
