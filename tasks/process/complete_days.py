"""A day is modeled from all of its processed files, so each must be there first.

The lake's retention (tasks.lake.setup) expires processed/ after some days while raw/ is kept.
A run that touches an old day (a backfill, a late comment, a refresh of an old post) would then
rebuild that day's marts from the few processed files still present, and the MERGE would write
lower counts into the warehouse's subreddit_daily. Before the model step, the raw batches of
the touched days that have no processed file are processed again from raw.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

from tasks import settings
from tasks.lake import Lake, batch_of
from tasks.process.duckdb_engine import ProcessResult


def _processed_batches(lake: Lake, kind: str, dt: str) -> set[str]:
    """Batch ids with a processed file on the day: `{batch}.parquet`, or `{batch}-{i}.parquet`
    when a batch's day was written in several parts."""
    names = set()
    for key in lake.list_keys(f"{settings.PROCESSED_PREFIX}/{kind}/dt={dt}/"):
        if key.endswith(".parquet"):
            names.add(key.rsplit("/", 1)[-1].removesuffix(".parquet"))
    return names


def _has_file(batch: str, names: set[str]) -> bool:
    return batch in names or any(
        n.startswith(batch + "-") and n[len(batch) + 1 :].isdigit() for n in names
    )


def unprocessed_raw_keys(lake: Lake, kind: str, dts: list[str]) -> list[str]:
    """The raw keys of the given days whose (batch, day) has no processed file.

    raw/ is partitioned by subreddit before day: the subreddit folders are listed once, then
    only the given days' folders of each (a few LIST requests on S3, however old the lake)."""
    by_batch_day: dict[tuple[str, str], list[str]] = defaultdict(list)
    for subreddit in lake.list_folders(f"{settings.RAW_PREFIX}/{kind}/"):
        for dt in sorted(set(dts)):
            for key in lake.list_keys(f"{subreddit}dt={dt}/"):
                by_batch_day[(batch_of(key), dt)].append(key)
    present = {dt: _processed_batches(lake, kind, dt) for dt in {d for _, d in by_batch_day}}
    return sorted(
        key
        for (batch, dt), keys in by_batch_day.items()
        if not _has_file(batch, present[dt])
        for key in keys
    )


def could_have_expired(dts: list[str], today: date | None = None) -> list[str]:
    """The days whose processed files a lifecycle rule could have expired. A processed file is
    written after its day, and no retention is shorter than PROCESSED_MARGIN_DAYS, so the
    days of the last week are whole: a routine run, which touches recent days, lists nothing."""
    today = today or datetime.now(UTC).date()
    oldest_whole = (today - timedelta(days=settings.PROCESSED_MARGIN_DAYS)).isoformat()
    return [dt for dt in dts if dt <= oldest_whole]


def restore_missing_processed(
    lake: Lake, dts: list[str], process: Callable[[str, list[str]], ProcessResult]
) -> dict[str, int]:
    """Process again, with the run's own process step, every raw batch of the given days that
    lost its processed file; returns the number of raw files reprocessed per kind."""
    restored = {}
    old_days = could_have_expired(dts)
    if not old_days:
        return restored
    for kind in settings.KINDS:
        keys = unprocessed_raw_keys(lake, kind, old_days)
        if keys:
            process(kind, keys)
            restored[kind] = len(keys)
    return restored
