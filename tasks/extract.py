"""Extract: the sources a run can read, each ending in the same StageResults.

Dumps are staged chunk by chunk as they stream; API items are fetched per subreddit and kind,
then staged through the same classifier, so quarantine, filters and raw keys behave alike.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from dataclasses import dataclass
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
    credentials_from_env,
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


def extract_api_source(
    config: PipelineConfig,
    auth: RedditAuth,
    lake: Lake,
    watermarks: Watermarks,
    process: bool = False,
) -> tuple[list[StageResult], list[str]]:
    """New posts and comments of every subreddit, then the refresh of recent posts; returns
    the staged results (processed too, with `process`) and one message per subreddit that
    could not be read."""
    retrieved = int(time.time())
    extracts = run_extract(
        auth,
        config.subreddits,
        list(settings.KINDS),
        watermarks,
        overlap_seconds=config.overlap.total_seconds(),
        base_url=config.reddit_base_url,
        options=ClientOptions(global_limit=config.reddit_rate_limit),
    )
    window = Window(tuple(config.subreddits), config.since, config.until)
    results, problems = [], []
    for extract in extracts:
        if extract.error:
            problems.append(extract.error)
            continue
        batch = api_batch_id(extract.kind, extract.subreddit, retrieved)
        results.append(
            stage_records(
                extract.lines, extract.kind, batch, batch, lake, window, config.raw_codec, process
            )
        )
    if config.refresh_max_age.total_seconds() > 0:
        staged_now = frozenset(b for result in results for b in result.batch_ids)
        names = posts_to_refresh(
            recent_posts(lake, config.subreddits, config.refresh_max_age, staged_now),
            config.refresh_max_age.total_seconds(),
        )
        if names:
            lines = asyncio.run(
                refresh_posts(
                    auth,
                    names,
                    base_url=config.reddit_base_url,
                    options=ClientOptions(global_limit=config.reddit_rate_limit),
                )
            )
            batch = api_batch_id("posts", "all", int(time.time()), part="refresh")
            results.append(
                stage_records(lines, "posts", batch, batch, lake, window, config.raw_codec, process)
            )
    return results, problems


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
) -> tuple[list[StageResult], list[str]]:
    """Retried as a whole only after the client's own bounded retries gave up; staging is
    idempotent, so a retry re-stages at most what it fetched again."""
    return extract_api_source(config, auth, lake, watermarks, process)
