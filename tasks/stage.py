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
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks import duck, faults, settings
from tasks.dumps import DumpTail, LineChunk, dump_kind, iter_line_chunks
from tasks.lake import Lake
from tasks.progress import file_progress
from tasks.raw import RawBodies, compress, raw_key


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


def _is_utf8(data: bytes) -> bool:
    """Whether `data` is valid UTF-8, checked in place by Arrow (SIMD, no decoded copy)."""
    offsets = np.array([0, len(data)], dtype=np.int64)
    array = pa.Array.from_buffers(
        pa.large_string(), 1, [None, pa.py_buffer(offsets), pa.py_buffer(data)]
    )
    try:
        array.validate(full=True)
    except pa.ArrowInvalid:
        return False
    return True


def _sanitize(chunk: LineChunk) -> tuple[bytes, list[tuple[int, str, str]]]:
    """DuckDB's line reader takes a bare CR as a line break, stops at invalid UTF-8 and splits
    on our delimiter byte; lines with those bytes (never valid NDJSON records, bar a trailing
    CR) are quarantined here and blanked so line numbers stay exact. Fast path: a memchr scan."""
    data = chunk.data
    if b"\r" not in data and b"\x01" not in data and _is_utf8(data):
        return data, []
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
        self.con = duck.connect(bounded=True)
        self.con.execute("create temp table stage_bounds (subreddit varchar, lower_bound double)")
        if window.lower_bounds:
            self.con.executemany(
                "insert into stage_bounds values (lower(?), ?)", list(window.lower_bounds)
            )
        self.classify_sql = duck.read_sql("process/classify_lines.sql")
        self.filter_sql = _filter_sql(window)
        self.wanted = {s.lower() for s in window.subreddits}
        self.pool = ThreadPoolExecutor(max_workers=2)

    def stage(self, chunk: LineChunk, batch_id: str) -> None:
        data, rejected = _sanitize(chunk)
        chunk_path = self.tmp_dir / f"{batch_id}.ndjson"
        chunk_path.write_bytes(data)
        del data
        sql = self.classify_sql.replace("$chunk_path", duck.quote_literal(str(chunk_path)))
        sql = sql.replace("$first_line", str(chunk.first_line))
        self.con.execute("drop table if exists classified")
        self.con.execute(f"create temp table classified as {sql}")
        chunk_path.unlink()

        res = self.result
        res.lines += chunk.line_count
        res.batch_ids.append(batch_id)
        self._quarantine(batch_id, rejected)
        self._write_raw(batch_id)
        faults.crash_point("stage:chunk")

    def _quarantine(self, batch_id: str, rejected: list[tuple[int, str, str]]) -> None:
        found = self.con.execute(
            "select line_no, reason, raw from classified where reason is not null"
        ).fetchall()
        rows = rejected + [row for row in found if row[1] != "blank"]
        # Lines _sanitize rejected were blanked, so DuckDB saw them as blank too.
        self.result.blank += sum(1 for row in found if row[1] == "blank") - len(rejected)
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
        # One pass over the good lines: per (subreddit, day), whether the window keeps them,
        # how many there are and the newest of them.
        stats = self.con.execute(
            f"""
            select
                subreddit,
                dt,
                ({self.filter_sql}) as kept,
                count(*) as n,
                max(struct_pack(c := created_utc, i := id)).i,
                max(created_utc)
            from classified where reason is null
            group by all order by subreddit, dt
            """
        ).fetchall()
        groups = []
        for subreddit, dt, kept, count, newest_id, newest_created in stats:
            if not self.wanted or subreddit in self.wanted:
                res.read[subreddit] += count
            if kept:
                groups.append((subreddit, dt, count, newest_id, newest_created))
            else:
                res.skipped += count
        if not groups:
            return
        # Arrow string columns whose values end in '\n', sorted by partition: each
        # partition's file content is then one contiguous slice of a values buffer (or a few,
        # joined, where it straddles two Arrow chunks).
        lines = self.con.sql(
            f"""
            select raw || chr(10) as line from classified where {self.filter_sql}
            order by subreddit, dt, line_no
            """
        ).to_arrow_table()
        bodies = RawBodies(lines.column("line"))
        del lines
        jobs = []
        start = 0
        for subreddit, dt, count, newest_id, newest_created in groups:
            end = start + count
            body = bodies.slice(start, end)
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
        self.con.execute("drop table classified")

    def close(self) -> None:
        self.pool.shutdown()
        self.con.close()


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
            chunks = iter_line_chunks(
                path,
                chunk_bytes,
                min(chunk_bytes, settings.READ_BYTES),
                on_progress=on_progress,
                tail=tail,
            )
            index = 0
            while (chunk := next(chunks, None)) is not None:
                stager.stage(chunk, batch_id_for(path, window, index, source))
                del chunk  # free this chunk before the next one is read
                index += 1
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
