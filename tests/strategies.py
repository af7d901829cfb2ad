"""Hypothesis strategies built from the dump format's real edge values, and the example budgets
of the generated tests.

The budgets follow HYPOTHESIS_PROFILE (the profiles live in conftest.py): `ci`, the default,
keeps `make test` within minutes; `fuzz` (`make fuzz`) searches much longer.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from typing import Any

from hypothesis import strategies as st

PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")


def budget(ci: int, fuzz: int) -> int:
    """Examples for the current profile: few and fixed in CI, many under `make fuzz`."""
    return fuzz if PROFILE == "fuzz" else ci


# ---- numbers ------------------------------------------------------------------------------
# Reddit opened on 2005-06-01; the pipeline refuses items before it and after tomorrow.
REDDIT_EPOCH = 1_117_584_000
NOW = int(datetime.now(UTC).timestamp())
CREATED_EDGES: list[Any] = [
    0,
    -1,
    -(2**63),
    REDDIT_EPOCH - 1,
    REDDIT_EPOCH,
    REDDIT_EPOCH + 0.5,
    NOW,
    NOW + 86_400 - 60,
    NOW + 86_400 + 60,
    2**31 - 1,
    2**31,
    2**32,
    2**53 + 1,
    2**63 - 1,
    2**63,
    2**64,
    10**13,  # milliseconds where seconds belong
    1e13,
    1e20,
    1e308,
    -1e308,
    5e-324,
    "1714521600",
    "1714521600.5",
    " 1714521600",
    "1.7145216e9",
    "0x66318e00",
    "nan",
    "NaN",
    "inf",
    "-inf",
    "Infinity",
    "",
    "yesterday",
    True,
    False,
    None,
    [1714521600],
    {"$date": 1714521600},
]
# Bare tokens that are not JSON but that lenient parsers accept (DuckDB's among them?).
BARE_NUMBER_TOKENS = ["NaN", "Infinity", "-Infinity", "1e999", "-1e999", "01714521600", "+1"]
INT_EDGES: list[Any] = [0, -1, 1, 2**31 - 1, 2**31, 2**63 - 1, 2**63, -(2**63), -(2**63) - 1]
INT_EDGES += [2**64, 10**30, 1.5, -0.0, 1e308, "12", "", None, True, [], {}]

# ---- strings ------------------------------------------------------------------------------
# Reddit names: 3-21 letters, digits, underscores (a few historic ones have 2).
SUBREDDIT_EDGES: list[Any] = [
    "de",
    "a" * 21,
    "B" * 21,
    "a" * 22,
    "a" * 300,
    "a",
    "",
    " python",
    "python ",
    "r/python",
    "/r/python",
    "../..",
    "..",
    ".",
    "a/b",
    "a\\b",
    "*",
    "?",
    "a=b",
    "dt=2024-05-01",
    "%2e%2e",
    "py\u0000thon",
    "pyth\non",
    "Pythön",
    "\u0130stanbul",  # lower() makes it longer
    "\ufeffpython",
    "😀",
    "CON",
    None,
    123,
    True,
    ["python"],
    {"subreddit": "python"},
]
ODD_TEXT = [
    "",
    " ",
    "\u0000",
    "\t\n\r",
    '"',
    "\\",
    "\u2028\u2029",
    "\ufeff",
    "e\u0301",
    "😀",
    "\U0010ffff",
    "مرحبا",
    "x" * 10_000,
]
ID_EDGES: list[Any] = ["", " ", "0", "zzzzzzzzzzzzz", "a" * 200, "../x", "a/b", None, 0, 1.5]
ID_EDGES += [True, ["x"], {"id": "x"}, "t3_abc", "id with space", "😀", "\u0000"]


def _json_scalars() -> st.SearchStrategy[Any]:
    return st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()


def json_values(max_leaves: int = 6) -> st.SearchStrategy[Any]:
    return st.recursive(
        _json_scalars(),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
        max_leaves=max_leaves,
    )


# ---- whole lines --------------------------------------------------------------------------
POST_FIELDS = ("id", "subreddit", "created_utc", "score", "num_comments", "retrieved_on")
POST_FIELDS += ("retrieved_utc", "title", "selftext", "author", "edited", "over_18", "name")
PLACING_FIELDS = ("id", "subreddit", "created_utc")


def _base_record(kind: str, n: int) -> dict[str, Any]:
    record: dict[str, Any] = {
        "id": f"gen{n:05d}",
        "subreddit": "python",
        "author": "someone",
        "created_utc": 1_714_521_600 + n,
        "retrieved_on": 1_714_608_000 + n,
        "score": 1,
    }
    if kind == "posts":
        record |= {"title": "t", "selftext": "", "num_comments": 0}
    else:
        record |= {"body": "b", "link_id": "t3_abc", "parent_id": "t3_abc"}
    return record


@st.composite
def mutated_records(draw: st.DrawFn, kind: str = "posts") -> dict[str, Any]:
    """A plausible record with one to three fields set to edge values, wrong types, missing,
    or nested objects that carry a `subreddit` key of their own."""
    record = _base_record(kind, draw(st.integers(0, 99_999)))
    for _ in range(draw(st.integers(1, 3))):
        # The fields staging reads to place a line come up most often.
        name = draw(st.sampled_from(PLACING_FIELDS * 3 + (*POST_FIELDS, "_meta", "body")))
        choice = draw(st.integers(0, 5))
        if choice == 0:
            record.pop(name, None)
        elif name == "created_utc" or name.startswith("retrieved") or name == "edited":
            record[name] = draw(st.sampled_from(CREATED_EDGES))
        elif name == "subreddit":
            record[name] = draw(st.sampled_from(SUBREDDIT_EDGES) | st.text(max_size=25))
        elif name == "id":
            record[name] = draw(st.sampled_from(ID_EDGES) | st.text(min_size=1, max_size=15))
        elif name in ("score", "num_comments"):
            record[name] = draw(st.sampled_from(INT_EDGES) | st.integers())
        elif choice == 1:
            record[name] = {"subreddit": draw(st.sampled_from(SUBREDDIT_EDGES)), "id": "nested"}
        elif choice == 2:
            record[name] = draw(json_values())
        else:
            record[name] = draw(st.sampled_from(ODD_TEXT) | st.text())
    return record


def _spaced_json(record: dict[str, Any], space: str, ensure_ascii: bool) -> str:
    body = json.dumps(record, ensure_ascii=ensure_ascii, separators=(",", ":"))
    if not space:
        return body
    return json.dumps(record, ensure_ascii=ensure_ascii, separators=(space + ",", space + ":"))


JSON_SPACE = ["", " ", "\t", " \t "]


@st.composite
def encoded_records(draw: st.DrawFn, kind: str = "posts") -> bytes:
    """A mutated record as JSON bytes: any JSON whitespace around separators, ASCII escapes
    (so surrogate pairs appear as \\ud83d\\ude00) or raw UTF-8, an optional byte-order mark."""
    record = draw(mutated_records(kind))
    text = _spaced_json(record, draw(st.sampled_from(JSON_SPACE)), draw(st.booleans()))
    if draw(st.integers(0, 9)) == 0:
        text = " \t" + text + " \t"
    data = text.encode("utf-8", "surrogatepass")
    if draw(st.integers(0, 19)) == 0:
        data = b"\xef\xbb\xbf" + data
    return data


def _splice(base: bytes, at: int, insert: bytes) -> bytes:
    at = min(at, len(base))
    return base[:at] + insert + base[at:]


@st.composite
def damaged_lines(draw: st.DrawFn, kind: str = "posts") -> bytes:
    """A record's JSON with raw bytes that no JSON encoder writes: invalid UTF-8, a lone
    surrogate escape, a bare CR or NUL, a truncated tail, a bare NaN token."""
    data = draw(encoded_records(kind))
    how = draw(st.integers(0, 7))
    at = draw(st.integers(0, max(0, len(data))))
    if how == 0:
        return _splice(
            data, at, draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x80"]))
        )
    if how == 1:
        return _splice(data, at, b"\r")
    if how == 2:
        return _splice(data, at, b"\x00")
    if how == 3:
        return data[: max(1, at)]
    if how == 4:
        token = draw(st.sampled_from(BARE_NUMBER_TOKENS)).encode()
        return data.replace(b'"created_utc":', b'"created_utc":' + token + b',"_x":', 1)
    if how == 5:
        return data.replace(b'"python"', b'"\\ud800"', 1)
    if how == 6:
        return b"\r" if at % 2 else b"\x00"
    return _splice(data, at, b'\\"')


def other_lines() -> st.SearchStrategy[bytes]:
    """Lines that are not a record at all: any JSON value, blank space, binary noise."""
    return st.one_of(
        json_values().map(lambda v: json.dumps(v).encode()),
        st.sampled_from([b"", b" ", b"\t", b"{}", b"[]", b"null", b"{", b"}", b'"x"']),
        st.binary(min_size=1, max_size=40).filter(lambda b: b"\n" not in b),
    )


@st.composite
def edge_records(draw: st.DrawFn, kind: str = "posts") -> bytes:
    """A good record but for one of the fields that place a line (id, subreddit, created_utc),
    set to one of the format's edge values."""
    record = _base_record(kind, draw(st.integers(0, 99_999)))
    name = draw(st.sampled_from(PLACING_FIELDS))
    edges = {"id": ID_EDGES, "subreddit": SUBREDDIT_EDGES, "created_utc": CREATED_EDGES}[name]
    record[name] = draw(st.sampled_from(edges))
    return json.dumps(record, ensure_ascii=draw(st.booleans())).encode("utf-8", "surrogatepass")


def single_lines(kind: str = "posts") -> st.SearchStrategy[bytes]:
    """Any one line of a dump (without its newline)."""
    return st.one_of(edge_records(kind), encoded_records(kind), damaged_lines(kind), other_lines())


def huge_line(size: int = 3 * 1024 * 1024) -> bytes:
    """A valid post whose selftext makes the line a few MiB long."""
    record = _base_record("posts", 77_777)
    record["selftext"] = "é" * (size // 2)
    return json.dumps(record, ensure_ascii=False).encode()
