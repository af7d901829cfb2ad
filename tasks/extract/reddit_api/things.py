"""Small pure helpers on Reddit "things": keys, raw lines, listing shape."""

from __future__ import annotations

import json
import math
import re
from typing import Any

from tasks.extract.reddit_api.settings import JSON_SEPARATORS

Watermark = tuple[float, str]

# t1_ (comment), t3_ (post), ...: a type prefix, then a base36 id (order_key parses it).
FULLNAME = re.compile(r"^t[1-6]_[0-9a-z]+$")


def raw_line(data: dict[str, Any]) -> bytes:
    """Serialize a thing's `data` compactly, keeping every field and non-ASCII text as sent."""
    return json.dumps(data, ensure_ascii=False, separators=JSON_SEPARATORS).encode("utf-8")


def order_key(created_utc: float, fullname: str) -> tuple[float, int, str]:
    """Order by time, then by id: the one ordering of items and watermarks. Reddit ids (bare
    or fullnames) are base36 and grow with time: a longer id is newer, and of equal length
    text order is id order, so 't3_100' comes after 't3_zz' although it sorts before it as
    text. Total on any text, so an odd id in a dump orders instead of raising."""
    bare = fullname.rpartition("_")[2]
    return (created_utc, len(bare), bare)


def newer_mark(a: tuple[float, str] | None, b: tuple[float, str]) -> tuple[float, str]:
    """The later of two (created_utc, fullname) marks (see order_key)."""
    if a is None:
        return b
    return a if order_key(*a) >= order_key(*b) else b


def thing_key(data: dict[str, Any]) -> tuple[float, int, str]:
    return order_key(float(data["created_utc"]), str(data["name"]))


def check_listing(payload: Any) -> None:
    """Raise ValueError unless payload is a Listing with a children list.

    Only the envelope: a bad child is one bad item (see unusable_reason), not a bad page, and
    retrying the page would not change it.
    """
    if not isinstance(payload, dict) or payload.get("kind") != "Listing":
        raise ValueError("response is not a Listing")
    data = payload.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("children"), list):
        raise ValueError("Listing has no children list")


def created_of(data: dict[str, Any]) -> float | None:
    """created_utc as a number, or None when it is missing, null, non-numeric or not finite
    (the dumps send it as a number or a numeric string; the API has sent both)."""
    value = data.get("created_utc")
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        created = float(value)
    except ValueError:
        return None
    return created if math.isfinite(created) else None


def unusable_reason(child: Any, thing_kind: str) -> str | None:
    """Why a listing child cannot be kept as an item of kind `thing_kind` ('t3', 't1'), or None.

    Reddit puts `kind: more` stubs in comment listings now and then, and has sent items
    without created_utc or with it null; one such item must not cost the page it is on.
    """
    if not isinstance(child, dict) or not isinstance(child.get("data"), dict):
        return "not a thing (no data object)"
    kind = child.get("kind")
    if kind == "more":
        return "a 'more' stub, not an item"
    if kind != thing_kind:
        return f"kind {kind!r}, expected {thing_kind!r}"
    data = child["data"]
    name = data.get("name")
    if not isinstance(name, str) or not FULLNAME.match(name):
        return "missing or malformed name"
    if "created_utc" not in data:
        return "missing created_utc"
    if data["created_utc"] is None:
        return "null created_utc"
    if created_of(data) is None:
        return "non-numeric created_utc"
    return None


def children(payload: dict[str, Any]) -> list[dict[str, Any]]:
    return payload["data"]["children"]
