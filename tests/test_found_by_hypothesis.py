"""The failures the generated tests found, each kept as an ordinary example (the shrunk line,
or the shrunk sequence of runs), so they stay fixed whatever the generators draw later."""

from __future__ import annotations

import json

import pytest
from test_single_line import _stage, assert_line_kept_or_quarantined

T0 = 1_714_521_600


def _post(**fields: object) -> bytes:
    record = {"id": "gen00001", "subreddit": "python", "created_utc": T0, "score": 1}
    return json.dumps({**record, **fields}, ensure_ascii=False).encode()


@pytest.mark.parametrize(
    "line",
    [
        _post(created_utc=2**53 + 1),
        _post(created_utc=10**13),  # milliseconds where seconds belong
        _post(created_utc=1e20),
        _post(created_utc=-1e308),
        _post(created_utc="nan"),
        _post(created_utc="Infinity"),
        _post(created_utc="-inf"),
        _post().replace(str(T0).encode(), b"NaN"),
        _post().replace(str(T0).encode(), b"-Infinity"),
        _post().replace(str(T0).encode(), b"1e999"),
    ],
    ids=lambda line: line.decode()[40:75],
)
def test_created_utc_beyond_the_timestamp_range_is_quarantined_and_the_rest_lands(
    line: bytes,
) -> None:
    """Found: DuckDB's to_timestamp raises 'Epoch seconds out of range' on the whole chunk."""
    landed, line_no = _stage(line, 2)
    assert_line_kept_or_quarantined(landed, line, line_no)


def test_subreddit_longer_than_a_file_name_is_quarantined_and_the_rest_lands() -> None:
    """Found: a 300-character name becomes a raw key component: OSError, name too long."""
    line = _post(subreddit="a" * 300)
    landed, line_no = _stage(line, 0)
    assert_line_kept_or_quarantined(landed, line, line_no)


def test_subreddit_dot_dot_is_quarantined_and_the_rest_lands() -> None:
    """Found: '../..' becomes subreddit=../.. in the raw key; the lake refuses the key and the
    whole stage fails."""
    line = _post(subreddit="../..")
    landed, line_no = _stage(line, 3)
    assert_line_kept_or_quarantined(landed, line, line_no)


def test_subreddit_with_a_nul_character_is_quarantined_and_the_rest_lands() -> None:
    """Found: a \\u0000 in the name reaches the file system: 'embedded null byte'."""
    line = _post(subreddit="py\u0000thon")
    landed, line_no = _stage(line, 6)
    assert_line_kept_or_quarantined(landed, line, line_no)
