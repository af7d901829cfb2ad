"""Refusals and waits the server imposes: each ends in bounded time with one clear line."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fake_reddit import FakeReddit, auth_for, dead_url, fast_options, silent_host

from tasks.extract.reddit_api import (
    RedditAuthError,
    RedditUnreachableError,
    RedditWaitError,
    SubredditExtract,
    WaitBudget,
    extract_api,
)

START = 1_700_000_000.0


@pytest.fixture
def reddit() -> Iterator[FakeReddit]:
    with FakeReddit(limit=30, window=2.0) as server:
        yield server


def extract(server: FakeReddit, url: str | None = None, **options: Any) -> list[SubredditExtract]:
    return asyncio.run(
        extract_api(
            auth_for(server),
            ["python"],
            ["posts", "comments"],
            {},
            base_url=url or server.url,
            options=fast_options(**options),
        )
    )


def test_a_persistent_401_without_www_authenticate_fails_at_once_as_refused_credentials(
    reddit: FakeReddit,
) -> None:
    reddit.add_posts("python", 10, START)
    reddit.inject("401", path="/r/python", times=1000)
    started = time.monotonic()
    with pytest.raises(RedditAuthError) as caught:
        extract(reddit)
    assert time.monotonic() - started < 5
    assert reddit.stats.token_requests <= 2
    message = str(caught.value)
    assert "\n" not in message and "test credentials" in message and "401" in message
    assert "KeyError" not in message


def test_a_401_after_the_token_expired_fetches_one_new_token_and_goes_on(
    reddit: FakeReddit,
) -> None:
    reddit.add_posts("python", 250, START)
    # Page 1 succeeds, then one 401 (as an expired token gets): a new token, then page 2.
    reddit.inject("401", path="/r/python/new", skip=1)
    results = {r.kind: r for r in extract(reddit)}
    assert len(results["posts"].lines) == 250
    assert reddit.stats.token_requests == 2


def test_a_retry_after_of_an_hour_fails_at_once_naming_the_demand(reddit: FakeReddit) -> None:
    reddit.add_posts("python", 10, START)
    reddit.inject("429", path="/r/python/new", retry_after=3600)
    started = time.monotonic()
    with pytest.raises(RedditWaitError) as caught:
        extract(reddit, max_wait_seconds=5)
    assert time.monotonic() - started < 5
    message = str(caught.value)
    assert "Retry-After: 3600" in message and "reddit_max_wait" in message
    assert "/r/python/new" in message and "\n" not in message


def test_a_short_retry_after_is_waited_and_logged_with_its_reason(
    reddit: FakeReddit, caplog: pytest.LogCaptureFixture
) -> None:
    reddit.add_posts("python", 10, START)
    reddit.inject("429", path="/r/python/new", retry_after=1.5)
    budget = WaitBudget(max_seconds=5, total_seconds=60, log_after_seconds=1)
    with caplog.at_level(logging.WARNING, logger="tasks.extract.reddit_api"):
        results = extract(reddit, budget=budget)
    assert all(r.error is None for r in results)
    [line] = [r.getMessage() for r in caplog.records if "Waiting" in r.getMessage()]
    assert line.startswith("Waiting 2 s: Reddit answered GET /r/python/new: 429")
    assert "Retry-After: 1.5" in line
    assert budget.waited_seconds == 1.5


def test_waits_past_the_run_total_fail_naming_the_bound(reddit: FakeReddit) -> None:
    reddit.add_posts("python", 10, START)
    reddit.inject("429", path="/r/python", times=5, retry_after=1)
    budget = WaitBudget(max_seconds=5, total_seconds=1.5, log_after_seconds=0.5)
    with pytest.raises(RedditWaitError, match=r"reddit_total_wait"):
        extract(reddit, budget=budget)


@pytest.mark.parametrize("reset", [600, 86400])
def test_a_used_up_window_with_a_long_reset_fails_at_once_naming_it(
    reddit: FakeReddit, reset: int
) -> None:
    reddit.add_posts("python", 250, START)
    reddit.inject("exhausted", path="/r/python/new", reset=reset)
    started = time.monotonic()
    with pytest.raises(RedditWaitError) as caught:
        extract(reddit, max_wait_seconds=5)
    assert time.monotonic() - started < 5
    message = str(caught.value)
    assert "X-Ratelimit-Remaining 0" in message and f"resets in {reset}" in message


def test_a_url_where_nothing_listens_fails_within_the_bound_naming_it(reddit: FakeReddit) -> None:
    url = dead_url()
    started = time.monotonic()
    with pytest.raises(RedditUnreachableError) as caught:
        extract(reddit, url=url, unreachable_after_seconds=1.5, backoff_base_seconds=0.2)
    assert time.monotonic() - started < 3
    assert url in str(caught.value) and "--reddit-url" in str(caught.value)


def test_a_host_that_never_answers_fails_within_the_bound_naming_it(reddit: FakeReddit) -> None:
    with silent_host() as url:
        started = time.monotonic()
        with pytest.raises(RedditUnreachableError) as caught:
            extract(reddit, url=url, timeout_seconds=10, unreachable_after_seconds=1.5)
        assert time.monotonic() - started < 3
    assert url in str(caught.value)
