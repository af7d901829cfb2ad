"""The sql/ models, written once for DuckDB, transpiled with sqlglot to Athena (Trino engine v3),
PostgreSQL and Redshift.

sqlglot gets most of a model right; where it does not, a small AST rewrite below fixes it, each
with the fact that makes it necessary. Checked with sqlglot 30 (see tests/model/test_dialects.py,
which parses every output back in its dialect and runs the PostgreSQL one against DuckDB's
results):

- `median(x)` becomes `PERCENTILE_CONT(x, 0.5)` for Athena, which Trino rejects; Athena has
  `approx_percentile(x, 0.5)` (approximate: a median that DuckDB interpolates between two middle
  values can differ), and it returns the argument's type, so x is cast to double first.
- `select * exclude (...)` is DuckDB's; sqlglot writes `* EXCEPT (...)`, valid in neither Trino
  nor PostgreSQL. Stars are expanded from the models' schema (taken from DuckDB itself).
- `try_cast(x as double)` becomes a plain CAST for PostgreSQL, which raises on 'true' (an
  `edited` value). PostgreSQL has no try_cast: a CASE with a numeric regex guards the cast.
- `to_timestamp(epoch)` is `timestamptz` in PostgreSQL, so a cast to timestamp shifts it by the
  session's time zone; Redshift's `TIMESTAMP 'epoch' + x * INTERVAL '1 second'` is naive UTC
  and valid in PostgreSQL too. (For Athena sqlglot writes `from_unixtime`, which is right.)
- `max_by`/`min_by` become `ARG_MAX`/`ARG_MIN` for PostgreSQL and Redshift, which have neither:
  refused with a message rather than written wrong.
"""

from __future__ import annotations

from functools import cache
from typing import Literal

import sqlglot
from sqlglot import exp
from sqlglot.optimizer.qualify import qualify

from tasks.core import duck

Dialect = Literal["duckdb", "athena", "postgres", "redshift"]
TARGETS: tuple[Dialect, ...] = ("athena", "postgres", "redshift")
# Models in the order they build: each reads only the ones before it (and processed_*).
MODELS = (
    ("stg_posts", "staging/stg_posts.sql"),
    ("stg_comments", "staging/stg_comments.sql"),
    ("posts", "marts/posts.sql"),
    ("comments", "marts/comments.sql"),
    ("subreddit_daily", "marts/subreddit_daily.sql"),
)
# A number as text, the only strings a numeric try_cast turns into a value.
NUMERIC_TEXT = r"^\s*[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?\s*$"

Schema = dict[str, dict[str, str]]


class UnsupportedInDialectError(ValueError):
    """A model uses a function the target dialect lacks and no rewrite is known."""


@cache
def model_schemas() -> Schema:
    """Every relation the models read or build, with DuckDB's column types: the processed
    schema (the process models over no lines) and each model run over it."""
    from tasks.model.duckdb_engine import build_models
    from tasks.process import empty_processed_sql

    con = duck.connect()
    try:
        for kind in ("posts", "comments"):
            con.execute(
                f"create table processed_{kind} as "
                f"select * exclude (dt) from ({empty_processed_sql(kind)})"
            )
        build_models(con)
        names = ["processed_posts", "processed_comments", *(name for name, _ in MODELS)]
        return {
            name: {row[0]: row[1] for row in con.execute(f"describe {name}").fetchall()}
            for name in names
        }
    finally:
        con.close()


def model_sql(name: str) -> str:
    """The DuckDB text of one model."""
    return duck.read_sql(dict(MODELS)[name])


def transpile(sql: str, dialect: Dialect, schema: Schema | None = None, pretty: bool = True) -> str:
    """One DuckDB query in another dialect, with the rewrites sqlglot needs."""
    return to_dialect_ast(sql, dialect, schema).sql(dialect=dialect, pretty=pretty)


def to_dialect_ast(sql: str, dialect: Dialect, schema: Schema | None = None) -> exp.Expression:
    """The rewritten AST, for callers that splice it into bigger statements (Athena's CTAS)."""
    tree = sqlglot.parse_one(sql, read="duckdb")
    if dialect == "duckdb":
        return tree
    if any(star.args.get("except_") for star in tree.find_all(exp.Star)):
        tree = _expand_stars(tree, schema if schema is not None else model_schemas())
    rewrite = {"athena": _for_athena, "postgres": _for_postgres, "redshift": _for_redshift}
    return tree.transform(rewrite[dialect])


def transpile_models(dialect: Dialect, pretty: bool = True) -> dict[str, str]:
    """Every model, in build order, in the given dialect."""
    return {name: transpile(model_sql(name), dialect, pretty=pretty) for name, _ in MODELS}


def _expand_stars(tree: exp.Expression, schema: Schema) -> exp.Expression:
    # qualify() expands `* EXCLUDE` through the CTE chain when it knows the source columns; it
    # also qualifies every column, which is harmless in generated text.
    return qualify(
        tree,
        schema=schema,
        dialect="duckdb",
        quote_identifiers=False,
        validate_qualify_columns=False,
        identify=False,
    )


def _for_athena(node: exp.Expression) -> exp.Expression:
    if isinstance(node, exp.Median):
        return exp.Anonymous(
            this="approx_percentile",
            expressions=[exp.cast(node.this, exp.DataType.Type.DOUBLE), exp.Literal.number(0.5)],
        )
    return node


def _for_postgres(node: exp.Expression) -> exp.Expression:
    if isinstance(node, exp.TryCast):
        return _guarded_cast(node)
    if isinstance(node, exp.UnixToTime):
        return _epoch_plus_seconds(node.this)
    if isinstance(node, exp.ArgMax | exp.ArgMin):
        raise UnsupportedInDialectError(
            f"{node.sql('duckdb')}: PostgreSQL and Redshift have no max_by/min_by; use "
            "row_number() over (...) = 1 in the model instead"
        )
    return node


def _for_redshift(node: exp.Expression) -> exp.Expression:
    # Same gaps as PostgreSQL; sqlglot already writes the epoch arithmetic for Redshift.
    return _for_postgres(node)


def _guarded_cast(node: exp.TryCast) -> exp.Expression:
    target = node.args["to"]
    if not target.is_type(*exp.DataType.NUMERIC_TYPES):
        raise UnsupportedInDialectError(
            f"{node.sql('duckdb')}: only numeric try_cast has a PostgreSQL/Redshift rewrite"
        )
    text = exp.cast(node.this.copy(), exp.DataType.Type.TEXT)
    matches = exp.RegexpLike(this=text, expression=exp.Literal.string(NUMERIC_TEXT))
    return exp.Case(ifs=[exp.If(this=matches, true=exp.cast(node.this.copy(), target.copy()))])


def _epoch_plus_seconds(seconds: exp.Expression) -> exp.Expression:
    epoch = exp.cast(exp.Literal.string("epoch"), exp.DataType.Type.TIMESTAMP)
    interval = exp.Interval(this=exp.Literal.string("1"), unit=exp.var("SECOND"))
    return exp.paren(exp.Add(this=epoch, expression=exp.Mul(this=seconds, expression=interval)))


def column_type(duckdb_type: str, dialect: Dialect) -> str:
    """A DuckDB column type in another dialect's DDL (Athena's DDL is Hive's)."""
    kind = exp.DataType.build(duckdb_type, dialect="duckdb")
    if dialect == "athena":
        return kind.sql("hive")
    if dialect == "redshift" and kind.is_type(*exp.DataType.TEXT_TYPES):
        return "VARCHAR(65535)"  # Redshift's VARCHAR defaults to 256 bytes.
    return kind.sql(dialect)
