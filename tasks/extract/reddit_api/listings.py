"""New posts and comments of many subreddits, read concurrently down to their watermarks."""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass, field
from typing import Any

from tasks.extract.reddit_api import settings
from tasks.extract.reddit_api.client import LISTING_REDIRECT, ClientOptions, RedditClient, run_all
from tasks.extract.reddit_api.credentials import RedditAuth
from tasks.extract.reddit_api.errors import RedditRedirectedError, RedditUnavailableError
from tasks.extract.reddit_api.ratelimit import SharedRateLimiter
from tasks.extract.reddit_api.things import (
    Watermark,
    check_listing,
    children,
    created_of,
    newer_mark,
    order_key,
    raw_line,
    unusable_reason,
)
from tasks.settings import SUBREDDIT_PATTERN

# The `kind` of the things each listing holds.
THING_KINDS = {"posts": "t3", "comments": "t1"}


# Why a listing ended before it reached the watermark (SubredditExtract.gap).
GAP_CAP = "cap"  # Reddit's ~1000-item cap: only a dump can fill what lies beyond it
GAP_ENDED = "ended"  # ended early and could not be resumed: the watermark must stay


@dataclass(frozen=True)
class RejectedItem:
    """A listing child that cannot be kept (no usable created_utc, a `more` stub, ...)."""

    position: int  # 1-based place in the listing as paged
    fullname: str | None
    reason: str
    raw: str  # the child's JSON as received, kind included


@dataclass(frozen=True)
class Resumed:
    """Paging went on after an older item already seen, because the `after` anchor vanished
    between two pages (deleted or removed: Reddit answers an empty page for it), or because
    Reddit ended the listing early (`vanished` False)."""

    stopped_at: str
    resumed_after: str
    vanished: bool = True


@dataclass
class SubredditExtract:
    """What one listing gave: raw lines plus the candidate watermark the flow commits later."""

    subreddit: str
    kind: str
    lines: list[bytes]
    newest: Watermark | None
    requests: int
    error: str | None = None
    # Why the subreddit cannot be read (missing, private, banned, redirected), without its
    # name and kind, so a caller can report both kinds of one subreddit in one line.
    unavailable: str | None = None
    # Set when paging ended before it reached the watermark (GAP_CAP), or ended early and
    # could not be resumed (GAP_ENDED, with or without a watermark): items between may be
    # missing. A GAP_ENDED listing must not move its watermark (see holds_watermark).
    gap: str | None = None
    items_paged: int = 0
    oldest_read: float | None = None
    watermark_utc: float | None = None
    rejected: list[RejectedItem] = field(default_factory=list)
    resumed: list[Resumed] = field(default_factory=list)

    @property
    def ended_early(self) -> bool:
        return self.gap is not None

    @property
    def holds_watermark(self) -> bool:
        """Whether the watermark must stay where it is: a listing that ended early below the
        cap may come back whole next time, and a moved watermark would skip what it missed."""
        return self.gap == GAP_ENDED


@dataclass
class _Cursor:
    """Where paging stops: items at or below the floor were read by an earlier run."""

    watermark: Watermark | None
    overlap_seconds: float
    seen: dict[str, bytes] = field(default_factory=dict)
    newest: Watermark | None = None
    oldest: float | None = None
    # Saw the watermark's item or an older one: everything newer has been listed.
    reached: bool = False

    def wanted(self, created: float, name: str) -> bool:
        """New since the watermark, or inside the overlap where late items can appear."""
        if self.watermark is None:
            return True
        if order_key(created, name) <= order_key(*self.watermark):
            self.reached = True
        return created > self.watermark[0] - self.overlap_seconds or order_key(
            created, name
        ) > order_key(*self.watermark)


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


@dataclass
class _Pager:
    """Pages one listing with `after`, keeping what each page gives in listing order."""

    client: RedditClient
    path: str
    thing_kind: str
    cursor: _Cursor
    requests: int = 0
    order: list[str] = field(default_factory=list)
    known: set[str] = field(default_factory=set)
    rejected: list[RejectedItem] = field(default_factory=list)
    resumed: list[Resumed] = field(default_factory=list)
    tried: set[str] = field(default_factory=set)
    tries_left: int = settings.RESUME_TRIES

    async def page(self, after: str | None) -> tuple[list[Any], str | None]:
        params: dict[str, str | int] = {"limit": settings.PAGE_SIZE}
        if after:
            params["after"] = after
        payload = await self.client.get(self.path, params, check=check_listing)
        self.requests += 1
        return children(payload), payload["data"].get("after")

    def take(self, things: list[Any]) -> tuple[int, bool]:
        """Keep the wanted items of one page; return how many items were new to this read and
        whether the whole page was older than the watermark.

        Reddit's pages are not strictly ordered (late items, items moved between pages), so
        one old item on a page does not mean the rest of the listing is old.
        """
        fresh = usable = older = 0
        for child in things:
            if reason := unusable_reason(child, self.thing_kind):
                self._reject(child, reason)
                continue
            data = child["data"]
            name, created = data["name"], created_of(data)
            assert created is not None
            usable += 1
            if name not in self.known:
                fresh += 1
                self.known.add(name)
                self.order.append(name)
            cursor = self.cursor
            cursor.newest = newer_mark(cursor.newest, (created, name))
            cursor.oldest = created if cursor.oldest is None else min(cursor.oldest, created)
            if not cursor.wanted(created, name):
                older += 1
                continue
            cursor.seen.setdefault(name, raw_line(data))
        return fresh, usable > 0 and older == usable

    def _reject(self, child: Any, reason: str) -> None:
        data = child.get("data") if isinstance(child, dict) else None
        name = data.get("name") if isinstance(data, dict) else None
        raw = json.dumps(child, ensure_ascii=False, separators=settings.JSON_SEPARATORS)
        if any(r.raw == raw for r in self.rejected):
            return  # the same child again, on a page read twice after a vanished anchor
        position = len(self.order) + len(self.rejected) + 1
        fullname = name if isinstance(name, str) else None
        self.rejected.append(RejectedItem(position, fullname, reason, raw))

    @property
    def at_cap(self) -> bool:
        """Ended in the last page before Reddit's ~1000-item cap."""
        return len(self.order) + len(self.rejected) > settings.LISTING_CAP - settings.PAGE_SIZE

    def anchor_before(self, anchor: str | None) -> str | None:
        """The next older-seen item to resume from: the one listed just before `anchor`
        (the last seen item when there is none), skipping anchors already tried."""
        end = self.order.index(anchor) if anchor in self.order else len(self.order)
        for name in reversed(self.order[:end]):
            if name not in self.tried:
                return name
        return None


async def read_listing(
    client: RedditClient, subreddit: str, kind: str, cursor: _Cursor, spelled: str | None = None
) -> SubredditExtract:
    """Page with `after` from the newest item down to the watermark (or the ~1000 cap).

    Paging stops at the watermark only on a page whose every item is older. A listing that
    ends before that, below the cap, is suspect: the `after` anchor may have been deleted
    between two pages (Reddit then answers an empty page), or Reddit ended it early. Paging
    then resumes after an older item already seen, trying up to settings.RESUME_TRIES of them
    for each gap.
    """
    path = settings.LISTING_PATHS[kind].format(sub=spelled or subreddit)
    pager = _Pager(client, path, THING_KINDS[kind], cursor)
    after: str | None = None
    resuming: str | None = None  # where the listing stopped, while paging from an older item
    vanished = unresolved = False
    while True:
        things, next_after = await pager.page(after)
        fresh, older = pager.take(things)
        if resuming is not None:
            if not things:  # this anchor is gone too (or nothing follows it): try older
                after = _next_try(pager, after)
                if after is None:
                    # Out of tries: items lie beyond a vanished anchor that none could reach;
                    # after an end Reddit declared, nothing follows its last item.
                    unresolved = vanished
                    break
                continue
            if not fresh:
                break  # only items already read follow the anchor: the listing did end there
            pager.resumed.append(Resumed(resuming, str(after), vanished))
            resuming = None
        if older or pager.at_cap or (things and not fresh):
            # A page of items all read already means Reddit repeats itself (a stale
            # `after`): nothing new lies further, and paging on would never end.
            break
        if next_after and things:
            after = next_after
            continue
        # The listing says it ended. A short last page is a real end, unless it ends above
        # the watermark; an empty page after an anchor or a full last page is worth one
        # more look, even when an item at or below the watermark was seen: pages are not
        # strictly ordered, so a late or moved item says nothing of what lies beyond.
        vanished = bool(after) and not things
        full = len(things) >= settings.PAGE_SIZE
        above = cursor.watermark is not None and not cursor.reached
        if not (vanished or full or above):
            break
        resuming = after if vanished else (pager.order[-1] if pager.order else None)
        # After a vanished anchor, older ones may have gone too; after an end Reddit
        # declared, the last item is still there, and an empty page after it is the end.
        pager.tries_left = settings.RESUME_TRIES if vanished else 1
        after = _next_try(pager, after if vanished else None)
        if resuming is None or after is None:
            unresolved = vanished
            break
    return SubredditExtract(
        subreddit=subreddit,
        kind=kind,
        lines=list(cursor.seen.values()),
        newest=cursor.newest,
        requests=pager.requests,
        gap=_gap(pager, cursor, unresolved),
        items_paged=len(pager.order),
        oldest_read=cursor.oldest,
        watermark_utc=cursor.watermark[0] if cursor.watermark else None,
        rejected=pager.rejected,
        resumed=pager.resumed,
    )


def _next_try(pager: _Pager, anchor: str | None) -> str | None:
    """The next anchor to resume from, while this gap has tries left."""
    if pager.tries_left <= 0:
        return None
    name = pager.anchor_before(anchor)
    if name is not None:
        pager.tried.add(name)
        pager.tries_left -= 1
    return name


def _gap(pager: _Pager, cursor: _Cursor, unresolved: bool) -> str | None:
    """Why the listing fell short, or None when it was read whole (down to the watermark, or
    to its real end). A vanished anchor nothing could get past is a gap even when an old
    item was seen before it: what followed it is unknown."""
    if unresolved:
        return GAP_ENDED
    if cursor.reached or cursor.watermark is None:
        return None
    return GAP_CAP if pager.at_cap else GAP_ENDED


async def _extract_one(
    client: RedditClient,
    subreddit: str,
    kind: str,
    watermark: Watermark | None,
    overlap_seconds: float,
) -> SubredditExtract:
    cursor = _Cursor(watermark=watermark, overlap_seconds=overlap_seconds)
    try:
        try:
            return await read_listing(client, subreddit, kind, cursor)
        except RedditRedirectedError as exc:
            # We ask in lower case; a subreddit Reddit writes otherwise may be redirected to
            # its own spelling, which is the same subreddit: read it there.
            match = LISTING_REDIRECT.match(exc.location)
            if not match or match[1].lower() != subreddit or match[1] == subreddit:
                raise
            return await read_listing(client, subreddit, kind, cursor, spelled=match[1])
    except RedditUnavailableError as exc:
        return SubredditExtract(
            subreddit=subreddit,
            kind=kind,
            lines=[],
            newest=None,
            requests=0,
            error=f"r/{subreddit} {kind}: subreddit {exc}",
            unavailable=f"subreddit {exc}",
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
