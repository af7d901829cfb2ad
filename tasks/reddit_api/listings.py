"""New posts and comments of many subreddits, read concurrently down to their watermarks."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from typing import Any

from tasks.config import SUBREDDIT_PATTERN
from tasks.reddit_api import settings
from tasks.reddit_api.client import ClientOptions, RedditClient, run_all
from tasks.reddit_api.credentials import RedditAuth
from tasks.reddit_api.errors import RedditUnavailableError
from tasks.reddit_api.ratelimit import SharedRateLimiter
from tasks.reddit_api.things import (
    Watermark,
    check_listing,
    children,
    order_key,
    raw_line,
    thing_key,
)
from tasks.state import newer_mark


@dataclass
class SubredditExtract:
    """What one listing gave: raw lines plus the candidate watermark the flow commits later."""

    subreddit: str
    kind: str
    lines: list[bytes]
    newest: Watermark | None
    requests: int
    error: str | None = None
    # Paging ended (Reddit's ~1000-item cap, or an empty page when the `after` anchor was
    # removed) before it reached the watermark: items created between the watermark and the
    # oldest item read may be missing, and only a dump can fill them in.
    ended_early: bool = False
    items_paged: int = 0
    oldest_read: float | None = None
    watermark_utc: float | None = None


@dataclass
class _Cursor:
    """Where paging stops: items at or below the floor were read by an earlier run."""

    watermark: Watermark | None
    overlap_seconds: float
    seen: dict[str, bytes] = field(default_factory=dict)
    newest: Watermark | None = None
    oldest: float | None = None

    def wanted(self, data: dict[str, Any]) -> bool:
        """New since the watermark, or inside the overlap where late items can appear."""
        if self.watermark is None:
            return True
        created = float(data["created_utc"])
        return created > self.watermark[0] - self.overlap_seconds or thing_key(data) > order_key(
            *self.watermark
        )


def check_subreddit_names(subreddits: list[str]) -> list[str]:
    """Refuse names Reddit cannot have before any request; return them bare and lower-case."""
    bare = [s.strip().removeprefix("/").removeprefix("r/") for s in subreddits]
    bad = [s for s in bare if not re.match(SUBREDDIT_PATTERN, s)]
    if bad:
        raise ValueError(
            f"not valid subreddit names: {bad} (2-21 letters, digits or underscores, e.g. 'python')"
        )
    return list(dict.fromkeys(s.lower() for s in bare))


def check_kinds(kinds: list[str]) -> list[str]:
    unknown = [k for k in kinds if k not in settings.LISTING_PATHS]
    if unknown:
        raise ValueError(
            f"unknown kinds {unknown}; expected some of {list(settings.LISTING_PATHS)}"
        )
    return list(dict.fromkeys(kinds))


async def read_listing(
    client: RedditClient, subreddit: str, kind: str, cursor: _Cursor
) -> SubredditExtract:
    """Page with `after` from the newest item down to the watermark (or the ~1000 cap)."""
    path = settings.LISTING_PATHS[kind].format(sub=subreddit)
    after: str | None = None
    requests = paged = 0
    while True:
        params: dict[str, str | int] = {"limit": settings.PAGE_SIZE}
        if after:
            params["after"] = after
        payload = await client.get(path, params, check=check_listing)
        requests += 1
        things = children(payload)
        paged += len(things)
        reached_floor = _take_page(things, cursor)
        after = payload["data"].get("after")
        if reached_floor or not after or not things:
            break
    return SubredditExtract(
        subreddit=subreddit,
        kind=kind,
        lines=list(cursor.seen.values()),
        newest=cursor.newest,
        requests=requests,
        ended_early=cursor.watermark is not None
        and not reached_floor
        and _cut_short(paged, requests, bool(things)),
        items_paged=paged,
        oldest_read=cursor.oldest,
        watermark_utc=cursor.watermark[0] if cursor.watermark else None,
    )


def _cut_short(paged: int, requests: int, last_page_had_items: bool) -> bool:
    """Whether a listing that ended above the watermark ended for Reddit's reasons rather
    than because the subreddit has nothing older: an empty page after a full one (the `after`
    anchor was removed), or an end in the last page before the ~1000-item cap. A small
    subreddit whose every item lies in the overlap ends sooner and is not flagged."""
    if not last_page_had_items:
        return requests > 1
    return paged > settings.LISTING_CAP - settings.PAGE_SIZE


def _take_page(things: list[dict[str, Any]], cursor: _Cursor) -> bool:
    """Keep the wanted items of one page; True once the page went below the watermark.

    The whole page is filtered rather than stopping at the first old item, so an item a
    little out of order within the page is not lost.
    """
    reached_floor = False
    for child in things:
        data = child["data"]
        created = float(data["created_utc"])
        cursor.newest = newer_mark(cursor.newest, (created, str(data["name"])))
        cursor.oldest = created if cursor.oldest is None else min(cursor.oldest, created)
        if not cursor.wanted(data):
            reached_floor = True
            continue
        cursor.seen.setdefault(str(data["name"]), raw_line(data))
    return reached_floor


async def _extract_one(
    client: RedditClient,
    subreddit: str,
    kind: str,
    watermark: Watermark | None,
    overlap_seconds: float,
) -> SubredditExtract:
    cursor = _Cursor(watermark=watermark, overlap_seconds=overlap_seconds)
    try:
        return await read_listing(client, subreddit, kind, cursor)
    except RedditUnavailableError as exc:
        return SubredditExtract(
            subreddit=subreddit,
            kind=kind,
            lines=[],
            newest=None,
            requests=0,
            error=f"r/{subreddit}: subreddit {exc}",
        )


async def extract_api(
    auth: RedditAuth,
    subreddits: list[str],
    kinds: list[str],
    watermarks: dict[tuple[str, str], Watermark],
    overlap_seconds: float = settings.DEFAULT_OVERLAP_SECONDS,
    base_url: str | None = None,
    *,
    options: ClientOptions | None = None,
    limiter: SharedRateLimiter | None = None,
) -> list[SubredditExtract]:
    """Read every (subreddit, kind) listing concurrently through one shared client.

    A missing, private, banned or quarantined subreddit is reported in its own result and
    the others go on; bad credentials and exhausted retries raise.
    """
    names = check_subreddit_names(subreddits)
    wanted_kinds = check_kinds(kinds)
    marks = {(s.lower(), k): w for (s, k), w in watermarks.items()}
    async with RedditClient(auth, base_url, options, limiter) as client:
        jobs = [
            _extract_one(client, sub, kind, marks.get((sub, kind)), overlap_seconds)
            for sub in names
            for kind in wanted_kinds
        ]
        return await run_all(jobs)


def run_extract(*args: Any, **kwargs: Any) -> list[SubredditExtract]:
    """extract_api for synchronous callers (a Prefect task without an event loop)."""
    return asyncio.run(extract_api(*args, **kwargs))
