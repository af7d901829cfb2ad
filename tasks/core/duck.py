"""DuckDB connections configured the same way everywhere."""

from __future__ import annotations

import re
import tempfile
import uuid
from pathlib import Path

import duckdb

from tasks import settings


def connect(
    path: Path | str | None = None, memory_limit: str | None = None, *, bounded: bool = False
) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection that computes dates in UTC whatever the machine's time zone, and
    never draws its own progress bar over ours.

    `bounded` is for the steps that move whole dumps (stage, process, model, load): DuckDB's
    buffer pool is capped (settings.DUCKDB_MEMORY_LIMIT unless `memory_limit` says otherwise),
    anything larger spills to a private temporary directory that DuckDB creates and removes
    on close, and results need not keep insertion order (which would hold them in memory)."""
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(path) if path is not None else ":memory:")
    con.execute("set TimeZone = 'UTC'")
    con.execute("set enable_progress_bar = false")
    if bounded:
        memory_limit = memory_limit or settings.DUCKDB_MEMORY_LIMIT
        spill = Path(tempfile.gettempdir()) / f"reddit-duckdb-{uuid.uuid4().hex}"
        con.execute(f"set temp_directory = {quote_literal(str(spill))}")
        con.execute("set preserve_insertion_order = false")
    if memory_limit:
        con.execute(f"set memory_limit = '{memory_limit}'")
    return con


def read_sql(relative: str) -> str:
    """The text of a model or query under sql/: each `{{> fragments/x.sql}}` line replaced by
    that file (the columns two models derive alike, written once), then its {{NAME}} bounds
    filled in from settings.SQL_BOUNDS (an unknown name is a KeyError: a typo never runs).
    Text, not a DuckDB macro, so the Athena models get the same columns through sqlglot."""
    text = (settings.SQL_DIR / relative).read_text()
    text = re.sub(
        r"^\{\{>\s*([\w/.-]+)\s*\}\}\n", lambda m: read_sql(m[1]), text, flags=re.MULTILINE
    )
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: repr(settings.SQL_BOUNDS[m[1]]), text)


def quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def path_list(paths: list[str]) -> str:
    """A SQL list literal of file paths (views and COPY cannot take prepared parameters)."""
    return "[" + ", ".join(quote_literal(p) for p in paths) + "]"
