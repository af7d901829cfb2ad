"""The Reddit API source, ending in the same StageResults as a dump.

Dumps are staged chunk by chunk as they stream (tasks.extract.stage); API items are fetched per
subreddit and kind (reddit_api/), then staged through the same classifier, so quarantine,
filters and raw keys behave alike. Which source a run reads is tasks.run.source's choice.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks import settings
from tasks.config import PipelineConfig
from tasks.core import duck
from tasks.extract.reddit_api import (
    GAP_CAP,
    ClientOptions,
    RedditAuth,
    RedditAuthError,
    RedditUnreachableError,
    RedditWaitError,
    SubredditExtract,
    WaitBudget,
    fetch_comment_trees,
    posts_to_refresh,
    refresh_posts,
    run_extract,
)
from tasks.extract.stage import StageResult, Window, stage_records
from tasks.lake import Lake, api_batch_id, batch_of, readable_path
from tasks.state import Watermarks


def _from_batches(processed_key: str, batch_ids: frozenset[str]) -> bool:
    """Whether a processed file came from one of the batches ({batch}.parquet, or
    {batch}-{part}.parquet when DuckDB split a day)."""
    name = batch_of(processed_key)
    return name in batch_ids or name.rsplit("-", 1)[0] in batch_ids


def recent_posts(
    lake: Lake,
    subreddits: list[str],
    max_age: timedelta,
    skip_batches: frozenset[str] = frozenset(),
) -> list[tuple[str, float]]:
    """(fullname, created_utc) of the processed posts of these subreddits from the last days,
    read from the lake so it works whatever the warehouse is. `skip_batches`: this run's
    own batches, processed while staged, whose posts were read a moment ago."""
    today = datetime.now(UTC).date()
    days = [(today - timedelta(days=n)).isoformat() for n in range(max_age.days + 2)]
    keys = [
        key
        for day in days
        for key in lake.list_keys(f"{settings.PROCESSED_PREFIX}/posts/dt={day}/")
        if key.endswith(".parquet") and not _from_batches(key, skip_batches)
    ]
    if not keys:
        return []
    con = duck.connect()
    try:
        with tempfile.TemporaryDirectory(prefix="reddit-refresh-") as tmp:
            paths = [str(readable_path(lake, key, Path(tmp))) for key in keys]
            return con.execute(
                f"select distinct name, created_utc from read_parquet({duck.path_list(paths)}) "
                "where lower(subreddit) in (select unnest(?::varchar[]))",
                [subreddits],
            ).fetchall()
    finally:
        con.close()


@dataclass(frozen=True)
class ListingGap:
    """A listing that fell short: it stopped at Reddit's ~1000-item cap before the last run's
    watermark (reason GAP_CAP: a busy subreddit read too rarely, and only a dump can fill the
    gap), or it ended early below the cap and could not be resumed (GAP_ENDED: the watermark
    stays, so the next run reads the same span again)."""

    subreddit: str
    kind: str
    reason: str
    items_read: int
    since_utc: float | None  # the watermark: items up to it were read by an earlier run
    until_utc: float | None  # the oldest item this run read

    @classmethod
    def of(cls, extract: SubredditExtract) -> ListingGap | None:
        if extract.gap is None:
            return None
        return cls(
            extract.subreddit,
            extract.kind,
            extract.gap,
            extract.items_paged,
            extract.watermark_utc,
            extract.oldest_read,
        )

    def message(self) -> str:
        since = _iso(self.since_utc) if self.since_utc is not None else None
        until = _iso(self.until_utc) if self.until_utc is not None else _iso(time.time())
        where = f"r/{self.subreddit} {self.kind}: the listing ended after {self.items_read} items"
        if self.reason == GAP_CAP:
            return (
                f"{where} (Reddit's ~1000-item cap) before reaching the last run's watermark; "
                f"items created between {since} and {until} may be missed: backfill that "
                f"window from a dump (--source dump --subreddit {self.subreddit} --since "
                f"{since} --until {until}) and run more often"
            )
        return (
            f"{where}, below Reddit's ~1000-item cap, and could not be resumed (the paging "
            "anchor and the items before it were gone); items created "
            f"{f'between {since} and' if since else 'before'} "
            f"{until} may be missing. Its watermark stays where it was, so the next run reads "
            "them again"
        )

    def row(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "subreddit": self.subreddit,
            "reason": "listing cap" if self.reason == GAP_CAP else "ended early",
            "items_read": self.items_read,
            "may_miss_from": _iso(self.since_utc) if self.since_utc is not None else None,
            "may_miss_until": _iso(self.until_utc) if self.until_utc is not None else None,
        }


@dataclass
class ApiExtract:
    """What the API source staged, the subreddits it could not read (one line per subreddit
    and reason, naming the kinds), the listings that fell short, and the listings whose
    paging anchor vanished and was resumed (notes)."""

    stages: list[StageResult] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    gaps: list[ListingGap] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def client_options(config: PipelineConfig, budget: WaitBudget | None = None) -> ClientOptions:
    return ClientOptions(
        global_limit=config.reddit_rate_limit,
        global_limit_wait_seconds=config.reddit_rate_limit_wait.total_seconds(),
        max_wait_seconds=config.reddit_max_wait.total_seconds(),
        total_wait_seconds=config.reddit_total_wait.total_seconds(),
        budget=budget,
        unreachable_after_seconds=config.reddit_unreachable_after.total_seconds(),
    )


def unavailable_problems(extracts: list[SubredditExtract]) -> list[str]:
    """One line per unreadable subreddit and reason, naming its kinds: a missing subreddit
    fails for posts and comments alike, and two identical lines would hide which is which."""
    kinds: dict[tuple[str, str], list[str]] = {}
    for extract in extracts:
        if extract.unavailable:
            kinds.setdefault((extract.subreddit, extract.unavailable), []).append(extract.kind)
    return [
        f"r/{subreddit} ({' and '.join(names)}): {reason}"
        for (subreddit, reason), names in kinds.items()
    ]


def quarantine_rejected(
    extract: SubredditExtract, staged: StageResult, lake: Lake, batch: str
) -> None:
    """Items a listing could not keep go to quarantine like bad dump lines (same folder and
    fields, plus kind, subreddit and fullname), counted in the listing's StageResult."""
    if not extract.rejected:
        return
    entries = [
        json.dumps(
            {
                "file": staged.source_file,
                "line": item.position,
                "reason": item.reason,
                "raw": item.raw,
                "kind": extract.kind,
                "subreddit": extract.subreddit,
                "fullname": item.fullname,
            },
            ensure_ascii=False,
        )
        for item in extract.rejected
    ]
    key = f"{settings.QUARANTINE_PREFIX}/{extract.kind}/{batch}.ndjson"
    lake.put_bytes(key, ("\n".join(entries) + "\n").encode())
    staged.quarantined += len(entries)
    staged.quarantine_reasons.update(item.reason for item in extract.rejected)


def resumed_notes(extract: SubredditExtract) -> list[str]:
    notes = []
    for r in extract.resumed:
        what = (
            f"the paging anchor {r.stopped_at} vanished between two pages (deleted or removed)"
            if r.vanished
            else f"Reddit ended the listing early at {r.stopped_at}"
        )
        lost = ", nothing lost" if extract.gap is None else ""
        notes.append(
            f"r/{extract.subreddit} {extract.kind}: {what}; paging resumed after "
            f"{r.resumed_after}{lost}"
        )
    return notes


def extract_api_source(
    config: PipelineConfig,
    auth: RedditAuth,
    lake: Lake,
    watermarks: Watermarks,
    process: bool = False,
) -> ApiExtract:
    """New posts and comments of every subreddit, the chosen comment trees, then the refresh
    of recent posts; every part is staged (and processed, with `process`) as raw batches.

    Each part opens its own client, and all of them share the one limiter of this client id
    and the run's one budget of waits.
    """
    retrieved = int(time.time())
    budget = WaitBudget(
        config.reddit_max_wait.total_seconds(), config.reddit_total_wait.total_seconds()
    )
    options = client_options(config, budget)
    base_url = config.reddit_base_url.get_secret_value() if config.reddit_base_url else None
    extracts = run_extract(
        auth,
        config.subreddits,
        list(settings.KINDS),
        watermarks,
        overlap_seconds=config.overlap.total_seconds(),
        base_url=base_url,
        options=options,
    )
    result = ApiExtract(problems=unavailable_problems(extracts))
    if extracts and all(extract.error for extract in extracts):
        raise NothingReadableError(
            "no subreddit could be read: " + "; ".join(result.problems) + ". Check the names"
        )
    window = Window(tuple(config.subreddits), config.since, config.until)

    def stage(lines: list[bytes], kind: str, batch: str) -> StageResult:
        staged = stage_records(lines, kind, batch, batch, lake, window, config.raw_codec, process)
        result.stages.append(staged)
        return staged

    for extract in extracts:
        if extract.error:
            continue
        if gap := ListingGap.of(extract):
            result.gaps.append(gap)
        result.notes.extend(resumed_notes(extract))
        staged = stage(
            extract.lines, extract.kind, api_batch_id(extract.kind, extract.subreddit, retrieved)
        )
        rejected = api_batch_id(extract.kind, extract.subreddit, retrieved, "rejected")
        quarantine_rejected(extract, staged, lake, rejected)
        if extract.holds_watermark:
            # The listing ended early and could not be resumed: what it missed lies between
            # the old watermark and what it read, so the watermark must not move past it.
            staged.newest.clear()
    if config.comment_tree_posts:
        trees = asyncio.run(
            fetch_comment_trees(
                auth,
                config.comment_tree_posts,
                base_url=base_url,
                options=options,
            )
        )
        for fullname, lines in trees.items():
            batch = api_batch_id("comments", fullname.removeprefix("t3_"), retrieved, "tree")
            # A tree can hold comments newer than the listing read a moment ago; the comments
            # watermark must come from the listing alone, or the next run would skip those
            # of other posts made in between.
            stage(lines, "comments", batch).newest.clear()
    if config.refresh_max_age.total_seconds() > 0:
        staged_now = frozenset(b for staged in result.stages for b in staged.batch_ids)
        names = posts_to_refresh(
            recent_posts(lake, config.subreddits, config.refresh_max_age, staged_now),
            config.refresh_max_age.total_seconds(),
        )
        if names:
            lines = asyncio.run(refresh_posts(auth, names, base_url=base_url, options=options))
            batch = api_batch_id("posts", "all", int(time.time()), part="refresh")
            # Refreshed posts are ones read before (into any warehouse, by any run): like a
            # tree's comments, they must not move a watermark, or one a listing's gap held
            # would move past the gap after all.
            stage(lines, "posts", batch).newest.clear()
    return result


class NothingReadableError(ValueError):
    """Every subreddit of the run is missing, private, banned or redirected: a run that read
    nothing must not end Completed with "nothing new"; a ValueError, so it is not retried."""


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _retry_unless_only_the_user_can_fix_it(_task: Any, _run: Any, state: Any) -> bool:
    """Retry what time may fix (the client's own retries ran out on 5xx, timeouts, 429s), not
    refused credentials, a bad name or option, a URL that never answered, or a wait Reddit
    demanded beyond the bounds: a retry would only repeat the same failure 30 s later (with
    credentials, another token request; with a wait, another long wait)."""
    error = state.result(raise_on_failure=False)
    return not isinstance(
        error,
        RedditAuthError | RedditWaitError | RedditUnreachableError | ValueError | TypeError,
    )


@task(
    name="extract-api",
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=30,
    retry_condition_fn=_retry_unless_only_the_user_can_fix_it,
)
def extract_api_task(
    config: PipelineConfig,
    auth: RedditAuth,
    lake: Lake,
    watermarks: Watermarks,
    process: bool = False,
) -> ApiExtract:
    """Retried as a whole only after the client's own bounded retries gave up; staging is
    idempotent, so a retry re-stages at most what it fetched again."""
    return extract_api_source(config, auth, lake, watermarks, process)
