"""reddit-rebuild: recreate processed data, marts, warehouse and watermarks from the raw lake.

`python flows/main.py rebuild [--subreddit S] [--since DAY] [--until DAY]` locally; the
`rebuild` deployment in production. Losing the warehouse or the state database loses nothing.
The lake, the engines, the warehouse and the state store come from a PipelineConfig, built by
the same `build_engines` as the pipeline's runs: a rebuild reads the S3 lake and loads
PostgreSQL or Redshift exactly where the scheduled runs do.
"""

from __future__ import annotations

import argparse
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any, get_args

from prefect import flow, get_run_logger
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from tasks import settings
from tasks.config import SUBREDDIT_INPUT_PATTERN, PipelineConfig, SourceName
from tasks.core import interruption_of, reraise_as_interrupt
from tasks.run import RebuildResult, build_engines, flow_run_id, open_state, rebuild_from_lake
from tasks.state import RunRecord, StateStore

# The sources whose watermarks a rebuild may rewrite ("auto" only picks one of them).
WATERMARK_SOURCES = tuple(s for s in get_args(SourceName) if s != "auto")

# The PipelineConfig fields that say where things are; the CLI offers each as --field-name.
LOCATION_FIELDS = (
    "lake",
    "s3_bucket_block",
    "aws_credentials_block",
    "process_engine",
    "glue_job_name",
    "model_engine",
    "athena_block",
    "warehouse_block",
    "warehouse_dsn",
    "state_dsn",
)


class RebuildConfig(BaseModel):
    subreddits: list[str] = Field(
        default_factory=list,
        description="Only these subreddits (whole raw batches that hold them are rebuilt).",
        json_schema_extra={"items": {"type": "string", "pattern": SUBREDDIT_INPUT_PATTERN}},
    )
    since: date | None = Field(None, description="First day to rebuild (UTC).")
    until: date | None = Field(None, description="Day after the last one to rebuild.")
    pipeline: PipelineConfig = Field(
        default_factory=PipelineConfig,
        description="Where the lake, the engines, the warehouse and the state store are: the "
        "same settings as the pipeline's runs (lake, s3_bucket_block, process_engine, "
        "model_engine, warehouse, warehouse_block, state_dsn, ...).",
    )

    @field_validator("subreddits")
    @classmethod
    def _check_subreddits(cls, names: list[str]) -> list[str]:
        return PipelineConfig._check_subreddits(names)

    @model_validator(mode="after")
    def _check_window(self) -> RebuildConfig:
        if self.since and self.until and self.since >= self.until:
            raise ValueError(f"since ({self.since}) must be before until ({self.until})")
        return self


@flow(name="reddit-rebuild", log_prints=True)
def reddit_rebuild(config: RebuildConfig | None = None) -> RebuildResult:
    """Everything downstream of the raw layer, recomputed from it.

    Args:
        config: Which subreddits and which [since, until) window to rebuild (all when empty),
            and under `pipeline` the lake to read raw from and the engines and warehouse to
            rebuild into, as a pipeline run would use them.
    """
    config = config or RebuildConfig()
    log = get_run_logger()
    engines = build_engines(config.pipeline)
    log.info("Engines: %s", ", ".join(f"{k} {v}" for k, v in engines.description.items()))
    state = open_state(config.pipeline)
    run_id = f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-rebuild-{uuid.uuid4().hex[:8]}"
    try:
        # Recorded like a pipeline run, so `status` and the run history show rebuilds too.
        state.start_run(
            RunRecord(
                run_id,
                "rebuild",
                flow_run_id(),
                _midnight(config.since),
                _midnight(config.until),
                config.model_dump(mode="json"),
            )
        )
        try:
            with _watermark_locks(state, config):
                result = rebuild_from_lake(
                    engines,
                    state,
                    tuple(config.subreddits),
                    config.since.isoformat() if config.since else None,
                    config.until.isoformat() if config.until else None,
                    run_id,
                    config.pipeline.freshness_max_age.total_seconds() / 3600,
                )
        except BaseException as exc:
            interrupted = interruption_of(exc)
            state.finish_run(
                run_id,
                "cancelled" if interrupted else "failed",
                {},
                0,
                {},
                error=interrupted or f"{type(exc).__name__}: {exc}",
            )
            reraise_as_interrupt(exc, interrupted)
            raise
        state.finish_run(run_id, "completed", _counts(result), 0, {})
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


@contextmanager
def _watermark_locks(state: StateStore, config: RebuildConfig) -> Iterator[None]:
    """The rebuild rewrites watermarks of every source its raw batches came from: it holds
    the same state locks as pipeline runs over those subreddits (all of them without a
    filter), so a scheduled run never interleaves its watermark updates with the rebuild's."""
    wait = config.pipeline.state_lock_wait.total_seconds()
    with ExitStack() as stack:
        for source in WATERMARK_SOURCES:
            stack.enter_context(state.subreddit_locks(source, list(config.subreddits), wait))
        yield


def _midnight(day: date | None) -> datetime | None:
    return datetime.combine(day, time(), UTC) if day else None


def _counts(result: RebuildResult) -> dict[str, Any]:
    """The figures status shows, in the keys pipeline runs use."""
    return {
        "batches": result.batches,
        "processed_rows": result.processed_rows,
        "days": len(result.days),
        "loaded_new": dict(result.load.inserted_totals()) if result.load else {},
        "loaded_updated": dict(result.load.updated_totals()) if result.load else {},
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python flows/main.py rebuild",
        description="Recreate processed data, marts, warehouse and watermarks from the raw lake.",
    )
    parser.add_argument("--subreddit", action="append", default=[], metavar="NAME")
    parser.add_argument("--since", type=date.fromisoformat, help="first day (YYYY-MM-DD)")
    parser.add_argument("--until", type=date.fromisoformat, help="day after the last one")
    parser.add_argument("--lake-dir", type=Path, default=settings.DEFAULT_LAKE_DIR)
    parser.add_argument(
        "--warehouse", type=Path, default=settings.DEFAULT_WAREHOUSE_PATH, help="DuckDB file"
    )
    parser.add_argument("--state", type=Path, default=settings.DEFAULT_STATE_PATH)
    parser.add_argument(
        "--warehouse-kind",
        choices=["duckdb", "postgres", "redshift"],
        default="duckdb",
        help=PipelineConfig.model_fields["warehouse"].description,
    )
    for name in LOCATION_FIELDS:
        described = PipelineConfig.model_fields[name].description or ""
        if name.endswith("_dsn"):
            described += " Prefer the environment variable: a command line is visible to ps."
        parser.add_argument("--" + name.replace("_", "-"), help=described)
    parser.add_argument(
        "--debug", action="store_true", help="show tracebacks on the console (Prefect's log)"
    )
    return parser


def parse_rebuild_config(argv: list[str]) -> RebuildConfig:
    """Parse and validate; on any user error, exit 2 with one line on stderr."""
    parser = build_parser()
    args = parser.parse_args(argv)
    values = {name: getattr(args, name) for name in LOCATION_FIELDS}
    values |= {
        "lake_dir": args.lake_dir,
        "warehouse_path": args.warehouse,
        "state_path": args.state,
        "warehouse": args.warehouse_kind,
    }
    try:
        config = RebuildConfig(
            subreddits=args.subreddit,
            since=args.since,
            until=args.until,
            pipeline=PipelineConfig(**{k: v for k, v in values.items() if v is not None}),
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        parser.exit(2, f"error: {where + ': ' if where else ''}{first['msg']}\n")
    if config.pipeline.lake == "local" and not config.pipeline.lake_dir.is_dir():
        parser.exit(2, f"error: no lake at {config.pipeline.lake_dir}\n")
    return config


def main(argv: list[str]) -> int:
    from flows.cli import run_command

    config = parse_rebuild_config(argv)
    return run_command(
        lambda: reddit_rebuild(config),
        lambda result: print(
            f"rebuilt {result.batches} batches, {result.processed_rows} rows, days {result.days}"
        ),
        "rebuild",
        "; run it again to finish it",
        debug=build_parser().parse_args(argv).debug,
    )
