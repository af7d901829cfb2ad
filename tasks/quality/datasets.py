"""The run's data as the contracts see it, on each engine: DuckDB relations over the lake's
Parquet, the same relations copied into PostgreSQL, or Athena views, each holding only the
rows of the run's scope (tasks.core.scope).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv

from tasks.core import RunScope, duck
from tasks.lake import Lake, readable_path
from tasks.model import MART_MODELS, register_processed
from tasks.quality.sources import CheckSource, duckdb_source, postgres_source

DATASETS = ("processed_posts", "processed_comments", "posts", "comments", "subreddit_daily")
# Athena: which Glue table (made by tasks/model/athena.py) holds each dataset.
ATHENA_TABLES = {
    "processed_posts": "processed_posts",
    "processed_comments": "processed_comments",
    "posts": "curated_posts",
    "comments": "curated_comments",
    "subreddit_daily": "curated_subreddit_daily",
}
DEFAULT_PG_CHECK_SCHEMA = "reddit_check"
COPY_BATCH_ROWS = 50_000


@contextmanager
def lake_connection(
    lake: Lake, scope: RunScope, curated_keys: Mapping[str, Sequence[str]]
) -> Iterator[duckdb.DuckDBPyConnection]:
    """An in-memory DuckDB holding the run's five relations, each restricted to the run's
    scope: processed Parquet of its days (the files the model read) and the curated Parquet
    the model wrote, both only for its subreddits (the files hold every subreddit of a day).
    Works whichever engine produced the files, since it reads only the lake."""
    con = duck.connect()
    try:
        register_processed(con, lake, list(scope.days), scope=scope)
        with tempfile.TemporaryDirectory(prefix="reddit-check-") as tmp:
            for model in MART_MODELS:
                keys = curated_keys.get(model) or []
                if not keys:
                    # The model wrote no file for an empty mart: check an empty table of
                    # the mart's schema, so `row_count` fails when the extract found data.
                    con.execute(f"create or replace table {model} ({_empty_columns(model)})")
                    continue
                paths = [str(readable_path(lake, key, Path(tmp))) for key in keys]
                con.execute(
                    f"create or replace table {model} as select * exclude (dt) from "
                    f"read_parquet({duck.path_list(paths)}, hive_partitioning = true) "
                    f"where {scope.subreddit_sql()}"
                )
        yield con
    finally:
        con.close()


@contextmanager
def lake_source(
    lake: Lake, scope: RunScope, curated_keys: Mapping[str, Sequence[str]]
) -> Iterator[CheckSource]:
    """The contracts on DuckDB over the run's scope of the lake (see lake_connection)."""
    with lake_connection(lake, scope, curated_keys) as con:
        yield duckdb_source(con)


def _empty_columns(model: str) -> str:
    """The mart's columns with their DuckDB types, as the models build them."""

    from tasks.model import model_schemas  # sqlglot: only for an empty mart

    return ", ".join(f'"{name}" {kind}' for name, kind in model_schemas()[model].items())


# DuckDB types -> PostgreSQL column types for the copied relations (others are spelled alike).
PG_TYPES = {"VARCHAR": "text", "DOUBLE": "double precision", "FLOAT": "real"}


def copy_to_postgres(con: duckdb.DuckDBPyConnection, pg: Any, schema: str) -> None:
    """Replace `schema` with the five relations of a DuckDB connection, streamed through
    COPY in batches (memory does not grow with the run). One transaction: a failed copy
    leaves the previous run's tables."""
    with pg.transaction(), pg.cursor() as cur:
        cur.execute(f"drop schema if exists {schema} cascade")
        cur.execute(f"create schema {schema}")
        for table in DATASETS:
            described = con.execute(f"describe {table}").fetchall()
            columns = [(str(row[0]), str(row[1])) for row in described]
            ddl = ", ".join(f'"{n}" {PG_TYPES.get(t, t.lower())}' for n, t in columns)
            cur.execute(f"create table {schema}.{table} ({ddl})")
            names = ", ".join(f'"{n}"' for n, _ in columns)
            reader = con.sql(f"select * from {table}").to_arrow_reader(COPY_BATCH_ROWS)
            with cur.copy(f"copy {schema}.{table} ({names}) from stdin (format csv)") as copy:
                for batch in reader:
                    buffer = pa.BufferOutputStream()
                    options = pacsv.WriteOptions(include_header=False)
                    pacsv.write_csv(pa.Table.from_batches([batch]), buffer, options)
                    copy.write(buffer.getvalue().to_pybytes())


@contextmanager
def postgres_copy_source(
    lake: Lake,
    scope: RunScope,
    curated_keys: Mapping[str, Sequence[str]],
    block: Any,
    schema: str,
) -> Iterator[CheckSource]:
    """The run's relations, as lake_connection builds them (the scope's rows only), copied
    into `schema` on the warehouse PostgreSQL, where Soda's PostgreSQL data source checks them."""
    with lake_connection(lake, scope, curated_keys) as con, block.connect() as pg:
        copy_to_postgres(con, pg, schema)
    source = postgres_source(block, schema)
    try:
        yield source
    finally:
        source.impl.close_connection()


def athena_view_sql(database: str, check_database: str, scope: RunScope) -> list[str]:
    """The statements that point `check_database`'s five views at the run's scope of the
    Athena model's tables: its days, and its subreddits (the tables hold every subreddit of a
    day). The views drop `dt`, as the DuckDB relations do."""

    from tasks.model import model_schemas

    schemas = model_schemas()
    days = ", ".join(f"'{dt}'" for dt in scope.days) or "NULL"
    statements = [f"CREATE DATABASE IF NOT EXISTS `{check_database}`"]
    for dataset, table in ATHENA_TABLES.items():
        columns = ", ".join(f'"{name}"' for name in schemas[dataset])
        statements.append(
            f'CREATE OR REPLACE VIEW "{check_database}"."{dataset}" AS SELECT {columns} '
            f'FROM "{database}"."{table}" WHERE dt IN ({days}) AND {scope.subreddit_sql()}'
        )
    return statements
