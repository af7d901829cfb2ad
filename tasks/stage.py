"""Stage: dump lines -> raw batches in the lake, malformed lines -> quarantine.

The raw layer is lossless: each kept line is written byte for byte as it came out of the dump,
grouped by subreddit and day under a deterministic key, so a rerun overwrites, never duplicates.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import zstandard
from isal import igzip
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks import duck, faults, settings
from tasks.dumps import DumpTail, LineChunk, dump_kind, iter_line_chunks
from tasks.lake import Lake
from tasks.progress import file_progress

CODEC_SUFFIX = {"gzip": "ndjson.gz", "zstd": "ndjson.zst"}


@dataclass(frozen=True)
class Window:
    """Which items to keep: subreddits (empty = all), a time window, and per-subreddit lower
    bounds from the watermarks (epoch seconds, already minus the overlap)."""

    subreddits: tuple[str, ...] = ()
    since: datetime | None = None
    until: datetime | None = None
    lower_bounds: tuple[tuple[str, float], ...] = ()

    def digest(self) -> str:
        text = json.dumps(
            [
                self.subreddits,
                self.since.isoformat() if self.since else None,
                self.until.isoformat() if self.until else None,
                self.lower_bounds,
            ]
        )
        return hashlib.sha256(text.encode()).hexdigest()[:10]


@dataclass
class StageResult:
    """What staging one input produced; the counts feed the run summary and the state store."""

    kind: str
    source_file: str
    lines: int = 0
    blank: int = 0
    quarantined: int = 0
    skipped: int = 0
    read: Counter[str] = field(default_factory=Counter)
    staged: Counter[str] = field(default_factory=Counter)
    raw_keys: list[str] = field(default_factory=list)
    raw_bytes: int = 0
    batch_ids: list[str] = field(default_factory=list)
    newest: dict[str, tuple[float, str]] = field(default_factory=dict)
    quarantine_reasons: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)


def batch_id_for(path: Path, window: Window, chunk_index: int, source: str = "dump") -> str:
    """The same input and window always give the same batch id, so reruns overwrite. The id
    starts with the source ('dump', 'sample', 'api'): a rebuild from the lake alone can tell
    which watermarks a batch belongs to."""
    stem = path.name.removesuffix(".zst")
    identity = f"{path.name}|{path.stat().st_size}|{window.digest()}"
    digest = hashlib.sha256(identity.encode()).hexdigest()[:10]
    return f"{source}-{stem}-{digest}-{chunk_index:04d}"


def source_of_batch(batch_id: str) -> str:
    return batch_id.split("-", 1)[0]


def raw_key(kind: str, subreddit: str, dt: str, batch_id: str, codec: str) -> str:
    return (
        f"{settings.RAW_PREFIX}/{kind}/subreddit={subreddit}/dt={dt}/"
        f"{batch_id}.{CODEC_SUFFIX[codec]}"
    )


def compress(data: bytes | memoryview, codec: str) -> bytes:
    # isal's gzip is several times faster than zlib's and writes a standard gzip member;
    # both release the GIL, so partitions compress in parallel threads.
    if codec == "gzip":
        return igzip.compress(data, compresslevel=1, mtime=0)
    return zstandard.ZstdCompressor(level=3).compress(data)


def _sanitize(chunk: LineChunk) -> tuple[bytes, list[tuple[int, str, str]]]:
    """DuckDB's line reader takes a bare CR as a line break, stops at invalid UTF-8 and splits
    on our delimiter byte; lines with those bytes (never valid NDJSON records, bar a trailing
    CR) are quarantined here and blanked so line numbers stay exact. Fast path: a memchr scan."""
    data = chunk.data
    clean = b"\r" not in data and b"\x01" not in data
    if clean:
        try:
            data.decode("utf-8")
            return data, []
        except UnicodeDecodeError:
            pass
    out: list[bytes] = []
    rejected: list[tuple[int, str, str]] = []
    for offset, line in enumerate(data.split(b"\n")[:-1]):
        line = line.removesuffix(b"\r")
        reason = None
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            reason, text = "invalid UTF-8", line.decode("utf-8", "backslashreplace")
        if reason is None and ("\r" in text or "\x01" in text):
            reason = "control character outside a JSON string"
        if reason:
            rejected.append((chunk.first_line + offset, reason, text))
            out.append(b"")
        else:
            out.append(line)
    return b"\n".join(out) + b"\n", rejected


def _filter_sql(window: Window) -> str:
    conditions = ["reason is null"]
    if window.subreddits:
        names = ", ".join(duck.quote_literal(s.lower()) for s in window.subreddits)
        conditions.append(f"subreddit in ({names})")
    if window.since:
        conditions.append(f"created_utc >= {window.since.timestamp()}")
    if window.until:
        conditions.append(f"created_utc < {window.until.timestamp()}")
    if window.lower_bounds:
        conditions.append(
            "created_utc >= coalesce((select b.lower_bound from stage_bounds b "
            "where b.subreddit = classified.subreddit), -1e18)"
        )
    return " and ".join(conditions)


class ChunkStager:
    """Stages the chunks of one input through one DuckDB connection."""

    def __init__(
        self, lake: Lake, kind: str, source_file: str, window: Window, codec: str, tmp_dir: Path
    ) -> None:
        self.lake, self.kind, self.window, self.codec = lake, kind, window, codec
        self.tmp_dir = tmp_dir
        self.result = StageResult(kind=kind, source_file=source_file)
        self.con = duck.connect()
        self.con.execute("create temp table stage_bounds (subreddit varchar, lower_bound double)")
        if window.lower_bounds:
            self.con.executemany(
                "insert into stage_bounds values (lower(?), ?)", list(window.lower_bounds)
            )
        self.classify_sql = duck.read_sql("process/classify_lines.sql")
        self.filter_sql = _filter_sql(window)
        self.subreddit_sql = _filter_sql(Window(subreddits=window.subreddits))
        self.pool = ThreadPoolExecutor(max_workers=2)

    def stage(self, chunk: LineChunk, batch_id: str) -> None:
        data, rejected = _sanitize(chunk)
        chunk_path = self.tmp_dir / f"{batch_id}.ndjson"
        chunk_path.write_bytes(data)
        sql = self.classify_sql.replace("$chunk_path", duck.quote_literal(str(chunk_path)))
        sql = sql.replace("$first_line", str(chunk.first_line))
        self.con.execute(f"create or replace temp table classified as {sql}")
        chunk_path.unlink()

        res = self.result
        res.lines += chunk.line_count
        res.batch_ids.append(batch_id)
        self._quarantine(batch_id, rejected)
        self._write_raw(batch_id)
        faults.crash_point("stage:chunk")

    def _quarantine(self, batch_id: str, rejected: list[tuple[int, str, str]]) -> None:
        rows = (
            rejected
            + self.con.execute(
                "select line_no, reason, raw from classified "
                "where reason is not null and reason <> 'blank' order by line_no"
            ).fetchall()
        )
        blank = self.con.execute(
            "select count(*) from classified where reason = 'blank'"
        ).fetchone()
        self.result.blank += (blank[0] if blank else 0) - len(rejected)
        if not rows:
            return
        rows.sort()
        lines = [
            json.dumps(
                {"file": self.result.source_file, "line": line, "reason": reason, "raw": raw},
                ensure_ascii=False,
            )
            for line, reason, raw in rows
        ]
        key = f"{settings.QUARANTINE_PREFIX}/{self.kind}/{batch_id}.ndjson"
        self.lake.put_bytes(key, ("\n".join(lines) + "\n").encode())
        self.result.quarantined += len(rows)
        self.result.quarantine_reasons.update(reason for _, reason, _ in rows)

    def _write_raw(self, batch_id: str) -> None:
        res = self.result
        kept = self.con.execute(
            f"select count(*) from classified where reason is null and not ({self.filter_sql})"
        ).fetchone()
        res.skipped += kept[0] if kept else 0
        res.read.update(
            dict(
                self.con.execute(
                    f"select subreddit, count(*) from classified where {self.subreddit_sql} "
                    "group by subreddit"
                ).fetchall()
            )
        )
        groups = self.con.execute(
            f"""
            select
                subreddit,
                dt,
                count(*) as n,
                max(struct_pack(c := created_utc, i := id)).i,
                max(created_utc)
            from classified where {self.filter_sql}
            group by subreddit, dt order by subreddit, dt
            """
        ).fetchall()
        if not groups:
            return
        # One Arrow string column whose values end in '\n', sorted by partition: each
        # partition's file content is then one contiguous slice of the values buffer.
        lines = self.con.sql(
            f"""
            select raw || chr(10) as line from classified where {self.filter_sql}
            order by subreddit, dt, line_no
            """
        ).to_arrow_table()
        column = lines.column("line").cast(pa.large_string()).combine_chunks()
        values = memoryview(column.buffers()[2])
        offset_array = _offsets(column)
        jobs = []
        start = 0
        for subreddit, dt, count, newest_id, newest_created in groups:
            end = start + count
            body = values[offset_array[start] : offset_array[end]]
            key = raw_key(self.kind, subreddit, dt, batch_id, self.codec)
            jobs.append((key, self.pool.submit(compress, body, self.codec)))
            start = end
            res.staged[subreddit] += count
            current = res.newest.get(subreddit)
            if current is None or (newest_created, newest_id) > current:
                res.newest[subreddit] = (newest_created, newest_id)
        for key, future in jobs:
            payload = future.result()
            self.lake.put_bytes(key, payload)
            res.raw_keys.append(key)
            res.raw_bytes += len(payload)

    def close(self) -> None:
        self.pool.shutdown()
        self.con.close()


def _offsets(column: pa.LargeStringArray) -> np.ndarray:
    raw = np.frombuffer(column.buffers()[1], dtype=np.int64)
    return raw[column.offset : column.offset + len(column) + 1]


def stage_dump(
    path: Path,
    lake: Lake,
    window: Window,
    codec: str = "gzip",
    chunk_bytes: int = settings.CHUNK_BYTES,
    on_progress: Callable[[int], None] | None = None,
    source: str = "dump",
) -> StageResult:
    """Stream one dump into raw batches; bounded memory whatever the dump's size."""
    kind = dump_kind(path)
    tail = DumpTail()
    with tempfile.TemporaryDirectory(prefix="reddit-stage-") as tmp:
        stager = ChunkStager(lake, kind, path.name, window, codec, Path(tmp))
        try:
            for index, chunk in enumerate(
                iter_line_chunks(
                    path,
                    chunk_bytes,
                    min(chunk_bytes, settings.READ_BYTES),
                    on_progress=on_progress,
                    tail=tail,
                )
            ):
                stager.stage(chunk, batch_id_for(path, window, index, source))
        finally:
            stager.close()
    if tail.error:
        stager.result.errors.append(f"{path.name}: {tail.error}")
    return stager.result


def stage_records(
    lines: Iterable[bytes],
    kind: str,
    source_name: str,
    batch_id: str,
    lake: Lake,
    window: Window,
    codec: str = "gzip",
) -> StageResult:
    """Stage records that arrive as JSON lines from elsewhere (the Reddit API) the same way."""
    data = b"".join(line.rstrip(b"\n") + b"\n" for line in lines)
    with tempfile.TemporaryDirectory(prefix="reddit-stage-") as tmp:
        stager = ChunkStager(lake, kind, source_name, window, codec, Path(tmp))
        try:
            if data:
                stager.stage(LineChunk(data, 1, data.count(b"\n")), batch_id)
        finally:
            stager.close()
    return stager.result


@task(name="stage-dump", cache_policy=NO_CACHE)
def stage_dump_task(
    path: Path, lake: Lake, window: Window, codec: str, chunk_bytes: int, source: str = "dump"
) -> StageResult:
    """Local file in, local lake out: nothing transient to retry, so no retries."""
    with file_progress(path) as on_progress:
        return stage_dump(
            path, lake, window, codec, chunk_bytes, on_progress=on_progress, source=source
        )
