"""Small pure helpers on Reddit "things": keys, raw lines, listing shape."""

from __future__ import annotations

import json
from typing import Any

from tasks.reddit_api.settings import JSON_SEPARATORS

Watermark = tuple[float, str]


def raw_line(data: dict[str, Any]) -> bytes:
    """Serialize a thing's `data` compactly, keeping every field and non-ASCII text as sent."""
    return json.dumps(data, ensure_ascii=False, separators=JSON_SEPARATORS).encode("utf-8")


def order_key(created_utc: float, fullname: str) -> tuple[float, int]:
    """Order by time, then by id: ids are base36 and grow with time, so they break ties."""
    return (created_utc, int(fullname.partition("_")[2], 36))


def thing_key(data: dict[str, Any]) -> tuple[float, int]:
    return order_key(float(data["created_utc"]), str(data["name"]))


def check_listing(payload: Any) -> None:
    """Raise ValueError unless payload is a Listing whose children carry names and times."""
    if not isinstance(payload, dict) or payload.get("kind") != "Listing":
        raise ValueError("response is not a Listing")
    data = payload.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("children"), list):
        raise ValueError("Listing has no children list")
    for child in data["children"]:
        thing = child.get("data") if isinstance(child, dict) else None
        if not isinstance(thing, dict) or "name" not in thing:
            raise ValueError("Listing child has no data.name")
        if child.get("kind") != "more" and "created_utc" not in thing:
            raise ValueError("Listing child has no data.created_utc")


def children(payload: dict[str, Any]) -> list[dict[str, Any]]:
    return payload["data"]["children"]
