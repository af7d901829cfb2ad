"""Extract: the sources a run can read, each ending in the same StageResults.

Dumps are staged chunk by chunk as they stream; API items are fetched per subreddit and kind,
then staged through the same classifier, so quarantine, filters and raw keys behave alike.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks import duck, settings
from tasks.config import PipelineConfig
from tasks.lake import Lake, readable_path
from tasks.process import batch_of
from tasks.reddit_api import (
    ClientOptions,
    RedditAuth,
    RedditAuthError,
    SubredditExtract,
    credentials_from_env,
    fetch_comment_trees,
    posts_to_refresh,
    refresh_posts,
    run_extract,
)
from tasks.stage import StageResult, Window, stage_records
from tasks.state import Watermarks

API_BATCH_PREFIX = "api"


@dataclass(frozen=True)
class ResolvedSource:
    name: str
    auth: RedditAuth | None
    reason: str


def resolve_source(config: PipelineConfig) -> ResolvedSource:
    """'auto' becomes the API when credentials are configured, the sample otherwise."""
    if config.source in ("sample", "dump"):
        return ResolvedSource(config.source, None, f"--source {config.source}")
    auth = load_auth(config)
    if config.comment_tree_posts and (auth is None or not config.subreddits):
        raise ValueError(
            "--comment-tree reads from the Reddit API: give --subreddit and Reddit credentials "
            "(REDDIT_CLIENT_ID, REDDIT_CLIENT_SECRET, REDDIT_USER_AGENT or a RedditCredentials "
            "block)"
        )
    if config.source == "api":
        if auth is None:
            raise ValueError(
                "the API source needs Reddit credentials: set REDDIT_CLIENT_ID, "
                "REDDIT_CLIENT_SECRET and REDDIT_USER_AGENT, or give a RedditCredentials block"
            )
        return ResolvedSource("api", auth, f"Reddit API, credentials from {auth.source}")
    if auth is not None and config.subreddits:
        return ResolvedSource("api", auth, f"Reddit API, credentials from {auth.source}")
    why = "no Reddit credentials configured" if auth is None else "no --subreddit given"
    return ResolvedSource("sample", None, f"the bundled sample dump ({why})")


def load_auth(config: PipelineConfig) -> RedditAuth | None:
    if config.reddit_credentials_block:
        from blocks.reddit import RedditCredentials

        return RedditCredentials.load(config.reddit_credentials_block).to_auth()
    return credentials_from_env(os.environ)


def api_batch_id(kind: str, subreddit: str, retrieved_utc: int, part: str = "new") -> str:
    """API batches carry their retrieval time in the name: Reddit's JSON has none, and the
    marts keep the version retrieved last (see process.batch_retrieved_utc)."""
    return f"{API_BATCH_PREFIX}-{retrieved_utc}-{part}-{kind}-{subreddit}"


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
    """A listing that ended before the last run's watermark: Reddit's listings stop at about
    1000 items, so a busy subreddit read too rarely loses the items between."""

    subreddit: str
    kind: str
    items_read: int
    since_utc: float  # the watermark: items up to it were read by an earlier run
    until_utc: float  # the oldest item this run read

    @classmethod
    def of(cls, extract: SubredditExtract) -> ListingGap | None:
        if not extract.ended_early or extract.oldest_read is None:
            return None
        assert extract.watermark_utc is not None
        return cls(
            extract.subreddit,
            extract.kind,
            extract.items_paged,
            extract.watermark_utc,
            extract.oldest_read,
        )

    def message(self) -> str:
        since, until = _iso(self.since_utc), _iso(self.until_utc)
        return (
            f"r/{self.subreddit} {self.kind}: the listing ended after {self.items_read} items "
            "(Reddit's ~1000-item cap) before reaching the last run's watermark; items created "
            f"between {since} and {until} may be missed: backfill that window from a dump "
            f"(--source dump --subreddit {self.subreddit} --since {since} --until {until}) "
            "and run more often"
        )

    def row(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "subreddit": self.subreddit,
            "items_read": self.items_read,
            "may_miss_from": _iso(self.since_utc),
            "may_miss_until": _iso(self.until_utc),
        }


@dataclass
class ApiExtract:
    """What the API source staged, the subreddits it could not read, and the listings that
    ended before their watermark."""

    stages: list[StageResult] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    gaps: list[ListingGap] = field(default_factory=list)


def client_options(config: PipelineConfig) -> ClientOptions:
    return ClientOptions(
        global_limit=config.reddit_rate_limit,
        global_limit_wait_seconds=config.reddit_rate_limit_wait.total_seconds(),
    )


def extract_api_source(
    config: PipelineConfig,
    auth: RedditAuth,
    lake: Lake,
    watermarks: Watermarks,
    process: bool = False,
) -> ApiExtract:
    """New posts and comments of every subreddit, the chosen comment trees, then the refresh
    of recent posts; every part is staged (and processed, with `process`) as raw batches.

    Each part opens its own client, and all of them share the one limiter of this client id.
    """
    retrieved = int(time.time())
    base_url = config.reddit_base_url.get_secret_value() if config.reddit_base_url else None
    extracts = run_extract(
        auth,
        config.subreddits,
        list(settings.KINDS),
        watermarks,
        overlap_seconds=config.overlap.total_seconds(),
        base_url=base_url,
        options=client_options(config),
    )
    window = Window(tuple(config.subreddits), config.since, config.until)
    result = ApiExtract()

    def stage(lines: list[bytes], kind: str, batch: str) -> StageResult:
        staged = stage_records(lines, kind, batch, batch, lake, window, config.raw_codec, process)
        result.stages.append(staged)
        return staged

    for extract in extracts:
        if extract.error:
            result.problems.append(extract.error)
            continue
        if gap := ListingGap.of(extract):
            result.gaps.append(gap)
        stage(extract.lines, extract.kind, api_batch_id(extract.kind, extract.subreddit, retrieved))
    if config.comment_tree_posts:
        trees = asyncio.run(
            fetch_comment_trees(
                auth,
                config.comment_tree_posts,
                base_url=base_url,
                options=client_options(config),
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
            lines = asyncio.run(
                refresh_posts(auth, names, base_url=base_url, options=client_options(config))
            )
            stage(lines, "posts", api_batch_id("posts", "all", int(time.time()), part="refresh"))
    return result


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _retry_unless_only_the_user_can_fix_it(_task: Any, _run: Any, state: Any) -> bool:
    """Retry what time may fix (the client's own retries ran out on 5xx, timeouts, 429s), not
    refused credentials or a bad name or option: a retry would only repeat the same refusal
    30 s later, and with credentials a second token request."""
    error = state.result(raise_on_failure=False)
    return not isinstance(error, RedditAuthError | ValueError | TypeError)


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
