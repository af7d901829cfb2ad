"""stage_dump on small hand-made dumps: real zstandard, real DuckDB, a local lake in tmp_path."""

from __future__ import annotations

import gzip
import inspect
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import zstandard

from tasks import settings
from tasks.core import duck
from tasks.extract import dumps, stage
from tasks.extract.stage import StageResult, Window, stage_dump
from tasks.lake.local import LocalLake

T0 = 1709251200  # 2024-03-01T00:00:00Z
DAY = 86400


def record(ident: str, sub: str = "python", created: object = T0, **fields: object) -> bytes:
    body = {"id": ident, "subreddit": sub, "created_utc": created, **fields}
    return json.dumps(body, ensure_ascii=False).encode()


def write_dump(tmp_path: Path, lines: list[bytes], name: str = "RC_2024-03.zst") -> Path:
    path = tmp_path / name
    path.write_bytes(zstandard.ZstdCompressor(level=3).compress(b"\n".join(lines) + b"\n"))
    return path


@pytest.fixture
def lake(tmp_path: Path) -> LocalLake:
    return LocalLake(tmp_path / "lake")


def raw_lines(lake: LocalLake, key: str) -> list[bytes]:
    payload = lake.get_bytes(key)
    if key.endswith(".gz"):
        data = gzip.decompress(payload)
    else:
        data = zstandard.ZstdDecompressor().decompress(payload)
    assert data.endswith(b"\n")
    return data.split(b"\n")[:-1]


def staged_lines(lake: LocalLake, result: StageResult) -> dict[str, list[bytes]]:
    """Raw lines per key, keys in the order they were written."""
    return {key: raw_lines(lake, key) for key in result.raw_keys}


def quarantined(lake: LocalLake, kind: str = "comments") -> list[dict]:
    entries = []
    for key in lake.list_keys(f"{settings.QUARANTINE_PREFIX}/{kind}"):
        entries += [json.loads(line) for line in lake.get_bytes(key).decode().splitlines()]
    return entries


DRIFT = {
    "created_utc int": record("d1", created=T0),
    "created_utc numeric string": record("d2", created=str(T0 + 1)),
    "created_utc float": record("d3", created=T0 + 2.0),
    "created_utc float string": record("d4", created=f"{T0 + 3}.0"),
    "edited false": record("d5", edited=False),
    "edited epoch": record("d6", edited=T0 + 600.5),
    "score null": record("d7", score=None),
    "retrieved_on": record("d8", retrieved_on=T0 + 3600),
    "retrieved_utc": record("d9", retrieved_utc=T0 + 3600),
    "optional fields missing": b'{"id":"d10","subreddit":"python","created_utc":1709251200}',
    "unknown extra fields": record("d11", _meta={"x": [1, {"y": None}]}, gildings={}),
    "escaped unicode": json.dumps(
        {"id": "d12", "subreddit": "python", "created_utc": T0, "body": "🐍 é"}
    ).encode(),
    "raw unicode": record("d13", body="数据 مرحبا e\u0301 👩\u200d💻"),
    "spaces and key order": b'{ "created_utc" : 1709251200 , "subreddit" : "python" ,"id":"d14" }',
}


def test_every_field_drift_case_is_staged_not_quarantined(tmp_path: Path, lake: LocalLake) -> None:
    lines = list(DRIFT.values())
    result = stage_dump(write_dump(tmp_path, lines), lake, Window())

    assert result.quarantined == 0, quarantined(lake)
    assert result.lines == len(lines)
    assert dict(result.staged) == {"python": len(lines)}
    assert result.skipped == 0
    assert result.errors == []
    [(key, staged)] = staged_lines(lake, result).items()
    assert key.startswith("raw/reddit/comments/subreddit=python/dt=2024-03-01/")
    assert staged == lines


def test_malformed_lines_are_quarantined_with_reason_line_and_file(
    tmp_path: Path, lake: LocalLake
) -> None:
    lines = [
        record("g1"),  # 1
        b"this is not json {",  # 2
        record("g2", sub="rust"),  # 3
        b'{"subreddit":"python","created_utc":1709251200}',  # 4
        record("b3", created="yesterday"),  # 5
        b'[{"id":"b4","subreddit":"python","created_utc":1709251200}]',  # 6
        b'{"id":"b5","subreddit":"python","created_utc":1709251200,"body":"caf\xe9"}',  # 7
        b'{"id":"b6","subreddit":"python",\r"created_utc":1709251200}',  # 8
        b"",  # 9: blank, counted but not quarantined
        record("g3"),  # 10
        b'{"id":"b7","subreddit":"python","created_utc":17092',  # 11: truncated record
        record("", created=T0),  # 12
        record("b9", created=0),  # 13
        record("b10", sub=""),  # 14
        record("g4", sub="rust"),  # 15
    ]
    path = write_dump(tmp_path, lines, name="RC_2024-03.zst")

    result = stage_dump(path, lake, Window())

    expected = [
        (2, "not valid JSON"),
        (4, "missing id"),
        (5, "unusable created_utc"),
        (6, "not a JSON object"),
        (7, "invalid UTF-8"),
        (8, "control character outside a JSON string"),
        (11, "not valid JSON"),
        (12, "missing id"),
        (13, "created_utc out of range"),
        (14, "missing subreddit"),
    ]
    [batch_id] = result.batch_ids
    assert lake.list_keys(settings.QUARANTINE_PREFIX) == [
        f"quarantine/reddit/comments/{batch_id}.ndjson"
    ]
    entries = quarantined(lake)
    assert [(e["line"], e["reason"]) for e in entries] == expected
    assert {e["file"] for e in entries} == {"RC_2024-03.zst"}
    assert entries[0]["raw"] == "this is not json {"
    assert (
        entries[4]["raw"]
        == '{"id":"b5","subreddit":"python","created_utc":1709251200,"body":"caf\\xe9"}'
    )
    assert result.quarantined == len(expected)
    assert sum(result.quarantine_reasons.values()) == len(expected)
    assert result.quarantine_reasons["not valid JSON"] == 2
    assert result.quarantine_reasons["missing id"] == 2
    assert result.blank == 1
    assert result.lines == len(lines)
    assert dict(result.staged) == {"python": 2, "rust": 2}
    staged = staged_lines(lake, result)
    assert sorted(line for batch in staged.values() for line in batch) == sorted(
        [lines[0], lines[2], lines[9], lines[14]]
    )


@pytest.mark.parametrize("codec", ["gzip", "zstd"])
def test_raw_batches_are_byte_identical_to_input_lines_in_order(
    tmp_path: Path, lake: LocalLake, codec: str
) -> None:
    lines = [
        record("r1", sub="python", created=T0 + 5, body="first 🐍"),
        record("r2", sub="rust", created=T0 + 1, body="🦀 crab"),
        record("r3", sub="Python", created=T0 + DAY + 7, body="next day"),
        json.dumps({"id": "r4", "subreddit": "python", "created_utc": T0 + 2}).encode(),
        b'{"id":"r5",  "subreddit":"python","created_utc":"1709251203","x":[1,2.50,1e3]}',
        record("r6", sub="rust", created=T0 + 3, body="é\\n\\t \\u0000 escaped"),
        record("r7", sub="python", created=T0 + 1, body="earlier time, later line"),
    ]
    result = stage_dump(write_dump(tmp_path, lines), lake, Window(), codec=codec)

    suffix = ".ndjson.gz" if codec == "gzip" else ".ndjson.zst"
    by_partition = {
        key.split("/")[3] + "/" + key.split("/")[4]: batch
        for key, batch in staged_lines(lake, result).items()
    }
    assert all(key.endswith(suffix) for key in result.raw_keys)
    # Line order within a partition is the dump's order, whatever created_utc says.
    assert by_partition == {
        "subreddit=python/dt=2024-03-01": [lines[0], lines[3], lines[4], lines[6]],
        "subreddit=python/dt=2024-03-02": [lines[2]],
        "subreddit=rust/dt=2024-03-01": [lines[1], lines[5]],
    }
    assert result.raw_bytes == sum(len(lake.get_bytes(key)) for key in result.raw_keys)


def test_crlf_line_ends_are_staged_without_the_line_terminator(
    tmp_path: Path, lake: LocalLake
) -> None:
    lines = [record("c1"), record("c2"), record("c3", sub="rust")]
    path = tmp_path / "RC_2024-03.zst"
    path.write_bytes(zstandard.ZstdCompressor().compress(b"\r\n".join(lines) + b"\r\n"))

    result = stage_dump(path, lake, Window())

    assert result.quarantined == 0
    assert sorted(line for batch in staged_lines(lake, result).values() for line in batch) == (
        sorted(lines)
    )


def test_the_newest_item_of_a_second_is_the_highest_id_not_the_last_in_text_order(
    tmp_path: Path, lake: LocalLake
) -> None:
    """Reddit ids are base36: '100' was made after 'zz', though it sorts first as text."""
    lines = [record("zz"), record("100"), record("zy")]

    result = stage_dump(write_dump(tmp_path, lines), lake, Window())

    assert result.newest == {"python": (float(T0), "100")}


def test_subreddit_filter_matches_any_case(tmp_path: Path, lake: LocalLake) -> None:
    lines = [
        record("s1", sub="python"),
        record("s2", sub="Python"),
        record("s3", sub="PYTHON"),
        record("s4", sub="rust"),
        record("s5", sub="AskHistorians"),
    ]
    window = Window(subreddits=("python", "askhistorians"))

    result = stage_dump(write_dump(tmp_path, lines), lake, window)

    assert dict(result.staged) == {"python": 3, "askhistorians": 1}
    assert result.skipped == 1
    keys = lake.list_keys("raw/reddit/comments")
    assert [key.split("/")[3] for key in keys] == ["subreddit=askhistorians", "subreddit=python"]
    assert raw_lines(lake, keys[1]) == lines[:3]


def test_subreddit_names_in_a_window_match_any_case(tmp_path: Path, lake: LocalLake) -> None:
    lines = [
        record("s1", sub="python", created=T0 + 10),
        record("s2", sub="Python", created=T0 + 200),
        record("s3", sub="rust"),
    ]
    window = Window(subreddits=("Python",), lower_bounds=(("Python", T0 + 100.0),))
    result = stage_dump(write_dump(tmp_path, lines), lake, window)
    assert dict(result.staged) == {"python": 1}


def test_since_until_window_keeps_the_half_open_interval(tmp_path: Path, lake: LocalLake) -> None:
    since, until = T0 + DAY, T0 + 2 * DAY
    lines = [
        record("w1", created=since - 1),
        record("w2", created=since),
        record("w3", created=str(until - 1)),
        record("w4", created=until),
        record("w5", created=T0 + 5 * DAY),
    ]
    window = Window(
        since=datetime.fromtimestamp(since, UTC), until=datetime.fromtimestamp(until, UTC)
    )

    result = stage_dump(write_dump(tmp_path, lines), lake, window)

    assert result.skipped == 3
    assert dict(result.staged) == {"python": 2}
    [(key, staged)] = staged_lines(lake, result).items()
    assert "/dt=2024-03-02/" in key
    assert staged == [lines[1], lines[2]]
    assert result.newest == {"python": (float(until - 1), "w3")}


def test_lower_bounds_from_watermarks_skip_older_items_per_subreddit(
    tmp_path: Path, lake: LocalLake
) -> None:
    lines = [
        record("p1", sub="python", created=T0 + 10),
        record("p2", sub="Python", created=T0 + 100),
        record("p3", sub="python", created=T0 + 200),
        record("r1", sub="rust", created=T0 + 10),
        record("d1", sub="datascience", created=T0 + 10),
    ]
    window = Window(lower_bounds=(("python", T0 + 100.0), ("rust", T0 + 50.0)))

    result = stage_dump(write_dump(tmp_path, lines), lake, window)

    # A subreddit without a watermark keeps everything.
    assert dict(result.staged) == {"python": 2, "datascience": 1}
    assert result.skipped == 2
    assert result.newest["python"] == (float(T0 + 200), "p3")
    lines_by_sub = {key.split("/")[3]: batch for key, batch in staged_lines(lake, result).items()}
    assert lines_by_sub["subreddit=python"] == [lines[1], lines[2]]


@pytest.mark.parametrize(
    "codec",
    [
        "gzip",
        "zstd",
    ],
)
def test_rerun_with_the_same_window_writes_the_same_keys_and_bytes(
    tmp_path: Path, lake: LocalLake, codec: str
) -> None:
    lines = [
        record(f"x{i}", sub=("python", "rust")[i % 2], created=T0 + i * 3600) for i in range(60)
    ]
    lines.insert(7, b"not json")
    path = write_dump(tmp_path, lines)
    window = Window(subreddits=("python", "rust"), since=datetime.fromtimestamp(T0, UTC))

    def snapshot() -> dict[str, bytes]:
        return {key: lake.get_bytes(key) for key in lake.list_keys("")}

    first = stage_dump(path, lake, window, codec=codec, chunk_bytes=1024)
    before = snapshot()
    time.sleep(1.1)  # a later second: anything clock-dependent would show
    second = stage_dump(path, lake, window, codec=codec, chunk_bytes=1024)

    assert second.raw_keys == first.raw_keys
    assert second.batch_ids == first.batch_ids
    after = snapshot()
    assert after.keys() == before.keys()
    if codec == "zstd":
        assert after == before
    else:
        # Same gzip header (mtime 0: nothing clock-dependent) and same content. Not the same
        # deflate stream: ISA-L does not promise one (intel/isa-l#140), and a long test
        # session once gave two different, valid streams for the same 248 bytes.
        for key in after:
            if key.endswith(".gz"):
                assert after[key][:10] == before[key][:10]
                assert gzip.decompress(after[key]) == gzip.decompress(before[key])
            else:
                assert after[key] == before[key]


def test_a_different_window_writes_different_batch_ids(tmp_path: Path, lake: LocalLake) -> None:
    path = write_dump(tmp_path, [record("a1"), record("a2", sub="rust")])
    first = stage_dump(path, lake, Window())
    second = stage_dump(path, lake, Window(subreddits=("python",)))
    assert set(first.batch_ids).isdisjoint(second.batch_ids)


def _many_lines_with_bad_ones() -> list[bytes]:
    lines = [
        record(f"m{i}", sub=("python", "rust")[i % 2], created=T0 + i * 600, body="é🐍" * (i % 5))
        for i in range(1, 201)
    ]
    bad_at = {17: b"{broken", 64: b"[1, 2]", 65: b'{"id":"q","created_utc":1709251200}', 150: b""}
    for line_no, bad in sorted(bad_at.items()):
        lines.insert(line_no - 1, bad)
    return lines


def test_small_chunks_give_distinct_batch_ids_and_exact_line_numbers(
    tmp_path: Path, lake: LocalLake, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Tiny reads, so that chunk boundaries fall at many places inside the dump.
    def small_reads(*args: object, **kwargs: object) -> Iterator[dumps.LineChunk]:
        bound = inspect.signature(dumps.iter_line_chunks).bind(*args, **kwargs)
        bound.arguments["read_bytes"] = 256
        return dumps.iter_line_chunks(*bound.args, **bound.kwargs)

    monkeypatch.setattr(stage, "iter_line_chunks", small_reads)
    lines = _many_lines_with_bad_ones()
    path = write_dump(tmp_path, lines)

    result = stage_dump(path, lake, Window(), chunk_bytes=1024)

    assert len(result.batch_ids) > 5
    assert len(set(result.batch_ids)) == len(result.batch_ids)
    assert [(e["line"], e["reason"]) for e in quarantined(lake)] == [
        (17, "not valid JSON"),
        (64, "not a JSON object"),
        (65, "missing subreddit"),
    ]
    assert len(lake.list_keys(settings.QUARANTINE_PREFIX)) == 2  # one file per batch with any
    assert result.blank == 1
    assert result.lines == len(lines)
    assert sum(result.staged.values()) == 200
    # Each batch file holds a run of the dump; concatenated in batch order they give every good
    # line per partition in dump order.
    per_partition: dict[str, list[bytes]] = {}
    for key in sorted(result.raw_keys, key=lambda k: (k.rsplit("/", 1)[0], k)):
        per_partition.setdefault(key.rsplit("/", 1)[0], []).extend(raw_lines(lake, key))
    good = [line for line in lines if line.startswith(b'{"id": "m')]
    expected: dict[str, list[bytes]] = {}
    for line in good:
        item = json.loads(line)
        day = datetime.fromtimestamp(item["created_utc"], UTC).date().isoformat()
        partition = f"raw/reddit/comments/subreddit={item['subreddit']}/dt={day}"
        expected.setdefault(partition, []).append(line)
    assert per_partition == expected


def test_chunk_bytes_below_the_read_size_still_splits_the_dump(
    tmp_path: Path, lake: LocalLake
) -> None:
    result = stage_dump(
        write_dump(tmp_path, _many_lines_with_bad_ones()), lake, Window(), chunk_bytes=1024
    )
    assert len(result.batch_ids) > 5


@pytest.mark.parametrize("codec", ["gzip", "zstd"])
def test_raw_batches_of_both_codecs_are_readable_by_duckdb(
    tmp_path: Path, lake: LocalLake, codec: str
) -> None:
    lines = [
        record(f"k{i}", sub=("python", "rust")[i % 2], created=T0 + i * 7200, body="数据 🦀")
        for i in range(40)
    ]
    result = stage_dump(write_dump(tmp_path, lines), lake, Window(), codec=codec)
    pattern = str(lake.root / "raw/reddit/comments/*/*/*")

    con = duck.connect()
    try:
        rows = con.execute(
            f"select json_extract_string(json, '$.id'), json_extract_string(json, '$.body') "
            f"from read_ndjson_objects({duck.quote_literal(pattern)}) order by 1"
        ).fetchall()
    finally:
        con.close()

    assert len(result.raw_keys) > 2
    assert sorted(ident for ident, _ in rows) == sorted(f"k{i}" for i in range(40))
    assert {body for _, body in rows} == {"数据 🦀"}


@pytest.mark.parametrize(
    ("name", "kind", "lines"),
    [("RS_2024-03.zst", "posts", 610), ("RC_2024-03.zst", "comments", 3015)],
)
def test_bundled_sample_stages_all_but_its_five_malformed_lines(
    tmp_path: Path, lake: LocalLake, name: str, kind: str, lines: int
) -> None:
    result = stage_dump(settings.SAMPLE_DIR / name, lake, Window())
    assert result.kind == kind
    assert result.lines == lines
    assert result.quarantined == 5
    assert dict(result.quarantine_reasons) == {
        "not valid JSON": 2,
        "not a JSON object": 1,
        "missing id": 1,
        "unusable created_utc": 1,
    }
    assert set(result.staged) == {
        "python",
        "dataengineering",
        "rust",
        "datascience",
        "askhistorians",
    }
    assert sum(result.staged.values()) == lines - 5
    assert {key.split("/")[4] for key in result.raw_keys} == {
        f"dt=2024-03-0{day}" for day in range(1, 8)
    }


def test_truncated_dump_stages_complete_lines_and_reports_the_error(
    tmp_path: Path, lake: LocalLake
) -> None:
    lines = [record(f"t{i}", created=T0 + i, body="x" * (i % 50)) for i in range(5000)]
    frame = zstandard.ZstdCompressor(level=3).compress(b"\n".join(lines) + b"\n")
    path = tmp_path / "RC_2024-03.zst"
    path.write_bytes(frame[: len(frame) // 2])

    result = stage_dump(path, lake, Window())

    assert len(result.errors) == 1 and "RC_2024-03.zst" in result.errors[0]
    assert 0 < result.staged["python"] < len(lines)
    staged = [line for batch in staged_lines(lake, result).values() for line in batch]
    assert staged == lines[: len(staged)]
