"""Extraction of new posts and comments with the real asyncpraw against the fake Reddit."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fake_reddit import FakeReddit, auth_for, fast_options
from pydantic import SecretStr

from tasks.extract.reddit_api import (
    RedditAuthError,
    RedditGaveUpError,
    SubredditExtract,
    extract_api,
    run_extract,
)

START = 1_700_000_000.0


@pytest.fixture
def reddit() -> Iterator[FakeReddit]:
    with FakeReddit(limit=30, window=2.0) as server:
        yield server


def seed(server: FakeReddit, sub: str = "python", posts: int = 250, comments: int = 180) -> None:
    made = server.add_posts(sub, posts, START)
    server.add_comments(sub, made[0], comments, START + 3)


def extract(server: FakeReddit, subs: list[str], **kwargs: Any) -> list[SubredditExtract]:
    kwargs.setdefault("options", fast_options())
    return asyncio.run(
        extract_api(
            auth_for(server),
            subs,
            kwargs.pop("kinds", ["posts", "comments"]),
            kwargs.pop("watermarks", {}),
            base_url=server.url,
            **kwargs,
        )
    )


def by_key(results: list[SubredditExtract]) -> dict[tuple[str, str], SubredditExtract]:
    return {(r.subreddit, r.kind): r for r in results}


def assert_exactly(result: SubredditExtract, expected: list[dict[str, Any]]) -> None:
    """Every expected item once, byte for byte as the server sent it, and nothing else."""
    got = [json.loads(line) for line in result.lines]
    names = [d["name"] for d in got]
    assert len(names) == len(set(names)), "an item was emitted twice"
    assert sorted(names) == sorted(d["name"] for d in expected)
    assert sorted(got, key=lambda d: d["name"]) == sorted(expected, key=lambda d: d["name"])


def test_first_run_reads_every_post_and_comment_exactly_as_sent(reddit: FakeReddit) -> None:
    seed(reddit)
    results = by_key(extract(reddit, ["Python"]))
    posts, comments = results["python", "posts"], results["python", "comments"]
    assert_exactly(posts, reddit.content("python", "posts"))
    assert_exactly(comments, reddit.content("python", "comments"))
    newest = reddit.content("python", "posts")[0]
    assert posts.newest == (newest["created_utc"], newest["name"])
    assert posts.requests == 3 and posts.error is None


def test_raw_lines_keep_deleted_authors_and_unicode_unescaped(reddit: FakeReddit) -> None:
    seed(reddit, posts=10, comments=0)
    lines = by_key(extract(reddit, ["python"], kinds=["posts"]))["python", "posts"].lines
    expected = {
        d["name"]: json.dumps(d, ensure_ascii=False, separators=(",", ":")).encode()
        for d in reddit.content("python", "posts")
    }
    assert sorted(lines) == sorted(expected.values())
    assert any(b'"author":"[deleted]"' in line for line in lines)
    assert any("café ✓ 📈".encode() in line for line in lines)


def test_listing_stops_at_reddits_thousand_item_cap(reddit: FakeReddit) -> None:
    reddit.add_posts("python", 1150, START)
    result = by_key(extract(reddit, ["python"], kinds=["posts"]))["python", "posts"]
    assert len(result.lines) == 1000
    assert result.requests == 10


def test_listing_cut_by_the_cap_above_the_watermark_says_so(reddit: FakeReddit) -> None:
    old = reddit.add_posts("python", 50, START)
    first = by_key(extract(reddit, ["python"], kinds=["posts"]))["python", "posts"]
    assert not first.ended_early  # a first run has no watermark to fall short of
    new = reddit.add_posts("python", 1150, START + 3600, step=10)
    marks = {("python", "posts"): first.newest}
    second = by_key(extract(reddit, ["python"], kinds=["posts"], watermarks=marks))[
        "python", "posts"
    ]
    assert second.ended_early
    assert second.items_paged == len(second.lines) == 1000
    # The 150 oldest new posts are beyond the cap: they lie between the two reported times.
    missed = new[:150]
    assert second.watermark_utc == old[-1]["created_utc"]
    assert second.oldest_read == new[150]["created_utc"]
    assert all(second.watermark_utc < p["created_utc"] < second.oldest_read for p in missed)


def test_listing_that_reaches_the_watermark_or_its_end_is_not_flagged(reddit: FakeReddit) -> None:
    reddit.add_posts("python", 30, START)
    first = by_key(extract(reddit, ["python"], kinds=["posts"]))["python", "posts"]
    reddit.add_posts("python", 400, START + 3600, step=10)
    marks = {("python", "posts"): first.newest}
    # Reaches the watermark (overlap 0): nothing is missing.
    reached = by_key(
        extract(reddit, ["python"], kinds=["posts"], watermarks=marks, overlap_seconds=0)
    )["python", "posts"]
    assert len(reached.lines) == 400 and not reached.ended_early
    # The whole small listing lies inside a long overlap and simply ends: not Reddit's cap.
    inside = by_key(
        extract(reddit, ["python"], kinds=["posts"], watermarks=marks, overlap_seconds=1e6)
    )["python", "posts"]
    assert len(inside.lines) == 430 and not inside.ended_early


def test_second_run_from_watermark_reads_only_new_items(reddit: FakeReddit) -> None:
    seed(reddit)
    first = by_key(extract(reddit, ["python"]))
    marks = {key: r.newest for key, r in first.items() if r.newest}
    last_post = reddit.content("python", "posts")[0]
    new_posts = reddit.add_posts("python", 30, last_post["created_utc"] + 60)
    before = reddit.stats.api_requests
    second = by_key(extract(reddit, ["python"], watermarks=marks, overlap_seconds=0))
    assert_exactly(second["python", "posts"], new_posts)
    assert_exactly(second["python", "comments"], [])
    # Posts: the page with the new ones, then one wholly older page to be sure (pages can
    # hold items moved from others); comments: one page, all older.
    assert reddit.stats.api_requests - before == 3
    assert second["python", "posts"].newest == (new_posts[-1]["created_utc"], new_posts[-1]["name"])


def test_late_item_inside_the_overlap_is_picked_up_by_the_next_run(reddit: FakeReddit) -> None:
    seed(reddit, posts=400, comments=0)
    first = by_key(extract(reddit, ["python"], kinds=["posts"]))["python", "posts"]
    assert first.newest is not None
    late = reddit.add_posts("python", 1, first.newest[0] - 300)  # created before the watermark
    second = by_key(
        extract(
            reddit,
            ["python"],
            kinds=["posts"],
            watermarks={("python", "posts"): first.newest},
            overlap_seconds=600,
        )
    )["python", "posts"]
    names = {json.loads(line)["name"] for line in second.lines}
    assert late[0]["name"] in names
    in_overlap = [
        d for d in reddit.content("python", "posts") if d["created_utc"] > first.newest[0] - 600
    ]
    assert_exactly(second, in_overlap)
    assert second.requests == 2  # the page reaching the floor, then a wholly older one


def test_missing_private_banned_and_quarantined_subreddits_are_reported_while_others_go_on(
    reddit: FakeReddit,
) -> None:
    seed(reddit, posts=50, comments=0)
    reddit.unavailable.update({"hidden": "private", "gone": "banned", "edgy": "quarantined"})
    for name in ("hidden", "gone", "edgy"):
        reddit.add_subreddit(name)
    results = by_key(
        extract(reddit, ["python", "hidden", "gone", "edgy", "nosuchsub"], kinds=["posts"])
    )
    assert_exactly(results["python", "posts"], reddit.content("python", "posts"))
    assert results["hidden", "posts"].error == "r/hidden posts: subreddit is private (403)"
    assert results["gone", "posts"].error == "r/gone posts: subreddit is banned (404)"
    assert results["edgy", "posts"].error == "r/edgy posts: subreddit is quarantined (403)"
    error = results["nosuchsub", "posts"].error
    assert error is not None and error.startswith("r/nosuchsub posts: subreddit not found")
    assert all(results[s, "posts"].lines == [] for s in ("hidden", "gone", "edgy", "nosuchsub"))


def test_invalid_subreddit_name_is_refused_before_any_request(reddit: FakeReddit) -> None:
    with pytest.raises(ValueError, match="not valid subreddit names"):
        extract(reddit, ["python", "no spaces/allowed"])
    assert reddit.stats.api_requests == 0 and reddit.stats.token_requests == 0


def test_bad_client_secret_fails_fast_naming_the_source_without_the_secret(
    reddit: FakeReddit,
) -> None:
    seed(reddit, posts=10, comments=0)
    secret = "wr0ng-s3cret-value"
    auth = auth_for(reddit, client_secret=SecretStr(secret), source="Prefect block 'reddit-prod'")
    started = time.monotonic()
    with pytest.raises(RedditAuthError) as caught:
        asyncio.run(
            extract_api(auth, ["python", "other"], ["posts", "comments"], {}, base_url=reddit.url)
        )
    assert time.monotonic() - started < 2
    message = str(caught.value)
    assert "Prefect block 'reddit-prod'" in message and "401" in message
    assert secret not in message and secret not in repr(caught.value)
    assert reddit.stats.api_requests == 0
    # The four listings wait behind the first token request and do not repeat it.
    assert reddit.stats.token_requests == 1


def test_wrong_script_app_password_fails_fast_without_the_password(reddit: FakeReddit) -> None:
    password = "n0t-the-password"
    auth = auth_for(reddit, username=reddit.username, password=SecretStr(password))
    with pytest.raises(RedditAuthError, match="username and password") as caught:
        asyncio.run(extract_api(auth, ["python"], ["posts"], {}, base_url=reddit.url))
    assert password not in str(caught.value)


def test_script_app_with_right_password_reads_posts(reddit: FakeReddit) -> None:
    seed(reddit, posts=20, comments=0)
    auth = auth_for(reddit, username=reddit.username, password=SecretStr(reddit.password))
    results = asyncio.run(extract_api(auth, ["python"], ["posts"], {}, base_url=reddit.url))
    assert_exactly(results[0], reddit.content("python", "posts"))


@pytest.mark.parametrize(
    ("fault", "extra"),
    [
        ("429", {"retry_after": 0.3}),
        ("500", {}),
        ("503", {}),
        ("hang", {"hang_seconds": 1.5}),
        ("truncated", {}),
        ("malformed", {}),
    ],
)
def test_under_fault_extracted_data_equals_server_content(
    reddit: FakeReddit, fault: str, extra: dict[str, float]
) -> None:
    seed(reddit, sub="python")
    seed(reddit, sub="rust", posts=120, comments=90)
    reddit.inject(fault, path="/new", times=2, **extra)
    reddit.inject(fault, path="/comments", times=1, **extra)
    results = by_key(extract(reddit, ["python", "rust"]))
    for sub in ("python", "rust"):
        for kind in ("posts", "comments"):
            assert_exactly(results[sub, kind], reddit.content(sub, kind))
    assert all(f.times == 0 for f in reddit.faults)


def test_persistent_server_errors_give_up_with_a_clear_message(reddit: FakeReddit) -> None:
    seed(reddit, posts=10, comments=0)
    reddit.inject("503", path="/new", times=100)
    with pytest.raises(
        RedditGaveUpError, match=r"GET /r/python/new: gave up after 3 attempts.*503"
    ):
        extract(reddit, ["python"], kinds=["posts"], options=fast_options(max_attempts=3))


def test_run_extract_is_a_synchronous_entry_point(reddit: FakeReddit) -> None:
    seed(reddit, posts=15, comments=0)
    results = run_extract(
        auth_for(reddit), ["python"], ["posts"], {}, base_url=reddit.url, options=fast_options()
    )
    assert_exactly(results[0], reddit.content("python", "posts"))


@pytest.mark.parametrize(
    ("problem", "reason"),
    [
        ("missing_created", "missing created_utc"),
        ("null_created", "null created_utc"),
        ("text_created", "non-numeric created_utc"),
        ("more", "a 'more' stub, not an item"),
    ],
)
def test_a_malformed_item_is_rejected_with_its_reason_and_the_rest_of_its_page_kept(
    reddit: FakeReddit, problem: str, reason: str
) -> None:
    seed(reddit, posts=250, comments=0)
    bad = reddit.splice("python", "posts", 150, problem)
    started = time.monotonic()
    result = by_key(extract(reddit, ["python"], kinds=["posts"]))["python", "posts"]
    assert time.monotonic() - started < 5, "a bad item is no reason to retry its page"
    assert_exactly(result, reddit.content("python", "posts"))
    [rejected] = result.rejected
    assert rejected.reason == reason
    assert json.loads(rejected.raw) == bad
    assert rejected.fullname == bad["data"]["name"] and rejected.position == 151
    assert result.requests == 3 and result.gap is None


def test_a_string_score_is_kept_for_staging_to_coerce(reddit: FakeReddit) -> None:
    seed(reddit, posts=20, comments=0)
    odd = reddit.splice("python", "posts", 5, "string_score")
    result = by_key(extract(reddit, ["python"], kinds=["posts"]))["python", "posts"]
    assert not result.rejected
    assert odd["data"]["name"] in {json.loads(line)["name"] for line in result.lines}


def test_a_vanished_anchor_on_a_first_run_is_resumed_and_every_item_read(
    reddit: FakeReddit,
) -> None:
    posts = reddit.add_posts("python", 400, START)
    reddit.delete_anchors = 1  # the last post of page 1 is deleted before page 2 is asked
    result = by_key(extract(reddit, ["python"], kinds=["posts"]))["python", "posts"]
    names = {json.loads(line)["name"] for line in result.lines}
    assert names == {p["name"] for p in posts}, "every post, the deleted one read on page 1"
    [resumed] = result.resumed
    assert resumed.stopped_at == posts[-100]["name"] and resumed.vanished
    assert resumed.resumed_after == posts[-99]["name"]
    assert result.gap is None and not result.holds_watermark


def test_anchors_vanishing_on_every_page_are_each_resumed(reddit: FakeReddit) -> None:
    posts = reddit.add_posts("python", 900, START)
    reddit.delete_anchors = 20
    result = by_key(extract(reddit, ["python"], kinds=["posts"]))["python", "posts"]
    assert {json.loads(line)["name"] for line in result.lines} == {p["name"] for p in posts}
    assert len(result.resumed) >= 8 and result.gap is None


def test_a_listing_reddit_ends_above_the_watermark_is_resumed_after_its_last_item(
    reddit: FakeReddit,
) -> None:
    old = reddit.add_posts("python", 50, START)
    marks = {("python", "posts"): (old[-1]["created_utc"], old[-1]["name"])}
    new = reddit.add_posts("python", 300, START + 86400)
    reddit.end_early = 1  # page 1 says the listing ends there
    result = by_key(
        extract(reddit, ["python"], kinds=["posts"], watermarks=marks, overlap_seconds=0)
    )["python", "posts"]
    assert {json.loads(line)["name"] for line in result.lines} == {p["name"] for p in new}
    [resumed] = result.resumed
    assert not resumed.vanished and resumed.stopped_at == resumed.resumed_after
    assert result.gap is None


def test_a_first_run_that_reddit_ends_on_a_full_page_is_resumed(reddit: FakeReddit) -> None:
    posts = reddit.add_posts("python", 250, START)
    reddit.end_early = 1
    result = by_key(extract(reddit, ["python"], kinds=["posts"]))["python", "posts"]
    assert {json.loads(line)["name"] for line in result.lines} == {p["name"] for p in posts}
    assert len(result.resumed) == 1 and result.gap is None


def test_a_short_first_listing_costs_one_request(reddit: FakeReddit) -> None:
    reddit.add_posts("python", 30, START)
    result = by_key(extract(reddit, ["python"], kinds=["posts"]))["python", "posts"]
    assert result.requests == 1 and result.gap is None and not result.resumed


def test_a_listing_that_ends_early_and_cannot_be_resumed_holds_its_watermark(
    reddit: FakeReddit,
) -> None:
    old = reddit.add_posts("python", 50, START)
    marks = {("python", "posts"): (old[-1]["created_utc"], old[-1]["name"])}
    reddit.add_posts("python", 400, START + 86400)
    # Every item of a page is deleted once it was served: no anchor on it can resume paging.
    reddit.delete_pages = 1
    first = by_key(extract(reddit, ["python"], kinds=["posts"]))["python", "posts"]
    assert first.gap == "ended" and first.holds_watermark
    reddit.delete_pages = 1
    second = by_key(extract(reddit, ["python"], kinds=["posts"], watermarks=marks))[
        "python", "posts"
    ]
    assert second.gap == "ended" and second.holds_watermark
    assert len(second.lines) == 100 and second.watermark_utc == old[-1]["created_utc"]


def test_an_incremental_run_whose_items_moved_across_pages_loses_none(
    reddit: FakeReddit,
) -> None:
    old = reddit.add_posts("python", 300, START)
    marks = {("python", "posts"): (old[-1]["created_utc"], old[-1]["name"])}
    new = reddit.add_posts("python", 250, START + 86400)
    # An old post shows on the first page and a new one far down (Reddit's listings are
    # built from caches that can disagree): paging must not stop at the first old item.
    reddit.swaps = [(10, 300), (60, 420)]
    result = by_key(
        extract(reddit, ["python"], kinds=["posts"], watermarks=marks, overlap_seconds=0)
    )["python", "posts"]
    names = {json.loads(line)["name"] for line in result.lines}
    assert names == {p["name"] for p in new}
    assert result.gap is None


@pytest.mark.parametrize("fault", ["delete_anchors", "end_early", "delete_pages"])
def test_an_old_item_on_the_first_page_does_not_end_a_listing_that_breaks_there(
    reddit: FakeReddit, fault: str
) -> None:
    """Found by the generated run sequences: an item older than the watermark on page 1
    (moved there, or a late one) counted as having reached it, so when the anchor vanished
    or Reddit ended the listing after that page, paging stopped and the 150 new posts
    behind it were lost with the watermark moved past them."""
    old = reddit.add_posts("python", 300, START)
    marks = {("python", "posts"): (old[-1]["created_utc"], old[-1]["name"])}
    new = reddit.add_posts("python", 250, START + 86400)
    reddit.swaps = [(10, 260)]  # an old post on page 1, its new one on page 3
    setattr(reddit, fault, 1)
    result = by_key(
        extract(reddit, ["python"], kinds=["posts"], watermarks=marks, overlap_seconds=0)
    )["python", "posts"]
    names = {json.loads(line)["name"] for line in result.lines}
    if fault == "delete_pages":
        # Nothing leads past a page deleted whole: 99 new posts read, and a gap that holds.
        assert len(names) == 99 and result.gap == "ended" and result.holds_watermark
    else:
        assert names == {p["name"] for p in new}
        assert result.gap is None and len(result.resumed) == 1


def test_a_renamed_subreddit_is_reported_as_redirected_not_missing(reddit: FakeReddit) -> None:
    seed(reddit, posts=10, comments=0)
    reddit.add_posts("newname", 5, START)
    reddit.redirects["oldname"] = "NewName"
    results = by_key(extract(reddit, ["oldname", "nosuchsub"], kinds=["posts"]))
    error = results["oldname", "posts"].error
    assert error is not None and "not found" not in error
    assert "redirected to r/NewName" in error and "--subreddit NewName" in error
    missing = results["nosuchsub", "posts"].error
    assert missing is not None and "not found" in missing


def test_a_subreddit_redirected_to_its_own_spelling_is_read_there(reddit: FakeReddit) -> None:
    posts = reddit.add_posts("python", 30, START)
    reddit.redirects["python"] = "Python"
    result = by_key(extract(reddit, ["python"], kinds=["posts"]))["python", "posts"]
    assert result.error is None
    assert_exactly(result, posts)
