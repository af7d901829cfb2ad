"""reddit_state_backup: copy the state store into the lake, on a schedule; and the restore CLI.

    python -m flows.backup                                  # back up now (the flow)
    python -m flows.backup list                             # complete backups in the lake
    python -m flows.backup restore --state-dsn postgresql://.../new_empty_db [--backup STAMP]

The state store and the lake come from the same settings as the pipeline (PipelineConfig:
state_dsn or REDDIT_PIPELINE_STATE_DSN, else the DuckDB file; lake 'local' or 's3' with an
S3Bucket block), so a backup reads what the runs write. Restore is a plain command, not a flow:
it is what you run when the state database is gone, and must not need anything but the lake.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from tasks import settings
from tasks.config import PipelineConfig
from tasks.state import (
    BackupResult,
    NoStateError,
    RestoreError,
    StateStore,
    backup_state,
    list_backups,
    open_duckdb_state,
    read_backup,
    restore_state,
)


@contextmanager
def _state(config: PipelineConfig, must_exist: bool = False) -> Iterator[StateStore]:
    """PostgreSQL through the shared pool when a DSN is set, else the DuckDB file (which a
    backup needs to exist: opening it would create an empty one)."""
    dsn = config.state_dsn.get_secret_value() if config.state_dsn else None
    dsn = dsn or os.environ.get("REDDIT_PIPELINE_STATE_DSN")
    if dsn:
        from tasks.state import pooled_state

        with pooled_state(dsn) as store:
            yield store
        return
    if must_exist and not config.state_path.is_file():
        raise NoStateError(
            f"no state store: no state DSN is set and there is no DuckDB state file at "
            f"{config.state_path}; set REDDIT_PIPELINE_STATE_DSN (or state_dsn) where the "
            "backup runs"
        )
    store = open_duckdb_state(config.state_path)
    try:
        yield store
    finally:
        store.close()


def _worth_retrying(task: Any, task_run: Any, state: Any) -> bool:
    """A missing or empty state store stays so: fail at once rather than after 7 minutes."""
    return not isinstance(state.result(raise_on_failure=False), NoStateError)


@task(
    name="backup-state",
    retries=3,
    retry_delay_seconds=[30, 120, 300],
    retry_condition_fn=_worth_retrying,
    cache_policy=NO_CACHE,
)
def backup_state_task(config: PipelineConfig) -> BackupResult:
    """Retried: the lake or the database may be briefly unreachable; a retry writes a new,
    complete backup (an interrupted one has no manifest and is ignored)."""
    from tasks.run import build_lake

    lake, _ = build_lake(config)
    with _state(config, must_exist=True) as store:
        return backup_state(store, lake)


@flow(name="reddit-state-backup", log_prints=True)
def reddit_state_backup(config: PipelineConfig | None = None) -> BackupResult:
    """Back up pipeline_runs, watermarks and check_results to backups/state/{timestamp}/.

    Args:
        config: Where the state store is (state_dsn or state_path) and the lake the backup
            goes to (lake, s3_bucket_block).
    """
    result = backup_state_task(config or PipelineConfig())
    get_run_logger().info(
        "Backed up the state store to %s: %s",
        result.prefix,
        ", ".join(f"{t} {n} rows" for t, n in result.rows.items()),
    )
    return result


def _config(args: argparse.Namespace) -> PipelineConfig:
    values: dict[str, object] = {"state_path": args.state, "lake_dir": args.lake_dir}
    if args.state_dsn:
        values["state_dsn"] = args.state_dsn
    if args.s3_bucket_block:
        values |= {"lake": "s3", "s3_bucket_block": args.s3_bucket_block}
    return PipelineConfig(**values)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m flows.backup",
        description="Back up the state store to the lake, list backups, or restore one into "
        "an empty database.",
    )
    parser.add_argument("command", nargs="?", choices=["backup", "list", "restore"])
    parser.add_argument("--backup", help="restore this backup (its timestamp); default newest")
    parser.add_argument(
        "--state-dsn", help="PostgreSQL state DSN (default REDDIT_PIPELINE_STATE_DSN)"
    )
    parser.add_argument("--state", type=Path, default=settings.DEFAULT_STATE_PATH)
    parser.add_argument("--lake-dir", type=Path, default=settings.DEFAULT_LAKE_DIR)
    parser.add_argument("--s3-bucket-block", help="lake in S3: name of a prefect-aws S3Bucket")
    args = parser.parse_args(argv)
    config = _config(args)
    command = args.command or "backup"
    try:
        if command == "backup":
            result = reddit_state_backup(config)
            print(f"backup {result.prefix}: {result.rows}")
            return 0
        from tasks.run import build_lake

        lake, _ = build_lake(config)
        if command == "list":
            for prefix in list_backups(lake):
                print(prefix)
            return 0
        checked = read_backup(lake, args.backup)  # a bad backup stops before any database
        with _state(config) as store:
            result = restore_state(store, lake, checked)
    except (RestoreError, NoStateError, ValueError, ConnectionError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"restored {result.prefix}: {result.rows}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.exit(main())
