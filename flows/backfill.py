"""reddit_backfill: a long window or many dump files, one reddit_pipeline subflow per part.

Why parts: a failed part is retried alone (its raw batches and MERGE are idempotent), each part
shows up as its own subflow run with its own counts, and memory stays bounded by one part.
Parts run one after another: the DuckDB warehouse and state files admit one writer, and
watermarks must advance in order. With a Dask cluster (`dask_address`, or the environment
variable REDDIT_PIPELINE_DASK_ADDRESS) each part runs as a task on the cluster, so the heavy work
leaves the machine that orchestrates the backfill.

    python -m flows.backfill --since 2024-03-01 --until 2024-03-08
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, Field

from flows.main import reddit_pipeline
from tasks.config import PipelineConfig

DASK_ADDRESS_ENV = "REDDIT_PIPELINE_DASK_ADDRESS"


class BackfillPart(BaseModel):
    """One slice of the backfill: a window, or one dump file, as a PipelineConfig."""

    label: str = Field(description="Shown in the subflow run's name and the logs.")
    config: PipelineConfig


def split_parts(config: PipelineConfig, part_days: int = 1) -> list[BackfillPart]:
    """Dump sources split per file; any other source splits [since, until) into windows of
    `part_days` days aligned to UTC midnight. Watermarks are ignored (full_refresh) because a
    backfill reads a window older than them on purpose."""
    if part_days < 1:
        raise ValueError(f"part_days must be at least 1, got {part_days}")
    if config.source == "dump":
        return [
            BackfillPart(
                label=path.name,
                config=config.model_copy(update={"dump_paths": [path], "full_refresh": True}),
            )
            for path in config.dump_paths
        ]
    if config.since is None or config.until is None:
        raise ValueError("a backfill over a window needs both since and until")
    parts = []
    start = config.since
    while start < config.until:
        midnight = datetime(start.year, start.month, start.day, tzinfo=UTC)
        end = min(midnight + timedelta(days=part_days), config.until)
        parts.append(
            BackfillPart(
                label=f"{start:%Y-%m-%d}",
                config=config.model_copy(
                    update={"since": start, "until": end, "full_refresh": True}
                ),
            )
        )
        start = end
    return parts


def _run_part(part: BackfillPart) -> dict[str, Any]:
    """One part through the whole pipeline, as a subflow named after the part."""
    summary = reddit_pipeline.with_options(flow_run_name=f"backfill-{part.label}")(part.config)
    return {"part": part.label, "status": summary.status, "staged": summary.staged}


@task(name="backfill-part", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=60)
def backfill_part_task(part: BackfillPart) -> dict[str, Any]:
    """The Dask path: the part's subflow runs where the task runs (a Dask worker)."""
    return _run_part(part)


@flow(name="reddit-backfill", log_prints=True)
def reddit_backfill(
    config: PipelineConfig,
    part_days: Annotated[int, Field(ge=1, le=31, description="Days per part of a window.")] = 1,
    dask_address: Annotated[
        str | None,
        Field(
            description="Scheduler of a Dask cluster (tcp://host:8786) to run the parts on. "
            f"Default: {DASK_ADDRESS_ENV}, else in this process."
        ),
    ] = None,
) -> list[dict[str, Any]]:
    """Run reddit_pipeline once per part, in order; stop at the first failed part so the
    watermarks never skip a gap.

    Args:
        config: The pipeline's config with the window to backfill (since and until), or
            source 'dump' with the dump files (one part per file).
        part_days: Days per part of a window.
        dask_address: Scheduler of a Dask cluster (tcp://host:8786) to run the parts on;
            default: the environment variable REDDIT_PIPELINE_DASK_ADDRESS, else in this process.
    """
    log = get_run_logger()
    parts = split_parts(config, part_days)
    address = dask_address or os.environ.get(DASK_ADDRESS_ENV)
    log.info(
        "Backfill of %d parts (%s)%s",
        len(parts),
        ", ".join(p.label for p in parts),
        f" on Dask at {address}" if address else "",
    )
    if not address:
        return [_run_part(part) for part in parts]
    from prefect_dask import DaskTaskRunner

    results: list[dict[str, Any]] = []
    with DaskTaskRunner(address=address) as runner:
        for part in parts:
            # Submitted one at a time: one writer on the warehouse and the state store.
            results.append(runner.submit(backfill_part_task, parameters={"part": part}).result())
    return results


def main(argv: list[str] | None = None) -> int:
    """`python -m flows.backfill`: the flow without a deployment, for one-off backfills."""
    parser = argparse.ArgumentParser(prog="python -m flows.backfill", description=__doc__)
    parser.add_argument("--since", type=datetime.fromisoformat)
    parser.add_argument("--until", type=datetime.fromisoformat)
    parser.add_argument("--dump-path", action="append", default=[], type=Path)
    parser.add_argument("--subreddit", action="append", default=[])
    parser.add_argument("--source", choices=["sample", "dump", "api"])
    parser.add_argument("--part-days", type=int, default=1)
    parser.add_argument("--dask-address")
    args = parser.parse_args(argv)
    values = {
        "source": args.source or ("dump" if args.dump_path else "sample"),
        "dump_paths": args.dump_path,
        "subreddits": args.subreddit,
        "since": args.since,
        "until": args.until,
    }
    config = PipelineConfig(**{k: v for k, v in values.items() if v is not None})
    for result in reddit_backfill(config, args.part_days, args.dask_address):
        print(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
