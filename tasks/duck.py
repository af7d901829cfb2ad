"""DuckDB connections configured the same way everywhere."""

from __future__ import annotations

from pathlib import Path

import duckdb

from tasks import settings


def connect(
    path: Path | str | None = None, memory_limit: str | None = None
) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection that computes dates in UTC whatever the machine's time zone, and
    never draws its own progress bar over ours."""
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(path) if path is not None else ":memory:")
    con.execute("set TimeZone = 'UTC'")
    con.execute("set enable_progress_bar = false")
    if memory_limit:
        con.execute(f"set memory_limit = '{memory_limit}'")
    return con


def read_sql(relative: str) -> str:
    """The text of a model or query under sql/."""
    return (settings.SQL_DIR / relative).read_text()


def quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def path_list(paths: list[str]) -> str:
    """A SQL list literal of file paths (views and COPY cannot take prepared parameters)."""
    return "[" + ", ".join(quote_literal(p) for p in paths) + "]"
