"""Any single line among good ones: it is kept byte for byte or quarantined with a reason, the
good lines always land, and nothing about one line's content fails the staging or the run.

The line comes from tests/strategies.py (edge values of every field, wrong types, odd strings,
invalid UTF-8, JSON whitespace and escapes); it is staged through the real stage_dump on a
zstd file, and for a few examples through the whole flow into a DuckDB warehouse.
"""

from __future__ import annotations

import gzip
import io
import json
import math
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pytest
import zstandard
from hypothesis import example, given, settings
from hypothesis import strategies as st
from strategies import NOW, REDDIT_EPOCH, budget, huge_line, single_lines

from tasks.extract.stage import Window, stage_dump
from tasks.lake.local import LocalLake
from tasks.settings import SUBREDDIT_PATTERN

GOOD_COUNT = 6
T0 = 1_714_521_600  # 2024-05-01T00:00:00Z


def good_lines() -> list[bytes]:
    return [
        json.dumps(
            {
                "id": f"good{n:02d}",
                "subreddit": "python",
                "author": "a",
                "title": f"good {n}",
                "score": n,
                "created_utc": T0 + n * 3600,
                "retrieved_on": T0 + 86_400,
            }
        ).encode()
        for n in range(GOOD_COUNT)
    ]


def with_line(line: bytes, position: int) -> list[bytes]:
    lines = good_lines()
    lines.insert(position, line)
    return lines


def write_zstd(path: Path, lines: list[bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(zstandard.ZstdCompressor(level=3).compress(b"\n".join(lines) + b"\n"))
    return path


def _strict_json(line: bytes) -> Any:
    def refuse(token: str) -> Any:
        raise ValueError(token)

    return json.loads(line.decode("utf-8"), parse_constant=refuse)


def is_valid_record(line: bytes) -> bool:
    """What must land: a strict JSON object with a base36 id, a subreddit Reddit could name,
    and a created_utc (number or numeric string) between Reddit's opening and now."""
    try:
        record = _strict_json(line)
    except ValueError:
        return False
    # A bare CR (JSON whitespace no encoder writes) and a lone surrogate escape (no UTF-8
    # form) may be quarantined with their reason: only lines without them must land.
    if b"\r" in line or line.startswith(b"\xef\xbb\xbf") or not isinstance(record, dict):
        return False
    try:
        json.dumps(record, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    ident, subreddit, created = (record.get(k) for k in ("id", "subreddit", "created_utc"))
    if not isinstance(ident, str) or not re.fullmatch(r"[0-9a-z]{1,13}", ident):
        return False
    if not isinstance(subreddit, str) or not re.match(SUBREDDIT_PATTERN, subreddit):
        return False
    if isinstance(created, str) and re.fullmatch(r"[0-9]{1,12}(\.[0-9]{1,6})?", created):
        created = float(created)
    if isinstance(created, bool) or not isinstance(created, int | float):
        return False
    return math.isfinite(created) and REDDIT_EPOCH <= created <= NOW


def _decompressed(path: Path) -> bytes:
    """A lake file's bytes whatever its codec (the raw codec is a setting)."""
    data = path.read_bytes()
    if path.name.endswith(".gz"):
        return gzip.decompress(data)
    if path.name.endswith(".zst"):
        return zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)).read()
    return data


@dataclass
class Landed:
    """Where a staged dump's lines went, read back from the lake folder alone."""

    raw: list[bytes]
    quarantine: list[dict[str, Any]]
    processed_ids: list[str]
    stray_files: list[Path]

    @classmethod
    def read(cls, root: Path, lake_dir: Path) -> Landed:
        raw = [
            line
            for path in sorted((lake_dir / "raw").rglob("*"))
            if path.is_file() and not path.name.startswith(".")
            for line in _decompressed(path).split(b"\n")[:-1]
        ]
        quarantine = [
            json.loads(line)
            for path in sorted((lake_dir / "quarantine").rglob("*"))
            if path.is_file() and not path.name.startswith(".")
            for line in _decompressed(path).decode("utf-8").split("\n")
            if line
        ]
        parquet = sorted((lake_dir / "processed").rglob("*.parquet"))
        ids: list[str] = []
        if parquet:
            con = duckdb.connect()
            files = ", ".join("'" + str(p).replace("'", "''") + "'" for p in parquet)
            ids = [r[0] for r in con.execute(f"select id from read_parquet([{files}])").fetchall()]
            con.close()
        # The warehouse and state files sit beside the lake, the dump in in/; nothing a line
        # holds may place a file anywhere else.
        stray = [
            p
            for p in root.rglob("*")
            if p.is_file()
            and p.parent != root
            and not p.is_relative_to(lake_dir)
            and not p.is_relative_to(root / "in")
        ]
        return cls(raw, quarantine, ids, stray)


def assert_line_kept_or_quarantined(landed: Landed, line: bytes, line_no: int) -> None:
    good = good_lines()
    for g in good:
        assert landed.raw.count(g) == 1, f"good line lost or doubled: {g!r}"
    for n in range(GOOD_COUNT):
        assert f"good{n:02d}" in landed.processed_ids, f"good{n:02d} missing from processed"
    assert not landed.stray_files, f"files written outside the lake: {landed.stray_files}"
    # A CR before the newline is a CRLF line end, which staging cuts to LF: not content.
    body = line.removesuffix(b"\r")
    kept = landed.raw.count(body) if body not in good else landed.raw.count(body) - 1
    entries = [e for e in landed.quarantine if e.get("line") == line_no]
    blank = body.strip(b" \t") == b""
    assert kept in (0, 1), f"line kept {kept} times"
    if blank:
        assert not kept and not entries, "a blank line is counted, neither kept nor quarantined"
    else:
        assert kept + len(entries) == 1, (
            f"the line must be kept exactly or quarantined once: kept {kept}, "
            f"quarantined {len(entries)}"
        )
    for entry in landed.quarantine:
        assert entry.get("reason"), f"quarantine entry without a reason: {entry}"
    assert len(landed.raw) == len(landed.processed_ids), (
        "every raw line must be a processed row (raw and processed disagree)"
    )
    if is_valid_record(line):
        assert kept == 1, "a valid record was not kept"


def stage_among_good_lines(line: bytes, position: int) -> tuple[Landed, int]:
    """Stage the good lines with `line` at `position` through stage_dump into a fresh lake;
    where everything landed, and the line's 1-based number in the dump."""
    root = Path(tempfile.mkdtemp(prefix="single-line-"))
    try:
        dump = write_zstd(root / "in" / "RS_2024-05.zst", with_line(line, position))
        lake_dir = root / "lake"
        stage_dump(dump, LocalLake(lake_dir), Window(), process=True)
        return Landed.read(root, lake_dir), position + 1
    finally:
        shutil.rmtree(root, ignore_errors=True)


@settings(max_examples=budget(ci=100, fuzz=5_000))
@given(line=single_lines("posts"), position=st.integers(0, GOOD_COUNT))
@example(line=huge_line(), position=3)
def test_any_single_line_is_kept_exactly_or_quarantined_and_the_good_lines_land(
    line: bytes, position: int
) -> None:
    landed, line_no = stage_among_good_lines(line, position)
    assert_line_kept_or_quarantined(landed, line, line_no)


@pytest.mark.e2e
def test_any_single_line_never_fails_a_whole_run(prefect_api: str) -> None:
    """The same property through the whole flow (model, checks, load): fewer examples, each
    a run of a second or two."""
    from flows.main import reddit_pipeline
    from tasks.config import PipelineConfig

    @settings(max_examples=budget(ci=3, fuzz=200))
    @given(line=single_lines("posts"), position=st.integers(0, GOOD_COUNT))
    @example(line=b'{"id":"edge1","subreddit":"python","created_utc":1e20}', position=1)
    @example(line=b'{"id":"edge2","subreddit":"../..","created_utc":1714521600}', position=4)
    def run_one(line: bytes, position: int) -> None:
        root = Path(tempfile.mkdtemp(prefix="single-line-run-"))
        try:
            dump = write_zstd(root / "in" / "RS_2024-05.zst", with_line(line, position))
            lake_dir = root / "lake"
            warehouse = root / "warehouse.duckdb"
            summary = reddit_pipeline(
                PipelineConfig(
                    source="dump",
                    dump_paths=[dump],
                    lake_dir=lake_dir,
                    warehouse_path=warehouse,
                    state_path=root / "state.duckdb",
                )
            )
            assert summary.status == "completed"
            landed = Landed.read(root, lake_dir)
            assert_line_kept_or_quarantined(landed, line, position + 1)
            con = duckdb.connect(str(warehouse), read_only=True)
            loaded = {r[0] for r in con.execute("select id from posts").fetchall()}
            con.close()
            assert {f"good{n:02d}" for n in range(GOOD_COUNT)} <= loaded
            assert loaded == set(landed.processed_ids), "the warehouse and the lake disagree"
        finally:
            shutil.rmtree(root, ignore_errors=True)

    run_one()
