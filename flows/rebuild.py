"""reddit-rebuild: recreate processed data, marts, warehouse and watermarks from the raw lake.

`python flows/main.py rebuild [--subreddit S] [--since DAY] [--until DAY]` locally; the
`rebuild` deployment in production. Losing the warehouse or the state database loses nothing.
"""

from __future__ import annotations

import argparse
from datetime import date
from pathlib import Path

from prefect import flow, get_run_logger
from pydantic import BaseModel, Field

from tasks import settings
from tasks.config import PipelineConfig
from tasks.lake import LocalLake
from tasks.rebuild import RebuildResult, rebuild


class RebuildConfig(BaseModel):
    subreddits: list[str] = Field(default_factory=list, description="Only these subreddits.")
    since: date | None = Field(None, description="First day to rebuild (UTC).")
    until: date | None = Field(None, description="Day after the last one to rebuild.")
    lake_dir: Path = Field(settings.DEFAULT_LAKE_DIR, description="Local lake folder.")
    warehouse_path: Path = Field(settings.DEFAULT_WAREHOUSE_PATH, description="DuckDB warehouse.")
    state_path: Path = Field(settings.DEFAULT_STATE_PATH, description="DuckDB state store.")


@flow(name="reddit-rebuild", log_prints=True)
def reddit_rebuild(config: RebuildConfig | None = None) -> RebuildResult:
    """Everything downstream of the raw layer, recomputed from it."""
    from flows.main import open_state

    config = config or RebuildConfig()
    log = get_run_logger()
    state = open_state(
        PipelineConfig(
            state_path=config.state_path,
            lake_dir=config.lake_dir,
            warehouse_path=config.warehouse_path,
        )
    )
    try:
        result = rebuild(
            LocalLake(config.lake_dir),
            config.warehouse_path,
            state,
            tuple(s.lower() for s in config.subreddits),
            config.since.isoformat() if config.since else None,
            config.until.isoformat() if config.until else None,
        )
    finally:
        state.close()
    log.info(
        "Rebuilt %d batches, %d rows over %d days; watermarks for %s",
        result.batches,
        result.processed_rows,
        len(result.days),
        ", ".join(sorted(result.watermarks)) or "no source",
    )
    return result


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python flows/main.py rebuild",
        description="Recreate processed data, marts, warehouse and watermarks from the raw lake.",
    )
    parser.add_argument("--subreddit", action="append", default=[], metavar="NAME")
    parser.add_argument("--since", type=date.fromisoformat, help="first day (YYYY-MM-DD)")
    parser.add_argument("--until", type=date.fromisoformat, help="day after the last one")
    parser.add_argument("--lake-dir", type=Path, default=settings.DEFAULT_LAKE_DIR)
    parser.add_argument("--warehouse", type=Path, default=settings.DEFAULT_WAREHOUSE_PATH)
    parser.add_argument("--state", type=Path, default=settings.DEFAULT_STATE_PATH)
    args = parser.parse_args(argv)
    if not args.lake_dir.is_dir():
        parser.exit(2, f"error: no lake at {args.lake_dir}\n")
    result = reddit_rebuild(
        RebuildConfig(
            subreddits=args.subreddit,
            since=args.since,
            until=args.until,
            lake_dir=args.lake_dir,
            warehouse_path=args.warehouse,
            state_path=args.state,
        )
    )
    print(f"rebuilt {result.batches} batches, {result.processed_rows} rows, days {result.days}")
    return 0
