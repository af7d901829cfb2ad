"""The shared limiter: no 429 in normal running, never over the limit, one token."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest
from fake_reddit import FakeReddit, auth_for, fast_options

from tasks.extract.reddit_api import (
    RedditClient,
    SharedRateLimiter,
    SubredditExtract,
    extract_api,
    limiter_for,
    refresh_posts,
)

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
        # Never over the limit in any window. How fully each window is used is a speed
        # figure, measured by bench/extract_bench.py (0.99 there): here only that the
        # limiter does not pace to a fraction of it, with room for a busy machine.
        assert max(usage) <= 1.0
        assert sorted(usage)[len(usage) // 2] >= 0.75


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


def test_clients_of_one_client_id_share_one_limiter_and_morechildren_lock() -> None:
    with FakeReddit(limit=30, window=2.0) as server:

        async def open_clients() -> None:
            async with (
                RedditClient(auth_for(server), server.url) as first,
                RedditClient(auth_for(server), server.url) as second,
                RedditClient(auth_for(server, client_id="other-app"), server.url) as other,
            ):
                assert first.limiter is second.limiter
                assert first.morechildren_lock is second.morechildren_lock
                assert other.limiter is not first.limiter
                assert other.morechildren_lock is not first.morechildren_lock

        asyncio.run(open_clients())
        assert limiter_for(server.client_id, server.url) is limiter_for(
            server.client_id, server.url + "/"
        )


def test_extraction_and_refresh_at_once_share_the_window_without_429() -> None:
    """Two event loops (two threads), each with its own client of the same id: one limiter
    paces them both, so together they stay inside the server's window."""
    with FakeReddit(limit=20, window=2.0) as server:
        subs = [f"sub{i}" for i in range(4)]
        posts = [p for sub in subs for p in server.add_posts(sub, 500, START)]
        auth = auth_for(server)

        def extract() -> list[SubredditExtract]:
            return asyncio.run(
                extract_api(auth, subs, ["posts"], {}, base_url=server.url, options=fast_options())
            )

        def refresh() -> list[bytes]:
            names = [p["name"] for p in posts]
            return asyncio.run(
                refresh_posts(auth, names, base_url=server.url, options=fast_options())
            )

        with ThreadPoolExecutor(2) as pool:
            extracted, refreshed = pool.submit(extract), pool.submit(refresh)
            results, lines = extracted.result(), refreshed.result()

        assert sum(len(r.lines) for r in results) == len(lines) == 2000
        # 5 pages x 4 subreddits, and one look past each full last page; 20 info batches.
        assert server.stats.api_requests == 24 + 20
        assert server.stats.rate_limited == 0
        assert limiter_for(server.client_id, server.url).stats.requests == 44
