"""One bad value never stops staging: values at or beyond the bounds of tasks/settings.py, huge
lines and subreddit names that cannot be lake keys are quarantined (or nulled and counted)
while the good lines around them land, and the raw layer they leave rebuilds. Real zstandard,
real DuckDB, a local lake in tmp_path."""

from __future__ import annotations

import gzip
import json
import os
import time
import tracemalloc
from pathlib import Path

import pytest
import zstandard

from tasks import settings
from tasks.core import duck
from tasks.extract.stage import (
    LONG_LINE,
    StageResult,
    Window,
    WrongKindError,
    stage_dump,
    stage_records,
)
from tasks.lake.keys import UnsafeKeyError, batch_id_for, raw_key
from tasks.lake.local import LocalLake
from tasks.model.duckdb_engine import run_models
from tasks.process.duckdb_engine import process_batches

T0 = 1709251200  # 2024-03-01T00:00:00Z


def post(ident: str, sub: str = "python", created: object = T0, **fields: object) -> bytes:
    body = {"id": ident, "subreddit": sub, "title": f"t {ident}", "created_utc": created, **fields}
    return json.dumps(body).encode()


GOOD = [post("g1"), post("g2", created=T0 + 60), post("g3", sub="rust", created=T0 + 120)]


def dump_of(tmp_path: Path, bad: bytes, name: str = "RS_2024-03.zst") -> Path:
    """A dump with the bad line between good ones (line 2)."""
    lines = [GOOD[0], bad, *GOOD[1:]]
    path = tmp_path / name
    path.write_bytes(zstandard.ZstdCompressor().compress(b"\n".join(lines) + b"\n"))
    return path


def quarantine(lake: LocalLake, kind: str = "posts") -> list[dict]:
    entries = []
    for key in lake.list_keys(f"{settings.QUARANTINE_PREFIX}/{kind}"):
        entries += [json.loads(line) for line in lake.get_bytes(key).decode().splitlines()]
    return entries


def assert_good_lines_staged(result: StageResult) -> None:
    assert dict(result.staged) == {"python": 2, "rust": 1}
    assert result.errors == []


def rebuild_from_raw(lake: LocalLake, result: StageResult) -> None:
    """What `rebuild` does with the raw layer: reprocess it, then model its days."""
    processed = process_batches(lake, result.kind, result.raw_keys)
    assert processed.rows == sum(result.staged.values())
    modeled = run_models(lake, sorted(processed.dts))
    assert modeled.rows["posts"] == sum(result.staged.values())


@pytest.mark.parametrize(
    ("created", "reason"),
    [
        ('"nan"', "unusable created_utc"),
        ('"inf"', "unusable created_utc"),
        ('"-inf"', "unusable created_utc"),
        ("NaN", "unusable created_utc"),  # a bare NaN token, as Python's json.dumps writes it
        ("Infinity", "unusable created_utc"),
        ("1e20", "created_utc out of range"),
        ("1.5e13", "created_utc out of range"),
        (str(settings.LATEST_EPOCH), "created_utc out of range"),
        (str(settings.EARLIEST_EPOCH - 1), "created_utc out of range"),
    ],
)
def test_a_created_utc_beyond_the_bounds_is_quarantined_and_the_good_lines_land(
    tmp_path: Path, created: str, reason: str | None
) -> None:
    lake = LocalLake(tmp_path / "lake")
    bad = b'{"id":"b1","subreddit":"python","title":"x","created_utc":%s}' % created.encode()

    result = stage_dump(dump_of(tmp_path, bad), lake, Window(), process=True)

    assert_good_lines_staged(result)
    [entry] = quarantine(lake)
    assert entry["line"] == 2 and entry["raw"] == bad.decode()
    assert entry["reason"] == reason
    rebuild_from_raw(lake, result)


def test_a_created_utc_20_hours_ahead_is_quarantined_as_in_the_future(tmp_path: Path) -> None:
    lake = LocalLake(tmp_path / "lake")
    ahead = post("b1", created=int(time.time()) + 20 * 3600)
    within_skew = post("g4", created=int(time.time()) + settings.MAX_FUTURE_SECONDS // 2)
    path = dump_of(tmp_path, ahead)
    lines = zstandard.ZstdDecompressor().decompress(path.read_bytes()) + within_skew + b"\n"
    path.write_bytes(zstandard.ZstdCompressor().compress(lines))

    result = stage_dump(path, lake, Window(), process=True)

    assert [(e["line"], e["reason"]) for e in quarantine(lake)] == [
        (2, "created_utc in the future")
    ]
    assert dict(result.staged) == {"python": 3, "rust": 1}  # the clock skew allowance holds


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"edited": 1e20}, "edited"),
        ({"edited": "nan"}, "edited"),
        ({"retrieved_utc": 1e20}, "retrieved_utc"),
        ({"retrieved_on": 1e20}, "retrieved_utc"),
        ({"retrieved_utc": "inf"}, "retrieved_utc"),
    ],
)
def test_an_edited_or_retrieved_time_beyond_the_bounds_is_nulled_counted_and_rebuilds(
    tmp_path: Path, fields: dict[str, object], field: str
) -> None:
    lake = LocalLake(tmp_path / "lake")
    bad = post("b1", score=5, **fields)

    result = stage_dump(dump_of(tmp_path, bad), lake, Window(), process=True)

    # The item is good: it is kept, only the impossible time becomes null.
    assert quarantine(lake) == []
    assert dict(result.staged) == {"python": 3, "rust": 1}
    assert dict(result.coerced) == {field: 1}
    processed = process_batches(lake, "posts", result.raw_keys)
    modeled = run_models(lake, sorted(processed.dts))
    assert modeled.rows["posts"] == 4
    con = duck.connect()
    [key] = modeled.curated_keys["posts"]
    row = con.execute(
        f"select is_edited, edited_at, retrieved_at from read_parquet('{lake.local_path(key)}') "
        "where id = 'b1'"
    ).fetchone()
    assert row == ("edited" in fields, None, None)


def test_a_processed_file_written_before_the_bounds_still_models(tmp_path: Path) -> None:
    """Processed files from before this fix may hold a retrieval time of 1e20 and an edited of
    1e20: the staging models null them instead of failing the day in every later run."""
    lake = LocalLake(tmp_path / "lake")
    result = stage_dump(dump_of(tmp_path, post("b1")), lake, Window(), process=True)
    [key] = [k for k in result.processed.processed_keys if "dt=2024-03-01" in k]
    con = duck.connect()
    path = lake.local_path(key)
    con.execute(
        f"copy (select * replace (case when id = 'b1' then 1e20 else retrieved_utc end as "
        f"retrieved_utc, case when id = 'b1' then '1e20' else edited end as edited) "
        f"from read_parquet('{path}')) to '{tmp_path / 'old.parquet'}' (format parquet)"
    )
    os.replace(tmp_path / "old.parquet", path)

    modeled = run_models(lake, ["2024-03-01"])

    assert modeled.rows["posts"] == 4


@pytest.mark.parametrize(
    "name", ["../..", "x" * 300, "a/b", "*", "?", "py thon", "..", "a\nb", "python\n"]
)
def test_a_subreddit_name_that_is_not_a_reddit_name_is_quarantined(
    tmp_path: Path, name: str
) -> None:
    lake = LocalLake(tmp_path / "lake")

    result = stage_dump(dump_of(tmp_path, post("b1", sub=name)), lake, Window(), process=True)

    assert_good_lines_staged(result)
    assert [(e["line"], e["reason"]) for e in quarantine(lake)] == [(2, "invalid subreddit name")]
    # Every file the run wrote is inside the lake, one folder per subreddit, none nested.
    written = [p for p in (tmp_path).rglob("*") if p.is_file() and p.parent != tmp_path]
    assert all(p.is_relative_to(tmp_path / "lake") for p in written)
    assert {key.split("/")[3] for key in result.raw_keys} == {
        "subreddit=python",
        "subreddit=rust",
    }
    assert all(key.count("/") == 5 for key in result.raw_keys)
    rebuild_from_raw(lake, result)


@pytest.mark.parametrize("name", ["de", "AskReddit", "u_" + "a" * 20, "u_some-user", "reddit.com"])
def test_historic_and_profile_subreddit_names_of_the_dumps_are_staged(
    tmp_path: Path, name: str
) -> None:
    lake = LocalLake(tmp_path / "lake")
    result = stage_dump(dump_of(tmp_path, post("b1", sub=name)), lake, Window(), process=True)
    assert quarantine(lake) == []
    assert result.staged[name.lower()] == 1


@pytest.mark.parametrize(
    ("part", "value"),
    [
        ("subreddit", "../.."),
        ("subreddit", "a/b"),
        ("subreddit", "*"),
        ("dt", "../x"),
        ("batch_id", "dump-a*b-0000"),
        ("batch_id", "dump-a/b"),
    ],
)
def test_a_raw_key_refuses_parts_unsafe_on_s3_or_a_local_disk(part: str, value: str) -> None:
    parts = {"subreddit": "python", "dt": "2024-03-01", "batch_id": "dump-RS_2024-03-abc-0000"}
    parts[part] = value
    with pytest.raises(UnsafeKeyError):
        raw_key("posts", parts["subreddit"], parts["dt"], parts["batch_id"], "gzip")


def test_a_dump_whose_name_holds_glob_characters_gets_a_safe_batch_id(tmp_path: Path) -> None:
    lake = LocalLake(tmp_path / "lake")
    path = dump_of(tmp_path, post("g0"), name="my [dump]*.v2_submissions.zst")

    result = stage_dump(path, lake, Window(), process=True)

    assert sum(result.staged.values()) == 4
    assert batch_id_for(path, Window().digest(), 0).startswith("dump-my__dump___v2_submissions-")
    rebuild_from_raw(lake, result)


def test_a_50_mb_line_is_quarantined_unparsed_and_the_rest_of_its_chunk_is_staged(
    tmp_path: Path,
) -> None:
    lake = LocalLake(tmp_path / "lake")
    size = 50 * 1024 * 1024
    # Hex of random bytes: compresses ~2x, like text, so the decoder never hands over much.
    body = os.urandom(size // 2).hex()
    huge = b'{"id":"big","subreddit":"python","created_utc":%d,"selftext":"%s"}' % (
        T0,
        body.encode(),
    )
    path = dump_of(tmp_path, huge)
    del body

    tracemalloc.start()
    try:
        result = stage_dump(path, lake, Window(), process=True)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert_good_lines_staged(result)
    [entry] = quarantine(lake)
    assert (entry["line"], entry["reason"], entry["bytes"]) == (2, LONG_LINE, len(huge))
    assert huge.decode().startswith(entry["raw"])
    assert len(entry["raw"]) == settings.QUARANTINE_HEAD_BYTES
    # The 50 MB line was never held whole: Python's peak stays near the line limit.
    assert peak < 3 * settings.MAX_LINE_BYTES, peak
    rebuild_from_raw(lake, result)


def test_a_line_over_the_limit_inside_a_chunk_is_quarantined_too(tmp_path: Path) -> None:
    """A long line read whole in one piece reaches the stager; it never reaches DuckDB."""
    lake = LocalLake(tmp_path / "lake")
    huge = post("big", selftext="y" * (settings.MAX_LINE_BYTES + 10))

    result = stage_records(
        [GOOD[0], huge, *GOOD[1:]], "posts", "api", "api-1709251300-x", lake, Window()
    )

    assert dict(result.staged) == {"python": 2, "rust": 1}
    [entry] = quarantine(lake)
    assert (entry["line"], entry["reason"], entry["bytes"]) == (2, LONG_LINE, len(huge))


def test_a_byte_order_mark_does_not_quarantine_the_first_record(tmp_path: Path) -> None:
    lake = LocalLake(tmp_path / "lake")
    path = tmp_path / "RS_2024-03.zst"
    path.write_bytes(
        zstandard.ZstdCompressor().compress(b"\xef\xbb\xbf" + b"\n".join(GOOD) + b"\n")
    )

    result = stage_dump(path, lake, Window())

    assert quarantine(lake) == []
    assert_good_lines_staged(result)
    staged = b"".join(gzip.decompress(lake.get_bytes(key)) for key in result.raw_keys)
    assert sorted(staged.splitlines()) == sorted(GOOD)


def test_a_comments_dump_named_like_a_posts_dump_fails_with_a_clear_message(
    tmp_path: Path,
) -> None:
    lake = LocalLake(tmp_path / "lake")
    comments = [
        json.dumps(
            {
                "id": f"c{i}",
                "subreddit": "python",
                "created_utc": T0,
                "link_id": "t3_x",
                "body": "b",
            }
        ).encode()
        for i in range(5)
    ]
    path = tmp_path / "RS_2024-03.zst"
    path.write_bytes(zstandard.ZstdCompressor().compress(b"\n".join(comments) + b"\n"))

    with pytest.raises(WrongKindError, match=r"RS_2024-03.zst: its name says posts.*comments"):
        stage_dump(path, lake, Window())
    assert lake.list_keys("raw") == []


@pytest.mark.parametrize(
    ("value", "coerced"),
    [
        ('"abc"', {"score": 1}),
        ("true", {"score": 1}),
        ('{"a":1}', {"score": 1}),
        ("1e30", {"score": 1}),
        ('"12"', {}),
        ("12.0", {}),
        ("null", {}),
    ],
)
def test_a_score_of_the_wrong_type_becomes_null_and_is_counted(
    tmp_path: Path, value: str, coerced: dict[str, int]
) -> None:
    lake = LocalLake(tmp_path / "lake")
    line = b'{"id":"b1","subreddit":"python","title":"x","created_utc":%d,"score":%s}' % (
        T0,
        value.encode(),
    )
    result = stage_dump(dump_of(tmp_path, line), lake, Window())
    assert dict(result.coerced) == coerced
    assert quarantine(lake) == []


def test_api_items_count_their_coercions_through_the_same_staging(tmp_path: Path) -> None:
    lake = LocalLake(tmp_path / "lake")
    items = [
        post("a1", score="many", over_18="perhaps"),
        post("a2", score="7", created="1709251200"),
    ]
    result = stage_records(items, "posts", "api", "api-1709251300-new-posts-python", lake, Window())
    assert dict(result.coerced) == {"score": 1, "over_18": 1}
    assert sum(result.staged.values()) == 2
