"""The sql/ models transpiled to Athena, PostgreSQL and Redshift: every output parses back in
its dialect, and the PostgreSQL one, run on this machine's PostgreSQL over the sample's processed
data, gives exactly DuckDB's marts."""

from __future__ import annotations

import math
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlglot
from sqlglot import exp

from tasks import settings
from tasks.core import duck
from tasks.extract.stage import Window, stage_dump
from tasks.lake.local import LocalLake
from tasks.load.merge import TABLE_KEYS
from tasks.load.postgres import iter_csv_chunks
from tasks.model.dialects import (
    MODELS,
    TARGETS,
    UnsupportedInDialectError,
    column_type,
    model_schemas,
    transpile,
    transpile_models,
)
from tasks.model.duckdb_engine import MART_MODELS, build_models, register_processed
from tasks.process.duckdb_engine import process_batches


@pytest.mark.parametrize("dialect", TARGETS)
def test_every_model_parses_back_in_its_dialect(dialect: str) -> None:
    for name, sql in transpile_models(dialect).items():
        tree = sqlglot.parse_one(sql, read=dialect)
        assert tree.find(exp.Select) is not None, name
        stars = [s for s in tree.find_all(exp.Star) if s.args.get("except_")]
        assert not stars, f"{name}: `* EXCEPT/EXCLUDE` is DuckDB-only"
        assert not list(tree.find_all(exp.ArgMax, exp.ArgMin)), name


def test_athena_median_is_approx_percentile_of_a_double() -> None:
    sql = transpile_models("athena")["subreddit_daily"]
    assert "PERCENTILE_CONT" not in sql.upper()
    assert "APPROX_PERCENTILE(CAST(score AS DOUBLE), 0.5)" in sql


def test_athena_keeps_try_cast_and_reads_epochs_with_from_unixtime() -> None:
    sql = transpile("select try_cast(e as double), to_timestamp(c) from t", "athena")
    assert "TRY_CAST(e AS DOUBLE)" in sql and "FROM_UNIXTIME(c)" in sql


@pytest.mark.parametrize("dialect", ["postgres", "redshift"])
def test_max_by_is_refused_where_the_dialect_has_none(dialect: str) -> None:
    with pytest.raises(UnsupportedInDialectError, match="max_by"):
        transpile("select max_by(a, b) from t", dialect)  # type: ignore[arg-type]


def test_redshift_text_columns_are_wide_varchars() -> None:
    assert column_type("VARCHAR", "redshift") == "VARCHAR(65535)"
    assert column_type("VARCHAR", "athena") == "STRING"
    assert column_type("TIMESTAMP", "postgres") == "TIMESTAMP"


def test_postgres_try_cast_and_epochs_behave_like_duckdb(pg_dsn: str) -> None:
    sql = (
        "select try_cast(e as double) as n, cast(to_timestamp(c) as timestamp) as ts "
        "from (values ('true', 1709251200.5), ('1709251260.0', 0), (null, null)) t(e, c)"
    )
    expected = duck.connect().execute(sql).fetchall()
    with psycopg.connect(pg_dsn) as connection:
        # A session zone other than UTC must not shift the naive UTC timestamps.
        connection.execute("set timezone = 'America/New_York'")
        assert connection.execute(transpile(sql, "postgres")).fetchall() == expected


def _normalize(value: Any) -> Any:
    if isinstance(value, Decimal):
        value = float(value)
    if isinstance(value, float):
        return None if math.isnan(value) else round(value, 9)
    return value


def _sorted_rows(cursor: Any, table: str, columns: list[str]) -> list[tuple[Any, ...]]:
    keys = ", ".join(TABLE_KEYS[table])
    rows = cursor.execute(f"select {', '.join(columns)} from {table} order by {keys}").fetchall()
    return [tuple(_normalize(v) for v in row) for row in rows]


def test_postgres_models_give_duckdbs_marts_on_the_sample(pg_dsn: str, tmp_path: Path) -> None:
    lake = LocalLake(tmp_path / "lake")
    dts: set[str] = set()
    for name, kind in (("RS_2024-03.zst", "posts"), ("RC_2024-03.zst", "comments")):
        staged = stage_dump(settings.SAMPLE_DIR / name, lake, Window())
        dts |= process_batches(lake, kind, staged.raw_keys).dts
    con = duck.connect()
    register_processed(con, lake, sorted(dts))
    build_models(con)
    schemas = model_schemas()

    with psycopg.connect(pg_dsn) as pg, pg.cursor() as cur:
        cur.execute("set timezone = 'Asia/Tokyo'")  # not UTC, on purpose
        for kind in settings.KINDS:
            table = f"processed_{kind}"
            columns = list(schemas[table])
            defs = ", ".join(f"{c} {column_type(t, 'postgres')}" for c, t in schemas[table].items())
            cur.execute(f"create table {table} ({defs})")
            exported = tmp_path / f"{table}.parquet"
            con.execute(f"copy {table} to '{exported}' (format parquet)")
            with cur.copy(f"copy {table} ({', '.join(columns)}) from stdin (format csv)") as copy:
                for chunk in iter_csv_chunks([exported], columns):
                    copy.write(chunk)
        for name, sql in transpile_models("postgres").items():
            kind = "view" if name.startswith("stg_") else "table"
            cur.execute(f"create {kind} {name} as {sql}")

        for mart in MART_MODELS:
            columns = list(schemas[mart])
            duck_rows = _sorted_rows(con, mart, columns)
            assert duck_rows, mart
            assert _sorted_rows(cur, mart, columns) == duck_rows, mart
        assert [name for name, _ in MODELS][-3:] == list(MART_MODELS)
