"""A fake Reddit that speaks the real wire protocol, for the real asyncpraw (and praw) to talk to.

It runs an aiohttp app on 127.0.0.1 (random port) in a background thread, so synchronous code
(praw, asyncio.run) and async code can both use it. It enforces Reddit's fixed-window rate limit
with the X-Ratelimit-* headers (window and limit scaled down for tests), answers 429 past the
limit, and serves listings, /api/info, comment trees and /api/morechildren in Reddit's JSON
shapes. Faults are switched on per test with `inject`.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import socket
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

LISTING_CAP = 1000
SECRET_TOKEN = "fake-access-token"
RATELIMIT = web.RequestKey("ratelimit", dict)
# Subreddits that exist but cannot be read, with the bodies Reddit sends for them.
UNAVAILABLE = {
    "banned": (404, {"reason": "banned", "message": "Not Found", "error": 404}),
    "private": (403, {"reason": "private", "message": "Forbidden", "error": 403}),
    "quarantined": (
        403,
        {
            "reason": "quarantined",
            "quarantine_message": "...",
            "message": "Forbidden",
            "error": 403,
        },
    ),
}


@dataclass
class Fault:
    """The next `times` requests whose path contains `path` get this fault instead."""

    # "429", "500", "503", "hang", "truncated", "malformed"; "401": 401 without a
    # www-authenticate header; "exhausted": a normal answer whose headers say the window is
    # used up (X-Ratelimit-Remaining 0) and resets in `reset` seconds.
    kind: str
    path: str = ""
    times: int = 1
    retry_after: float = 1.0
    hang_seconds: float = 2.0
    reset: float = 600.0
    skip: int = 0  # let this many matching requests through first


@dataclass
class Stats:
    """What the server saw; tests and the benchmark read it."""

    api_requests: int = 0
    token_requests: int = 0
    rate_limited: int = 0
    listing_requests: int = 0
    listing_items: int = 0
    # Items per listing page, and whether more pages followed (a page that is not the last).
    listing_pages: list[tuple[int, bool]] = field(default_factory=list)
    morechildren_overlaps: int = 0
    windows: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    paths: list[str] = field(default_factory=list)


class FakeReddit:
    """Server state plus the thread that serves it; use as a context manager."""

    def __init__(
        self,
        *,
        limit: int = 30,
        window: float = 2.0,
        client_id: str = "fake-client",
        client_secret: str = "fake-secret",
        username: str = "fake_user",
        password: str = "fake-password",
    ) -> None:
        self.limit, self.window = limit, window
        self.client_id, self.client_secret = client_id, client_secret
        self.username, self.password = username, password
        self.stats = Stats()
        self.faults: list[Fault] = []
        self.subreddits: dict[str, dict[str, list[dict[str, Any]]]] = {}
        self.unavailable: dict[str, str] = {}
        self.comments_by_post: dict[str, list[dict[str, Any]]] = defaultdict(list)
        # Listing switches. Pages after which their `after` anchor is deleted (before the
        # next page is asked for); listing positions swapped (items moved across pages);
        # raw children spliced in at listing positions (malformed items, `more` stubs);
        # subreddits (as written in the request) redirected to another name.
        self.delete_anchors = 0
        self.delete_pages = 0  # the same, but every item of the page is deleted
        self.end_early = 0  # pages that say `after: null` though more items follow
        self.swaps: list[tuple[int, int]] = []
        self.spliced: dict[tuple[str, str], list[tuple[int, dict[str, Any]]]] = defaultdict(list)
        self.redirects: dict[str, str] = {}
        self.first_page = 20  # comments rendered by /comments/{id}; the rest are `more`
        self.max_depth = 4  # deeper replies hide behind "continue this thread"
        self._next_id = 36**5
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self._morechildren_busy = False
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self.url = ""

    # ---- lifecycle -----------------------------------------------------------------------
    def __enter__(self) -> FakeReddit:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/api/v1/access_token", self._token)
        for listing in ("new", "comments"):  # praw asks for these with a trailing slash
            app.router.add_get(f"/r/{{sub}}/{listing}", self._listing)
            app.router.add_get(f"/r/{{sub}}/{listing}/", self._listing)
        app.router.add_get("/api/info", self._info)
        app.router.add_get("/comments/{post}", self._thread_view)
        app.router.add_get("/api/morechildren", self._morechildren)
        app.router.add_get("/subreddits/search", self._search)
        self._runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"

    # ---- content -------------------------------------------------------------------------
    def new_id(self) -> str:
        with self._lock:
            self._next_id += 1
            return _base36(self._next_id)

    def add_subreddit(self, name: str) -> None:
        self.subreddits.setdefault(name.lower(), {"posts": [], "comments": []})

    def add_posts(self, sub: str, count: int, start: float, step: float = 10.0) -> list[dict]:
        """Posts created at start, start+step, ...; ids grow with time as on Reddit."""
        posts = [make_post(sub, self.new_id(), start + i * step, i) for i in range(count)]
        self.insert(sub, "posts", posts)
        return posts

    def add_comments(
        self, sub: str, post: dict[str, Any], count: int, start: float, step: float = 5.0
    ) -> list[dict]:
        """A comment tree: each comment replies to the post or to an earlier comment."""
        made: list[dict[str, Any]] = []
        for i in range(count):
            if i % 5 == 0 or not made:
                parent = post["name"]
            elif i % 5 == 4:
                parent = made[(i * 7) % len(made)]["name"]
            else:
                parent = made[-1]["name"]  # a chain of replies, for deep threads
            made.append(make_comment(sub, self.new_id(), post, parent, start + i * step, i))
        self.insert(sub, "comments", made)
        self.comments_by_post[post["id"]].extend(made)
        return made

    def insert(self, sub: str, kind: str, items: list[dict[str, Any]]) -> None:
        """Insert items (possibly created in the past: a late arrival) in listing order."""
        self.add_subreddit(sub)
        with self._lock:
            listing = self.subreddits[sub.lower()][kind]
            listing.extend(items)
            listing.sort(key=lambda d: (d["created_utc"], int(d["id"], 36)), reverse=True)

    def content(self, sub: str, kind: str) -> list[dict[str, Any]]:
        """What the listing can show: newest first, capped like Reddit's."""
        return self.subreddits[sub.lower()][kind][:LISTING_CAP]

    def splice(self, sub: str, kind: str, position: int, problem: str) -> dict[str, Any]:
        """Serve a bad child at `position` of a listing: 'missing_created', 'null_created',
        'text_created' (not a number), 'more' (a `more` stub) or 'string_score' (a good item
        whose score is a string). Returns the child."""
        child = bad_child(kind, sub, self.new_id(), problem)
        self.spliced[sub.lower(), kind].append((position, child))
        return child

    def served(self, sub: str, kind: str) -> list[dict[str, Any]]:
        """The listing as served now (see serve)."""
        return serve(self.content(sub, kind), kind, self.swaps, self.spliced[sub.lower(), kind])

    def snapshot(self) -> dict[str, Any]:
        """The content, to put back with restore() (tests sharing one server across
        generated examples start each from the same Reddit)."""
        with self._lock:
            return {
                "subreddits": {
                    sub: {kind: list(items) for kind, items in kinds.items()}
                    for sub, kinds in self.subreddits.items()
                },
                "comments_by_post": {k: list(v) for k, v in self.comments_by_post.items()},
                "next_id": self._next_id,
            }

    def restore(self, snapshot: dict[str, Any]) -> None:
        """Back to a snapshot's content, with every listing switch off."""
        with self._lock:
            self.subreddits = {
                sub: {kind: list(items) for kind, items in kinds.items()}
                for sub, kinds in snapshot["subreddits"].items()
            }
            self.comments_by_post = defaultdict(list)
            self.comments_by_post.update(
                {k: list(v) for k, v in snapshot["comments_by_post"].items()}
            )
            self._next_id = snapshot["next_id"]
        self.switches_off()

    def switches_off(self) -> None:
        """No more deleted anchors or pages, early ends, swaps or spliced children."""
        self.delete_anchors = self.delete_pages = self.end_early = 0
        self.swaps = []
        self.spliced.clear()

    def inject(self, kind: str, path: str = "", times: int = 1, **kwargs: float) -> None:
        self.faults.append(Fault(kind=kind, path=path, times=times, **kwargs))

    # ---- protocol ------------------------------------------------------------------------
    async def _token(self, request: web.Request) -> web.Response:
        self.stats.token_requests += 1
        form = await request.post()
        if _basic_auth(request) != (self.client_id, self.client_secret):
            return web.json_response({"message": "Unauthorized", "error": 401}, status=401)
        grant = form.get("grant_type")
        if grant == "password" and (form.get("username"), form.get("password")) != (
            self.username,
            self.password,
        ):
            return web.json_response({"error": "invalid_grant"})
        if grant not in ("password", "client_credentials"):
            return web.json_response({"error": "unsupported_grant_type"})
        return web.json_response(
            {
                "access_token": SECRET_TOKEN,
                "token_type": "bearer",
                "expires_in": 86400,
                "scope": "*",
            }
        )

    async def _gate(self, request: web.Request) -> web.StreamResponse | None:
        """Authorization, the rate limit and injected faults; None lets the request through."""
        if request.headers.get("Authorization") != f"bearer {SECRET_TOKEN}":
            return web.json_response({"message": "Unauthorized", "error": 401}, status=401)
        headers, allowed = self._count(request.path)
        if not allowed:
            self.stats.rate_limited += 1
            return web.json_response(
                {"message": "Too Many Requests", "error": 429}, status=429, headers=headers
            )
        fault = self._take_fault(request.path)
        if fault is not None and fault.kind == "exhausted":
            headers = {**headers, "x-ratelimit-remaining": "0.0"}
            headers["x-ratelimit-reset"] = f"{fault.reset:.0f}"
            fault = None
        if fault is None:
            request[RATELIMIT] = headers
            return None
        return await self._fault_response(request, fault, headers)

    def _count(self, path: str) -> tuple[dict[str, str], bool]:
        with self._lock:
            now = time.monotonic() - self._started
            index = int(now // self.window)
            used = self.stats.windows[index]
            allowed = used < self.limit
            if allowed:
                used += 1
                self.stats.windows[index] = used
                self.stats.api_requests += 1
                self.stats.paths.append(path)
            reset = math.ceil((index + 1) * self.window - now)
        headers = {
            "x-ratelimit-used": str(used),
            "x-ratelimit-remaining": f"{float(self.limit - used):.1f}",
            "x-ratelimit-reset": str(reset),
        }
        return headers, allowed

    def _take_fault(self, path: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.times > 0 and fault.path in path:
                    if fault.skip > 0:
                        fault.skip -= 1
                        return None
                    fault.times -= 1
                    return fault
        return None

    async def _fault_response(
        self, request: web.Request, fault: Fault, headers: dict[str, str]
    ) -> web.StreamResponse:
        if fault.kind == "429":
            self.stats.rate_limited += 1
            retry = {**headers, "Retry-After": f"{fault.retry_after:g}"}
            return web.json_response(
                {"message": "Too Many Requests", "error": 429}, status=429, headers=retry
            )
        if fault.kind == "401":
            # What Reddit sends for some refusals: no www-authenticate header, which
            # asyncprawcore's error mapping turns into KeyError(401).
            return web.json_response({"message": "Unauthorized", "error": 401}, status=401)
        if fault.kind in ("500", "503"):
            return web.json_response(
                {"message": "Server Error", "error": int(fault.kind)},
                status=int(fault.kind),
                headers=headers,
            )
        if fault.kind == "malformed":
            return web.Response(
                text='{"kind": "Listing", "data": {"chil',
                content_type="application/json",
                headers=headers,
            )
        if fault.kind == "hang":
            await asyncio.sleep(fault.hang_seconds)
            return web.json_response({"message": "too late"}, status=504, headers=headers)
        if fault.kind == "truncated":
            body = b'{"kind": "Listing", "data": {"after": null, "dist": 0, "children": []}}'
            response = web.StreamResponse(headers=headers)
            response.content_type = "application/json"
            response.content_length = len(body)
            await response.prepare(request)
            await response.write(body[: len(body) // 2])
            assert request.transport is not None
            request.transport.close()
            return response
        raise ValueError(f"unknown fault {fault.kind}")

    def _respond(self, request: web.Request, payload: Any) -> web.Response:
        return web.json_response(payload, headers=request.get(RATELIMIT, {}), dumps=_dumps)

    async def _listing(self, request: web.Request) -> web.StreamResponse:
        if (blocked := await self._gate(request)) is not None:
            return blocked
        sub = request.match_info["sub"].lower()
        headers = request[RATELIMIT]
        listing = request.path.rstrip("/").rsplit("/", 1)[1]
        if (target := self.redirects.get(request.match_info["sub"])) is not None:
            raise web.HTTPFound(f"/r/{target}/{listing}", headers=headers)
        if sub in self.unavailable:
            status, body = UNAVAILABLE[self.unavailable[sub]]
            return web.json_response(body, status=status, headers=headers)
        if sub not in self.subreddits:
            raise web.HTTPFound(f"/subreddits/search?q={sub}", headers=headers)
        kind = "posts" if listing == "new" else "comments"
        items = self.served(sub, kind)
        limit = min(100, int(request.query.get("limit", 25)))
        start = 0
        if after := request.query.get("after"):
            names = [c["data"].get("name") for c in items]
            start = names.index(after) + 1 if after in names else len(items)
        page = items[start : start + limit]
        more = start + limit < len(items)
        self.stats.listing_requests += 1
        self.stats.listing_items += len(page)
        self.stats.listing_pages.append((len(page), more))
        anchor = page[-1]["data"]["name"] if page and more else None
        if anchor and self.end_early > 0:
            self.end_early -= 1
            return self._respond(request, _listing(page, None, raw=True))
        if anchor and self.delete_anchors > 0:
            self.delete_anchors -= 1
            self.delete(sub, kind, anchor)
        if anchor and self.delete_pages > 0:
            self.delete_pages -= 1
            for child in page:
                self.delete(sub, kind, child["data"]["name"])
        return self._respond(request, _listing(page, anchor, raw=True))

    def delete(self, sub: str, kind: str, name: str) -> None:
        """Remove an item from its listing, as a deletion by its author does."""
        with self._lock:
            listing = self.subreddits[sub.lower()][kind]
            listing[:] = [d for d in listing if d["name"] != name]

    async def _search(self, request: web.Request) -> web.Response:
        return web.json_response(_listing([], None))

    async def _info(self, request: web.Request) -> web.StreamResponse:
        if (blocked := await self._gate(request)) is not None:
            return blocked
        wanted = request.query.get("id", "").split(",")
        by_name = {
            d["name"]: (("t3" if kind == "posts" else "t1"), d)
            for lists in self.subreddits.values()
            for kind, items in lists.items()
            for d in items
        }
        return self._respond(request, _listing([by_name[n] for n in wanted if n in by_name], None))

    async def _thread_view(self, request: web.Request) -> web.StreamResponse:
        if (blocked := await self._gate(request)) is not None:
            return blocked
        post_id = request.match_info["post"]
        comments = self.comments_by_post.get(post_id, [])
        post = next(d for s in self.subreddits.values() for d in s["posts"] if d["id"] == post_id)
        tree = CommentTree(comments, self.first_page, self.max_depth)
        root = request.query.get("comment")
        things = tree.render(f"t1_{root}" if root else post["name"], include_root=bool(root))
        return self._respond(
            request, [_listing([("t3", post)], None), _listing(things, None, raw=True)]
        )

    async def _morechildren(self, request: web.Request) -> web.StreamResponse:
        if self._morechildren_busy:
            self.stats.morechildren_overlaps += 1
        self._morechildren_busy = True
        try:
            if (blocked := await self._gate(request)) is not None:
                return blocked
            await asyncio.sleep(0.005)  # long enough for a second concurrent request to show
            link = request.query["link_id"].removeprefix("t3_")
            wanted = set(request.query["children"].split(","))
            things = [
                {"kind": "t1", "data": {**c, "replies": ""}}
                for c in self.comments_by_post.get(link, [])
                if c["id"] in wanted
            ]
            return self._respond(request, {"json": {"errors": [], "data": {"things": things}}})
        finally:
            self._morechildren_busy = False


class CommentTree:
    """Renders a post's comments as Reddit does: a first page nested, the rest behind stubs."""

    def __init__(self, comments: list[dict[str, Any]], first_page: int, max_depth: int) -> None:
        self.kids: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for c in comments:
            self.kids[c["parent_id"]].append(c)
        self.budget, self.max_depth = first_page, max_depth
        self.unrendered: list[str] = []

    def render(self, root: str, include_root: bool) -> list[dict[str, Any]]:
        if include_root:
            node = next(c for cs in self.kids.values() for c in cs if c["name"] == root)
            things = [self._node(node, 0)]
        else:
            things = [self._node(c, 0) for c in self.kids[root]]
        things = [t for t in things if t is not None]
        if self.unrendered:
            ids = self.unrendered
            things.append(_more(ids[0], root, ids))
        return things

    def _node(self, comment: dict[str, Any], depth: int) -> dict[str, Any] | None:
        if self.budget <= 0:
            self._hide(comment)
            return None
        self.budget -= 1
        kids = self.kids[comment["name"]]
        if not kids:
            replies: Any = ""
        elif depth + 1 >= self.max_depth:
            replies = _listing([_more("_", comment["name"], [], count=len(kids))], None, raw=True)
        else:
            rendered = [self._node(k, depth + 1) for k in kids]
            replies = _listing([r for r in rendered if r is not None], None, raw=True)
        return {"kind": "t1", "data": {**comment, "depth": depth, "replies": replies}}

    def _hide(self, comment: dict[str, Any]) -> None:
        self.unrendered.append(comment["id"])
        for kid in self.kids[comment["name"]]:
            self._hide(kid)


def _more(id_: str, parent: str, children: list[str], count: int | None = None) -> dict:
    data = {
        "count": len(children) if count is None else count,
        "name": f"t1_{id_}",
        "id": id_,
        "parent_id": parent,
        "depth": 0,
        "children": children,
    }
    return {"kind": "more", "data": data}


def bad_child(kind: str, sub: str, id_: str, problem: str) -> dict[str, Any]:
    """A listing child with one of splice()'s problems, created 2023-11-14."""
    prefix = "t3" if kind == "posts" else "t1"
    data = make_post(sub, id_, 1_700_000_000.0, 12)
    if kind == "comments":
        data = {**data, "name": f"t1_{id_}"}
    if problem == "missing_created":
        del data["created_utc"]
    elif problem == "null_created":
        data["created_utc"] = None
    elif problem == "text_created":
        data["created_utc"] = "yesterday"
    elif problem == "string_score":
        data["score"] = "12"
    if problem == "more":
        return _more(id_, f"t3_{id_}", [f"{id_}a", f"{id_}b"])
    return {"kind": prefix, "data": data}


def serve(
    content: list[dict[str, Any]],
    kind: str,
    swaps: list[tuple[int, int]],
    spliced: list[tuple[int, dict[str, Any]]],
) -> list[dict[str, Any]]:
    """A listing as the server shows it, children with their kind: the content (newest
    first), then the swaps of positions, then the spliced children at theirs. Positions are
    of the listing as it is at each request: an item deleted moves the later ones up."""
    prefix = "t3" if kind == "posts" else "t1"
    items = [{"kind": prefix, "data": d} for d in content]
    for i, j in swaps:
        if max(i, j) < len(items):
            items[i], items[j] = items[j], items[i]
    for position, child in sorted(spliced, key=lambda pc: pc[0]):
        items.insert(min(position, len(items)), child)
    return items


def _listing(things: list, after: str | None, raw: bool = False) -> dict[str, Any]:
    children = things if raw else [{"kind": k, "data": d} for k, d in things]
    return {
        "kind": "Listing",
        "data": {
            "after": after,
            "dist": len(children),
            "modhash": None,
            "geo_filter": "",
            "children": children,
            "before": None,
        },
    }


def make_post(sub: str, id_: str, created: float, i: int) -> dict[str, Any]:
    """A post with the traps raw storage must keep: '[deleted]' authors, unicode, nulls."""
    return {
        "subreddit": sub,
        "subreddit_id": "t5_2qh0u",
        "id": id_,
        "name": f"t3_{id_}",
        "title": f"Post {i} — café ✓ 📈",
        "selftext": 'line one\nline "two"',
        "author": "[deleted]" if i % 5 == 0 else f"user_{i % 17}",
        "created_utc": created,
        "score": i % 50,
        "num_comments": i % 7,
        "over_18": False,
        "edited": False,
        "removed_by_category": None,
        "link_flair_text": None,
        "permalink": f"/r/{sub}/comments/{id_}/post_{i}/",
        "url": f"https://example.org/{i}",
    }


def make_comment(sub: str, id_: str, post: dict, parent: str, created: float, i: int) -> dict:
    return {
        "subreddit": sub,
        "id": id_,
        "name": f"t1_{id_}",
        "link_id": post["name"],
        "parent_id": parent,
        "body": f"comment {i} ünïcode",
        "author": f"user_{i % 11}",
        "created_utc": created,
        "score": 1,
        "edited": False,
        "replies": "",
    }


def _base36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while number:
        number, rest = divmod(number, 36)
        out = digits[rest] + out
    return out or "0"


def _basic_auth(request: web.Request) -> tuple[str, str] | None:
    header = request.headers.get("Authorization", "")
    if not header.startswith("Basic "):
        return None
    user, _, password = base64.b64decode(header[6:]).decode().partition(":")
    return user, password


def _dumps(payload: Any) -> str:
    return json.dumps(payload, ensure_ascii=False)


@contextmanager
def silent_host() -> Iterator[str]:
    """A URL whose host accepts connections and never answers (a hung proxy, a firewall
    that swallows packets): only a timeout ends a request to it."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            with suppress(TimeoutError, OSError):
                held.append(listener.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(5)
        for conn in held:
            conn.close()
        listener.close()


def dead_url() -> str:
    """A URL where nothing listens: a port that was free a moment ago."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


# ---- helpers for the tests of tasks.extract.reddit_api ----------------------------------
USER_AGENT = "linux:reddit-pipeline-tests:0.1 (by /u/pipeline_tests)"


def auth_for(server: FakeReddit, **overrides: Any) -> Any:
    """RedditAuth matching the server's app, or not, per the overrides."""
    from pydantic import SecretStr

    from tasks.extract.reddit_api import RedditAuth

    values: dict[str, Any] = {
        "client_id": server.client_id,
        "client_secret": SecretStr(server.client_secret),
        "user_agent": USER_AGENT,
        "source": "test credentials",
    }
    values.update(overrides)
    return RedditAuth(**values)


def fast_options(**overrides: Any) -> Any:
    """Client options scaled to the fake: short timeout and backoff."""
    from tasks.extract.reddit_api import ClientOptions

    values: dict[str, Any] = {
        "timeout_seconds": 0.5,
        "backoff_base_seconds": 0.02,
        "backoff_max_seconds": 0.2,
    }
    values.update(overrides)
    return ClientOptions(**values)
