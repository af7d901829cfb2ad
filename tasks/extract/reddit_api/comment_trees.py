"""Whole comment trees of chosen posts: /comments/{id}, then /api/morechildren for the rest.

Each comment becomes one raw line. Its nested `replies` Listing is emptied to "" (Reddit's own
value for a comment without replies) because every reply is a line of its own; all other
fields are kept as sent.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from tasks.extract.reddit_api import settings
from tasks.extract.reddit_api.client import ClientOptions, RedditClient, run_all
from tasks.extract.reddit_api.credentials import RedditAuth
from tasks.extract.reddit_api.ratelimit import SharedRateLimiter
from tasks.extract.reddit_api.things import raw_line


@dataclass
class _Tree:
    """Comments of one post collected so far, and the stubs still to expand."""

    post_id: str
    lines: dict[str, bytes] = field(default_factory=dict)
    more_ids: deque[str] = field(default_factory=deque)
    continue_at: deque[str] = field(default_factory=deque)

    def add(self, things: list[dict[str, Any]]) -> None:
        """Walk things depth first; remember `more` stubs instead of following them now."""
        stack = list(reversed(things))
        while stack:
            thing = stack.pop()
            data = thing.get("data", {})
            if thing.get("kind") == "more":
                self._add_more(data)
                continue
            if thing.get("kind") != "t1":
                continue
            replies = data.get("replies")
            if isinstance(replies, dict):
                stack.extend(reversed(replies.get("data", {}).get("children", [])))
            self.lines.setdefault(data["name"], raw_line({**data, "replies": ""}))

    def _add_more(self, data: dict[str, Any]) -> None:
        ids = [i for i in data.get("children", []) if f"t1_{i}" not in self.lines]
        if ids:
            self.more_ids.extend(ids)
        elif data.get("parent_id", "").startswith("t1_"):
            # "continue this thread": no ids, the subtree is read from its parent comment.
            self.continue_at.append(data["parent_id"].removeprefix("t1_"))


def _check_thread(payload: Any) -> None:
    if not (isinstance(payload, list) and len(payload) == 2):
        raise ValueError("/comments/{id} did not return [post listing, comment listing]")


def _check_more(payload: Any) -> None:
    things = (
        payload.get("json", {}).get("data", {}).get("things") if isinstance(payload, dict) else None
    )
    if not isinstance(things, list):
        raise ValueError("/api/morechildren did not return json.data.things")


async def _read_thread(client: RedditClient, tree: _Tree, comment: str | None = None) -> None:
    params: dict[str, str | int] = {"limit": 500}
    if comment:
        params["comment"] = comment
    payload = await client.get(f"/comments/{tree.post_id}", params, check=_check_thread)
    tree.add(payload[1]["data"]["children"])


async def _read_more(client: RedditClient, tree: _Tree) -> None:
    ids: list[str] = []
    while tree.more_ids and len(ids) < settings.MORECHILDREN_BATCH:
        next_id = tree.more_ids.popleft()
        if f"t1_{next_id}" not in tree.lines and next_id not in ids:
            ids.append(next_id)
    if not ids:
        return
    params = {"link_id": f"t3_{tree.post_id}", "children": ",".join(ids), "api_type": "json"}
    async with client.morechildren_lock:
        payload = await client.get("/api/morechildren", params, check=_check_more)
    tree.add(payload["json"]["data"]["things"])


async def _read_tree(client: RedditClient, post_id: str) -> list[bytes]:
    tree = _Tree(post_id=post_id.removeprefix("t3_"))
    await _read_thread(client, tree)
    while tree.more_ids or tree.continue_at:
        if tree.more_ids:
            await _read_more(client, tree)
        else:
            await _read_thread(client, tree, comment=tree.continue_at.popleft())
    return list(tree.lines.values())


async def fetch_comment_trees(
    auth: RedditAuth,
    post_ids: list[str],
    base_url: str | None = None,
    *,
    options: ClientOptions | None = None,
    limiter: SharedRateLimiter | None = None,
) -> dict[str, list[bytes]]:
    """Every comment of each post (id or t3_ fullname), keyed by the post's fullname."""
    ids = list(dict.fromkeys(p.removeprefix("t3_") for p in post_ids))
    async with RedditClient(auth, base_url, options, limiter) as client:
        trees = await run_all([_read_tree(client, post_id) for post_id in ids])
    return {f"t3_{post_id}": lines for post_id, lines in zip(ids, trees, strict=True)}
