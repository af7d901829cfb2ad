"""`python flows/main.py status`: the last runs, each subreddit's lag and the last failures,
read from the state store."""

from __future__ import annotations

import argparse
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from tasks import settings
from tasks.state import StateLockedError, StateStore, open_duckdb_state


def lags(store: StateStore, now: datetime | None = None) -> list[tuple[str, str, str, float, str]]:
    """(source, subreddit, kind, hours behind now, warehouse) for every watermark: a
    watermark says what one warehouse holds, so each is shown with its own."""
    now = now or datetime.now(UTC)
    rows = store.watermark_rows()
    return [
        (
            src,
            sub,
            kind,
            (now.timestamp() - float(c)) / 3600,
            dest or "(none: committed before watermarks named one)",
        )
        for src, sub, kind, c, dest in rows
    ]


def _duration(run: dict[str, Any]) -> str:
    if run["finished_at"] is None:
        return "running" if run["status"] == "running" else ""
    return f"{(run['finished_at'] - run['started_at']).total_seconds():.1f}s"


def _loaded(counts: dict[str, Any], key: str) -> str:
    """Rows loaded (new or updated) over all tables, blank for a run that loaded nothing."""
    total = sum((counts.get(key) or {}).values())
    return str(total) if key in counts else ""


def render(
    store: StateStore, console: Console, limit: int = 10, now: datetime | None = None
) -> None:
    runs = store.recent_runs(limit)
    table = Table(title="last runs")
    columns = ("started (UTC)", "run", "source", "status", "duration", "staged", "quarantined")
    for column in (*columns, "loaded new", "loaded updated"):
        table.add_column(column)
    for run in runs:
        counts = json.loads(run["counts"] or "{}")
        table.add_row(
            f"{run['started_at']:%Y-%m-%d %H:%M:%S}",
            run["run_id"],
            run["source"],
            run["status"],
            _duration(run),
            str(counts.get("staged", "")),
            str(counts.get("quarantined", "")),
            _loaded(counts, "loaded_new"),
            _loaded(counts, "loaded_updated"),
        )
    console.print(table)

    lag_table = Table(title="lag per subreddit (now minus watermark)")
    for column in ("source", "subreddit", "kind", "lag (hours)", "warehouse"):
        lag_table.add_column(column)
    for source, subreddit, kind, hours, destination in lags(store, now):
        lag_table.add_row(source, subreddit, kind, f"{hours:.1f}", destination)
    console.print(lag_table)

    failures = [r for r in store.recent_runs(100) if r["status"] in ("failed", "crashed")][:5]
    if failures:
        console.print("[bold red]last failures[/]")
        for run in failures:
            console.print(f"  {run['started_at']:%Y-%m-%d %H:%M} {run['run_id']}: {run['error']}")
    else:
        console.print("no failed runs")


def main(argv: list[str]) -> int:
    import duckdb
    import psycopg
    from psycopg_pool import PoolTimeout
    from pydantic import SecretStr

    from tasks.config import PipelineConfig
    from tasks.run import open_state

    parser = argparse.ArgumentParser(
        prog="python flows/main.py status",
        description="The last runs, each subreddit's lag and the last failures.",
    )
    parser.add_argument(
        "--state", type=Path, default=settings.DEFAULT_STATE_PATH, help="DuckDB state file"
    )
    parser.add_argument(
        "--state-dsn",
        help="PostgreSQL state store (default REDDIT_PIPELINE_STATE_DSN; the environment "
        "variable keeps a password out of the process list)",
    )
    parser.add_argument("--limit", type=int, default=10)
    args = parser.parse_args(argv)
    dsn = args.state_dsn or os.environ.get("REDDIT_PIPELINE_STATE_DSN")
    if not dsn and not args.state.is_file():
        parser.exit(
            2,
            f"error: no state store: no DuckDB state file at {args.state}; pass --state, or "
            "--state-dsn (REDDIT_PIPELINE_STATE_DSN) for PostgreSQL\n",
        )
    try:
        if dsn:
            store = open_state(PipelineConfig(state_dsn=SecretStr(dsn)))
        else:
            store = open_duckdb_state(args.state, read_only=True)
    except (psycopg.Error, PoolTimeout, duckdb.Error, StateLockedError) as exc:
        parser.exit(1, f"error: cannot open the state store: {type(exc).__name__}: {exc}\n")
    try:
        render(store, Console(), args.limit)
    finally:
        store.close()
    return 0
