"""Load curated Parquet into Redshift: COPY ... FORMAT AS PARQUET into a temporary stage, then
the same counts/prune/MERGE statements as PostgreSQL (tasks/load/postgres.py), in one
transaction. Only what Redshift needs differently lives here:

- VARCHAR holds at most 65,535 bytes, and COPY from Parquet cannot truncate (TRUNCATECOLUMNS
  and MAXERROR are not accepted for columnar formats): a longer value fails the whole load.
  Python rewrites the curated files for Redshift first, cutting such text at a UTF-8 character
  boundary within 65,535 bytes, and counts every cut per table and column. Rows are never
  dropped; the counts are logged as warnings, and go into the run summary and the state
  store's runs table (LoadResult.truncated). The curated files in the lake stay untouched.
- The rewrite is snappy Parquet (Redshift's COPY documents snappy, gzip and bzip2 for columnar
  files) with microsecond timestamps (Redshift's precision; Athena and Spark may write
  nanoseconds or INT96).
- COPY from Parquet is positional: the stage's columns follow the file's column order.
- A manifest names the exact files (a prefix would also pick up strays); for columnar files
  each entry needs its content_length.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from tasks.core import RunScope, faults
from tasks.lake import Lake, readable_path
from tasks.load.merge import LoadResult
from tasks.load.postgres import (
    BATCH_ROWS,
    apply_merge,
    column_defs,
    ensure_table,
    held_in,
    stage_ddl,
)

MAX_VARCHAR_BYTES = 65_535
REDSHIFT_TEXT = f"varchar({MAX_VARCHAR_BYTES})"  # the default VARCHAR is 256 bytes
LOAD_PREFIX = "load/redshift"  # rewritten files for COPY, removed after the load

logger = logging.getLogger(__name__)


@dataclass
class RedshiftLoadResult(LoadResult):
    """A LoadResult whose `truncated` holds the values cut to MAX_VARCHAR_BYTES."""


def truncate_utf8(value: str, limit: int = MAX_VARCHAR_BYTES) -> str:
    """The longest prefix of `value` whose UTF-8 encoding fits in `limit` bytes."""
    return value.encode()[:limit].decode(errors="ignore")


def truncate_batch(batch: pa.RecordBatch, counts: Counter[str]) -> pa.RecordBatch:
    """Cut text over the limit; only the few long values go through Python."""
    columns = []
    for name, column in zip(batch.schema.names, batch.columns, strict=True):
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            too_long = pc.fill_null(pc.greater(pc.binary_length(column), MAX_VARCHAR_BYTES), False)
            n = pc.sum(too_long).as_py() or 0
            if n:
                counts[name] += n
                values = column.to_pylist()
                for i in pc.indices_nonzero(too_long).to_pylist():
                    values[i] = truncate_utf8(values[i])
                column = pa.array(values, type=column.type)
        columns.append(column)
    return pa.RecordBatch.from_arrays(columns, schema=batch.schema)


def write_for_redshift(
    source: Path, target: Path, counts: Counter[str], scope: RunScope | None = None
) -> int:
    """A copy of one curated file that COPY can load (only the scope's rows, when given);
    returns its size in bytes."""
    parquet = pq.ParquetFile(source)
    with pq.ParquetWriter(
        target,
        parquet.schema_arrow,
        compression="snappy",
        coerce_timestamps="us",
        allow_truncated_timestamps=True,  # nanoseconds Redshift could not hold anyway
    ) as writer:
        for batch in parquet.iter_batches(batch_size=BATCH_ROWS):
            if scope is not None:
                batch = scope.filter_batch(batch)
            writer.write_batch(truncate_batch(batch, counts))
    return target.stat().st_size


def manifest(entries: Sequence[tuple[str, int]]) -> bytes:
    """A COPY manifest: exact s3:// URLs, each with the content_length Parquet requires."""
    return json.dumps(
        {
            "entries": [
                {"url": url, "mandatory": True, "meta": {"content_length": size}}
                for url, size in entries
            ]
        },
        indent=1,
    ).encode()


def copy_sql(table: str, manifest_url: str, iam_role: str) -> str:
    """COPY into the stage. No MAXERROR (not allowed for Parquet, and no row may be lost)."""
    for value in (manifest_url, iam_role):
        if "'" in value:
            raise ValueError(f"quote in COPY argument: {value!r}")
    return (
        f"copy stage_{table} from '{manifest_url}' iam_role '{iam_role}' format as parquet manifest"
    )


def prepare_files(
    lake: Lake,
    lake_uri: str,
    table: str,
    keys: Sequence[str],
    run_id: str,
    tmp: Path,
    scope: RunScope | None = None,
) -> tuple[str, pa.Schema, dict[str, int]]:
    """Rewrite the table's curated files for Redshift (the scope's rows) into the lake, with
    their manifest. Returns the manifest's URL, the files' schema and the truncation counts."""
    counts: Counter[str] = Counter()
    entries = []
    schema = None
    prefix = f"{LOAD_PREFIX}/{run_id}/{table}"
    for i, key in enumerate(keys):
        source = readable_path(lake, key, tmp)
        schema = schema or pq.read_schema(source)
        target = tmp / f"{table}-{i}.parquet"
        size = write_for_redshift(source, target, counts, scope)
        lake.put_file(f"{prefix}/part-{i:05d}.parquet", target)
        entries.append((f"{lake_uri}/{prefix}/part-{i:05d}.parquet", size))
    lake.put_bytes(f"{prefix}.manifest", manifest(entries))
    assert schema is not None
    return f"{lake_uri}/{prefix}.manifest", schema, dict(counts)


def load_redshift(
    connection: Any,
    lake: Lake,
    lake_uri: str,
    curated_keys: dict[str, list[str]],
    iam_role: str,
    run_id: str,
    scope: RunScope | None = None,
) -> RedshiftLoadResult:
    """Load the scope's rows of curated files (None: every row) into Redshift in one
    transaction (redshift_connector, autocommit off); loading the same files twice changes
    nothing. The files rewritten for COPY under load/redshift/{run_id}/ are removed whether
    the load commits or fails."""
    result = RedshiftLoadResult()
    try:
        staged: dict[str, tuple[str, list[tuple[str, str]]]] = {}
        with tempfile.TemporaryDirectory(prefix="reddit-load-rs-") as tmp:
            for table, keys in curated_keys.items():
                if keys:
                    url, schema, counts = prepare_files(
                        lake, lake_uri, table, keys, run_id, Path(tmp), scope
                    )
                    staged[table] = (url, column_defs(schema, REDSHIFT_TEXT))
                    result.truncated[table] = counts
        _copy_and_merge(connection, staged, iam_role, result)
    finally:
        _remove_load_files(lake, run_id)
    return result


def _copy_and_merge(
    connection: Any,
    staged: dict[str, tuple[str, list[tuple[str, str]]]],
    iam_role: str,
    result: RedshiftLoadResult,
) -> None:
    """Every table's stage, COPY and MERGE on one cursor, then one commit; any failure rolls
    the whole load back."""
    cursor = connection.cursor()
    try:
        for table, (url, columns) in staged.items():
            for statement in stage_ddl(table, columns):
                cursor.execute(statement)
            cursor.execute(copy_sql(table, url, iam_role))
            ensure_table(cursor, table, columns)
            result.changes[table] = apply_merge(cursor, table, [name for name, _ in columns])
            faults.crash_point(f"load:{table}")
        connection.commit()
    except BaseException:
        connection.rollback()
        raise
    finally:
        cursor.close()


def _remove_load_files(lake: Lake, run_id: str) -> None:
    """Best effort on the way out: a failure to clean up is logged, never raised over the load's
    own outcome. A leftover folder is harmless (each run writes under its own id) and can be
    deleted at any time no load of that run is going on."""
    try:
        lake.delete_prefix(f"{LOAD_PREFIX}/{run_id}/")
    except Exception as error:  # the load's own result or error matters more
        logger.error("could not remove %s: %s", lake.describe(f"{LOAD_PREFIX}/{run_id}/"), error)


def warn_truncated(truncated: dict[str, dict[str, int]], log: Any) -> None:
    """One warning per column whose text was cut: loud, though the load succeeds."""
    for table, columns in sorted(truncated.items()):
        for column, count in sorted(columns.items()):
            if count:
                log.warning(
                    "Redshift load: %d value(s) of %s.%s cut to %d bytes (VARCHAR limit); "
                    "the rows are loaded",
                    count,
                    table,
                    column,
                    MAX_VARCHAR_BYTES,
                )


def held_in_redshift(warehouse: Any, table: str, fullnames: Sequence[str]) -> set[str]:
    """`warehouse` is a blocks.warehouse.RedshiftWarehouse."""
    if not fullnames:
        return set()
    connection = warehouse.connect()
    try:
        cursor = connection.cursor()
        try:
            return held_in(cursor, table, fullnames)
        finally:
            cursor.close()
    finally:
        connection.close()


@task(
    name="load-redshift",
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=10,
    retry_condition_fn=faults.retry_unless_interrupted,
)
def load_redshift_task(
    warehouse: Any,
    lake: Lake,
    lake_uri: str,
    curated_keys: dict[str, list[str]],
    run_id: str,
    scope: RunScope | None = None,
) -> RedshiftLoadResult:
    """`warehouse` is a blocks.warehouse.RedshiftWarehouse; retried, the MERGE makes it safe."""
    connection = warehouse.connect()
    try:
        result = load_redshift(
            connection, lake, lake_uri, curated_keys, warehouse.copy_iam_role, run_id, scope
        )
    finally:
        connection.close()
    warn_truncated(result.truncated, get_run_logger())
    return result
