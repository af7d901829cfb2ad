"""Re-read recent posts through /api/info: scores, comment counts and removals keep changing."""

from __future__ import annotations

import re
import time
from collections.abc import Iterable

from tasks.extract.reddit_api import settings
from tasks.extract.reddit_api.client import ClientOptions, RedditClient, run_all
from tasks.extract.reddit_api.credentials import RedditAuth
from tasks.extract.reddit_api.ratelimit import SharedRateLimiter
from tasks.extract.reddit_api.things import check_listing, children, raw_line

FULLNAME = re.compile(r"^t[13]_[0-9a-z]{1,13}$")


def posts_to_refresh(
    posts: Iterable[tuple[str, float]],
    max_age_seconds: float = settings.DEFAULT_REFRESH_MAX_AGE_SECONDS,
    now: float | None = None,
) -> list[str]:
    """Fullnames of the posts younger than max_age: older ones have settled."""
    cutoff = (time.time() if now is None else now) - max_age_seconds
    return [name for name, created_utc in posts if created_utc >= cutoff]


def batches(fullnames: list[str], size: int = settings.INFO_BATCH) -> list[list[str]]:
    """Check the fullnames and split them, without duplicates, into /api/info batches."""
    unique = list(dict.fromkeys(fullnames))
    bad = [f for f in unique if not FULLNAME.match(f)]
    if bad:
        raise ValueError(f"not post or comment fullnames: {bad[:5]} (expected e.g. 't3_abc123')")
    return [unique[i : i + size] for i in range(0, len(unique), size)]


async def _read_batch(client: RedditClient, batch: list[str]) -> list[bytes]:
    payload = await client.get("/api/info", {"id": ",".join(batch)}, check=check_listing)
    # A child without a created_utc is kept: staging quarantines it with its reason.
    return [
        raw_line(child["data"])
        for child in children(payload)
        if isinstance(child, dict) and isinstance(child.get("data"), dict)
    ]


async def refresh_posts(
    auth: RedditAuth,
    fullnames: list[str],
    base_url: str | None = None,
    *,
    options: ClientOptions | None = None,
    limiter: SharedRateLimiter | None = None,
) -> list[bytes]:
    """Raw JSON lines of the given things as Reddit sees them now, 100 per request."""
    jobs = batches(fullnames)
    if not jobs:
        return []
    async with RedditClient(auth, base_url, options, limiter) as client:
        results = await run_all([_read_batch(client, batch) for batch in jobs])
    return [line for lines in results for line in lines]
