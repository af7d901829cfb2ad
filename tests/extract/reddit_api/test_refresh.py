"""Refreshing recent posts through /api/info, and whole comment trees through morechildren."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pytest
from fake_reddit import FakeReddit, auth_for, fast_options

from tasks.extract.reddit_api import fetch_comment_trees, posts_to_refresh, refresh_posts

START = 1_700_000_000.0


@pytest.fixture
def reddit() -> Iterator[FakeReddit]:
    with FakeReddit(limit=30, window=2.0) as server:
        yield server


def test_refresh_reads_current_state_in_batches_of_one_hundred(reddit: FakeReddit) -> None:
    posts = reddit.add_posts("python", 250, START)
    for post in posts[:10]:
        post["score"] = 999
        post["removed_by_category"] = "moderator"
    names = [p["name"] for p in posts] + [posts[0]["name"]]  # a duplicate is read once
    lines = asyncio.run(
        refresh_posts(auth_for(reddit), names, base_url=reddit.url, options=fast_options())
    )
    assert [json.loads(line) for line in lines] == posts
    assert reddit.stats.paths.count("/api/info") == 3


def test_refresh_survives_a_server_error_without_losing_a_batch(reddit: FakeReddit) -> None:
    posts = reddit.add_posts("python", 150, START)
    reddit.inject("500", path="/api/info", times=1)
    lines = asyncio.run(
        refresh_posts(
            auth_for(reddit),
            [p["name"] for p in posts],
            base_url=reddit.url,
            options=fast_options(),
        )
    )
    assert sorted(json.loads(line)["name"] for line in lines) == sorted(p["name"] for p in posts)


def test_refresh_refuses_something_that_is_not_a_fullname(reddit: FakeReddit) -> None:
    with pytest.raises(ValueError, match="fullnames"):
        asyncio.run(refresh_posts(auth_for(reddit), ["t3_abc", "abc; drop"], base_url=reddit.url))


def test_posts_older_than_the_refresh_age_are_left_alone() -> None:
    now = START + 10 * 86400
    posts = [("t3_old", now - 4 * 86400), ("t3_new", now - 2 * 86400)]
    assert posts_to_refresh(posts, now=now) == ["t3_new"]
    assert posts_to_refresh(posts, max_age_seconds=5 * 86400, now=now) == ["t3_old", "t3_new"]


def test_comment_trees_expand_every_more_stub_once_one_morechildren_at_a_time(
    reddit: FakeReddit,
) -> None:
    reddit.max_depth = 2  # so the first page has "continue this thread" stubs
    posts = reddit.add_posts("python", 3, START)
    trees = {p["name"]: reddit.add_comments("python", p, 260, START + 5) for p in posts}
    result = asyncio.run(
        fetch_comment_trees(
            auth_for(reddit),
            [p["id"] for p in posts],
            base_url=reddit.url,
            options=fast_options(),
        )
    )
    for name, comments in trees.items():
        got = [json.loads(line) for line in result[name]]
        assert len(got) == len({c["name"] for c in got}) == len(comments)
        # As sent, except nested replies, each of which is its own line; `depth` is only
        # present on comments rendered in a tree, as on Reddit.
        stored = {c["name"]: {**c, "replies": ""} for c in comments}
        assert all({k: v for k, v in c.items() if k != "depth"} == stored[c["name"]] for c in got)
    assert reddit.stats.morechildren_overlaps == 0
    assert reddit.stats.paths.count("/api/morechildren") >= 3 * 3
    continued = [p for p in reddit.stats.paths if p.startswith("/comments/")]
    assert len(continued) > 3, "deep threads should be read through 'continue this thread'"
