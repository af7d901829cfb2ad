"""The shared limiter: no 429 in normal running, the window used almost fully, one token."""

from __future__ import annotations

import asyncio

import pytest
from fake_reddit import FakeReddit, auth_for, fast_options

from tasks.reddit_api import SharedRateLimiter, extract_api

START = 1_700_000_000.0


def full_window_usage(server: FakeReddit) -> list[float]:
    """Share of the limit used in each window the run covered from start to end."""
    indexes = sorted(server.stats.windows)
    inner = indexes[1:-1]
    return [server.stats.windows[i] / server.limit for i in inner]


@pytest.mark.parametrize(("limit", "window"), [(30, 2.0), (20, 3.0)])
def test_concurrent_extraction_paces_to_the_header_window_without_429(
    limit: int, window: float
) -> None:
    with FakeReddit(limit=limit, window=window) as server:
        # Ten full pages per subreddit, about two and a half windows' worth of requests.
        subs = [f"sub{i}" for i in range(limit // 4)]
        for sub in subs:
            server.add_posts(sub, 1000, START)
        limiter = SharedRateLimiter()
        results = asyncio.run(
            extract_api(
                auth_for(server),
                subs,
                ["posts"],
                {},
                base_url=server.url,
                options=fast_options(),
                limiter=limiter,
            )
        )
        assert all(r.error is None for r in results)
        assert server.stats.rate_limited == 0 and limiter.stats.rate_limited == 0
        usage = full_window_usage(server)
        assert usage, "the run should span at least one whole window"
        assert min(usage) >= (limit - 1) / limit


def test_concurrent_first_requests_fetch_a_single_token() -> None:
    with FakeReddit(limit=30, window=2.0) as server:
        subs = [f"sub{i}" for i in range(8)]
        for sub in subs:
            server.add_posts(sub, 5, START)
        asyncio.run(
            extract_api(
                auth_for(server),
                subs,
                ["posts", "comments"],
                {},
                base_url=server.url,
                options=fast_options(),
            )
        )
        assert server.stats.token_requests == 1


def test_retry_after_of_a_429_holds_every_coroutine() -> None:
    with FakeReddit(limit=30, window=2.0) as server:
        subs = [f"sub{i}" for i in range(4)]
        for sub in subs:
            server.add_posts(sub, 150, START)
        server.inject("429", path="/new", times=1, retry_after=0.5)
        limiter = SharedRateLimiter()
        asyncio.run(
            extract_api(
                auth_for(server),
                subs,
                ["posts"],
                {},
                base_url=server.url,
                options=fast_options(),
                limiter=limiter,
            )
        )
        assert limiter.stats.rate_limited == 1
        assert server.stats.rate_limited == 1  # only the injected one
