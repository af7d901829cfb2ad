"""Stage: dump lines -> raw batches in the lake, malformed lines -> quarantine.

The raw layer is lossless: each kept line is written byte for byte as it came out of the dump,
grouped by subreddit and day under a deterministic key, so a rerun overwrites, never duplicates.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks import settings
from tasks.core import duck, faults
from tasks.extract.dumps import (
    DumpTail,
    LineChunk,
    dump_kind,
    iter_line_chunks,
    line_offsets,
    read_ahead,
)
from tasks.extract.progress import file_progress
from tasks.extract.reddit_api.things import newer_mark
from tasks.lake import (
    RECORD_SUBREDDIT_PATTERN,
    Lake,
    RawBodies,
    batch_id_for,
    batch_retrieved_utc,
    compress,
    raw_key,
)
from tasks.process import ProcessResult, copy_partitioned_sql, process_sql, publish_partitions

# How many lines of a dump's start _check_kind looks at.
KIND_SAMPLE_LINES = 1000


class WrongKindError(ValueError):
    """A dump whose records are of the other kind than its name says."""


class DamagedInputError(RuntimeError):
    """One input or more were damaged (truncated, corrupt): what was read is staged, but the
    run must not load part of a dump as if it were the whole."""


def damaged_input_error(stages: Iterable[StageResult]) -> DamagedInputError | None:
    """The error for the damaged inputs among `stages`, one line naming each file and where
    its damage is; None when every input was read whole."""
    damage = [error for stage in stages for error in stage.errors]
    if not damage:
        return None
    return DamagedInputError(
        "damaged input: " + "; ".join(damage) + ". Nothing was loaded and no watermark moved; "
        "fetch the file again, or rerun with --keep-partial-input to load what was read"
    )


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
    # Values of staged items that became null for being of the wrong type or out of bounds
    # (a string score, an edited of 1e20), per field; the item itself is kept.
    coerced: Counter[str] = field(default_factory=Counter)
    # Damage to the input itself (a truncated or corrupt dump), "file: what, where": the run
    # fails on it unless told to keep what was read (flows.main, damaged_input_error).
    errors: list[str] = field(default_factory=list)
    # What staging wrote to processed/ when it processed as it went (the DuckDB engine).
    processed: ProcessResult = field(init=False)

    def __post_init__(self) -> None:
        self.processed = ProcessResult(kind=self.kind)


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


LONG_LINE = f"line longer than {settings.MAX_LINE_BYTES} bytes"


def _long_line_text(line: bytes) -> str:
    """What the quarantine keeps of an over-long line: its first bytes (the size is kept
    beside them)."""
    return line[: settings.QUARANTINE_HEAD_BYTES].decode("utf-8", "backslashreplace")


def _sanitize(
    chunk: LineChunk,
) -> tuple[bytes | bytearray, list[tuple[int, str, str]], dict[int, int]]:
    """Lines become Arrow strings, which must be valid UTF-8, and a CRLF line end is cut to
    LF; a line with invalid UTF-8 or a bare CR (which no JSON encoder writes) is quarantined
    here and blanked so line numbers stay exact, and so is a line longer than
    settings.MAX_LINE_BYTES, which never reaches DuckDB's JSON parser (a 50 MB line made it
    run out of memory with nothing staged). The reader already blanked the lines too long to
    hold (chunk.long_lines). Fast path: a memchr scan, a SIMD check and one subtraction.
    Also returns the sizes of the long lines, by line number."""
    data = chunk.data
    rejected = [(long.line_no, LONG_LINE, _long_line_text(long.head)) for long in chunk.long_lines]
    sizes = {long.line_no: long.size for long in chunk.long_lines}
    too_long = bool(np.any(np.diff(chunk.offsets) > settings.MAX_LINE_BYTES + 1))
    if not too_long and b"\r" not in data and _is_utf8(data):
        return data, rejected, sizes
    out: list[bytes] = []
    for offset, line in enumerate(data.split(b"\n")[:-1]):
        line = line.removesuffix(b"\r")
        reason = None
        if len(line) > settings.MAX_LINE_BYTES:
            reason, text = LONG_LINE, _long_line_text(line)
            sizes[chunk.first_line + offset] = len(line)
        else:
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError:
                reason, text = "invalid UTF-8", line.decode("utf-8", "backslashreplace")
        if reason is None and "\r" in text:
            reason = "control character outside a JSON string"
        if reason:
            rejected.append((chunk.first_line + offset, reason, text))
            out.append(b"")
        else:
            out.append(line)
    return b"\n".join(out) + b"\n", rejected, sizes


def _filter_sql(window: Window) -> str:
    conditions = ["reason is null"]
    if window.subreddits:
        names = ", ".join(duck.quote_literal(s.lower()) for s in window.subreddits)
        conditions.append(f"subreddit_key in ({names})")
    if window.since:
        conditions.append(f"created_utc >= {window.since.timestamp()}")
    if window.until:
        conditions.append(f"created_utc < {window.until.timestamp()}")
    if window.lower_bounds:
        conditions.append(
            "created_utc >= coalesce((select b.lower_bound from stage_bounds b "
            "where b.subreddit = classified.subreddit_key), -1e18)"
        )
    return " and ".join(conditions)


class ChunkLines:
    """A chunk's lines as an Arrow string column over the chunk's own bytes (no copy): each
    value is one line with its '\n', so any selection of lines, taken in order, is byte for
    byte what the dump held."""

    def __init__(self, data: bytes | bytearray, first_line: int, offsets: np.ndarray) -> None:
        self.offsets = offsets
        ends = offsets[1:]
        self.raw = pa.Array.from_buffers(
            pa.large_string(), len(ends), [None, pa.py_buffer(self.offsets), pa.py_buffer(data)]
        )
        self.first_line = first_line
        self.data = data
        self.table = pa.table(
            {
                "line_no": np.arange(first_line, first_line + len(ends), dtype=np.int64),
                "raw": self.raw,
            }
        )

    def text(self, line_no: int) -> str:
        """One line as text, without its line end (for the quarantine)."""
        i = line_no - self.first_line
        return self.data[self.offsets[i] : self.offsets[i + 1] - 1].decode("utf-8")

    def joined(self, line_numbers: np.ndarray) -> bytes | memoryview:
        """The given lines (ascending), concatenated: a view of the chunk when they are
        consecutive (a per-subreddit dump, a day's run of lines), else one gathered copy."""
        index = line_numbers - self.first_line
        if index[-1] - index[0] == len(index) - 1:
            return memoryview(self.data)[self.offsets[index[0]] : self.offsets[index[-1] + 1]]
        taken = pc.take(self.raw, pa.array(index))
        return RawBodies(pa.chunked_array([taken])).slice(0, len(taken))


def _compress_lines(lines: ChunkLines, line_numbers: np.ndarray, codec: str) -> bytes:
    return compress(lines.joined(line_numbers), codec)


class ChunkStager:
    """Stages the chunks of one input through one DuckDB connection; use it in a `with`,
    which closes the connection, the compress workers and the scratch folder.

    Each chunk's JSON is parsed once, by the kind's process model; with `process` the same
    parsed rows are also written as processed Parquet (the DuckDB process engine), so a run
    never reads its raw batches back."""

    def __init__(
        self,
        lake: Lake,
        kind: str,
        source_file: str,
        window: Window,
        codec: str,
        process: bool = False,
        check_kind: bool = False,
    ) -> None:
        self.lake, self.kind, self.window, self.codec = lake, kind, window, codec
        self.process, self.check_kind = process, check_kind
        self.scratch = tempfile.TemporaryDirectory(prefix="reddit-stage-")
        self.tmp_dir = Path(self.scratch.name)
        self.result = StageResult(kind=kind, source_file=source_file)
        self.con = duck.connect(memory_limit=settings.DUCKDB_STAGE_MEMORY_LIMIT, bounded=True)
        self.con.execute("create temp table stage_bounds (subreddit varchar, lower_bound double)")
        if window.lower_bounds:
            self.con.executemany(
                "insert into stage_bounds values (lower(?), ?)", list(window.lower_bounds)
            )
        self.con.execute(
            "create temp macro valid_subreddit(name) as regexp_full_match(name, "
            f"{duck.quote_literal(RECORD_SUBREDDIT_PATTERN)})"
        )
        self.classify_sql = (
            f"with processed as ({process_sql(kind, coerced=True)}) "
            f"{duck.read_sql('process/classify_lines.sql')}"
        )
        self.unparsed_sql = duck.read_sql("process/unparsed_reason.sql")
        self.filter_sql = _filter_sql(window)
        self.wanted = {s.lower() for s in window.subreddits}
        self.pool = ThreadPoolExecutor(max_workers=2)

    def stage(self, chunk: LineChunk, batch_id: str) -> None:
        data, rejected, sizes = _sanitize(chunk)
        # _sanitize returns the chunk's own bytes unless it had to blank or cut lines.
        offsets = chunk.offsets if data is chunk.data else line_offsets(data)
        lines = ChunkLines(data, chunk.first_line, offsets)
        del data
        retrieved = batch_retrieved_utc(batch_id)
        self.con.register("chunk_lines", lines.table)
        self.con.execute(
            "create or replace temp view raw_lines as select line_no, raw, "
            f"cast({retrieved or 'null'} as double) as batch_retrieved_utc from chunk_lines"
        )
        self.con.execute(f"create or replace temp table classified as {self.classify_sql}")
        if self.check_kind:
            self._check_kind()
            self.check_kind = False  # a dump holds one kind: its first lines tell
        self.con.unregister("chunk_lines")

        res = self.result
        res.lines += chunk.line_count
        res.batch_ids.append(batch_id)
        self._quarantine(batch_id, lines, rejected, sizes)
        self._count_coerced()
        raw_jobs = self._compress_raw(batch_id, lines)
        del lines
        if self.process:
            self._write_processed(batch_id)
        for key, future in raw_jobs:
            payload = future.result()
            self.lake.put_bytes(key, payload)
            res.raw_keys.append(key)
            res.raw_bytes += len(payload)
        self.con.execute("drop table classified")
        faults.crash_point("stage:chunk")

    def _check_kind(self) -> None:
        """Fail a dump whose records are of the other kind (a comments dump named RS_...):
        staged as posts they would load as posts without titles. Every post has a title and
        every comment a link_id: the first lines of the dump having the other kind's field
        and not their own is the sign. Read from the first chunk's first lines only."""
        own = settings.KIND_HALLMARK[self.kind]
        other_kind = next(k for k in settings.KINDS if k != self.kind)
        other = settings.KIND_HALLMARK[other_kind]
        sampled, foreign = self.con.execute(
            f"""
            select
                count(*),
                count(*) filter (
                    where try(json_exists(raw, '$.{other}'))
                        and not try(json_exists(raw, '$.{own}'))
                )
            from (select raw from raw_lines limit {KIND_SAMPLE_LINES})
            """
        ).fetchall()[0]
        if foreign * 2 > sampled:
            right = "RC_YYYY-MM.zst or <subreddit>_comments.zst"
            if other_kind == "posts":
                right = "RS_YYYY-MM.zst or <subreddit>_submissions.zst"
            raise WrongKindError(
                f"{self.result.source_file}: its name says {self.kind}, but {foreign} of its "
                f"first {sampled} lines have a {other!r} and no {own!r}: they are "
                f"{other_kind}. Rename the file ({right}); nothing of it was staged"
            )

    def _count_coerced(self) -> None:
        found = self.con.execute(
            f"select field, count(*) from (select unnest(coerced) as field from classified "
            f"where {self.filter_sql}) group by field"
        ).fetchall()
        self.result.coerced.update(dict(found))

    def _quarantine(
        self,
        batch_id: str,
        lines: ChunkLines,
        rejected: list[tuple[int, str, str]],
        sizes: dict[int, int],
    ) -> None:
        found = self.con.execute(
            "select line_no, reason from classified where reason is not null"
        ).fetchall()
        unparsed = [line for line, reason in found if reason == "unparsed"]
        if unparsed:
            self.con.register(
                "unparsed_lines",
                pa.table(
                    {
                        "line_no": pa.array(unparsed, pa.int64()),
                        "raw": pa.array([lines.text(line) for line in unparsed], pa.string()),
                    }
                ),
            )
            found = [row for row in found if row[1] != "unparsed"]
            found += self.con.execute(self.unparsed_sql).fetchall()
            self.con.unregister("unparsed_lines")
        # Lines _sanitize rejected were blanked, so they read as blank lines here too.
        self.result.blank += sum(1 for _, reason in found if reason == "blank") - len(rejected)
        rows = rejected + [
            (line, reason, lines.text(line)) for line, reason in found if reason != "blank"
        ]
        if not rows:
            return
        rows.sort()
        entries = [
            json.dumps(
                {"file": self.result.source_file, "line": line, "reason": reason, "raw": raw}
                # An over-long line keeps only its head in `raw`: its size says how much more.
                | ({"bytes": sizes[line]} if line in sizes else {}),
                ensure_ascii=False,
            )
            for line, reason, raw in rows
        ]
        key = f"{settings.QUARANTINE_PREFIX}/{self.kind}/{batch_id}.ndjson"
        self.lake.put_bytes(key, ("\n".join(entries) + "\n").encode())
        self.result.quarantined += len(rows)
        self.result.quarantine_reasons.update(reason for _, reason, _ in rows)

    def _compress_raw(self, batch_id: str, lines: ChunkLines) -> list[tuple[str, Future[bytes]]]:
        """Start compressing the kept lines of each (subreddit, day); the caller collects."""
        res = self.result
        # One pass over the good lines: per (subreddit, day), whether the window keeps them,
        # how many there are and the newest of them.
        stats = self.con.execute(
            f"""
            select
                subreddit_key,
                dt,
                ({self.filter_sql}) as kept,
                count(*) as n,
                max(struct_pack(c := created_utc, l := length(id), i := id)).i,
                max(created_utc)
            from classified where reason is null
            group by all order by subreddit_key, dt
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
            return []
        # The kept lines' numbers sorted by partition, in dump order within each: a
        # partition's file is one contiguous run of this list.
        order = self.con.execute(
            f"select line_no from classified where {self.filter_sql} "
            "order by subreddit_key, dt, line_no"
        ).fetchnumpy()["line_no"]
        order = np.asarray(order, dtype=np.int64)
        jobs = []
        start = 0
        for subreddit, dt, count, newest_id, newest_created in groups:
            end = start + count
            key = raw_key(self.kind, subreddit, dt, batch_id, self.codec)
            # Each worker gathers its own partition's lines: only the partitions being
            # compressed are ever copied, never the whole chunk at once.
            job = self.pool.submit(_compress_lines, lines, order[start:end], self.codec)
            jobs.append((key, job))
            start = end
            res.staged[subreddit] += count
            res.newest[subreddit] = newer_mark(
                res.newest.get(subreddit), (newest_created, newest_id)
            )
        return jobs

    def _write_processed(self, batch_id: str) -> None:
        """The kept rows, already typed by the process model, as processed Parquet: the same
        files process_batches would write from this batch's raw files."""
        out = self.tmp_dir / batch_id
        query = (
            "select * exclude (line_no, subreddit_key, reason, coerced) "
            f"from classified where {self.filter_sql}"
        )
        written = self.con.execute(copy_partitioned_sql(query, out)).fetchone()
        publish_partitions(self.lake, self.kind, out, batch_id, self.result.processed)
        self.result.processed.rows += written[0] if written else 0
        shutil.rmtree(out, ignore_errors=True)

    def __enter__(self) -> ChunkStager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.pool.shutdown()
        self.con.close()
        self.scratch.cleanup()


def stage_dump(
    path: Path,
    lake: Lake,
    window: Window,
    codec: str = "gzip",
    chunk_bytes: int = settings.CHUNK_BYTES,
    on_progress: Callable[[int], None] | None = None,
    source: str = "dump",
    process: bool = False,
) -> StageResult:
    """Stream one dump into raw batches (and, with `process`, processed Parquet); bounded
    memory whatever the dump's size."""
    kind = dump_kind(path)
    tail = DumpTail()
    with ChunkStager(lake, kind, path.name, window, codec, process, check_kind=True) as stager:
        reader = read_ahead(
            iter_line_chunks(
                path,
                chunk_bytes,
                min(chunk_bytes, settings.READ_BYTES),
                on_progress=on_progress,
                tail=tail,
            )
        )
        with closing(reader) as chunks:
            index = 0
            while (chunk := next(chunks, None)) is not None:
                stager.stage(chunk, batch_id_for(path, window.digest(), index, source))
                del chunk  # free this chunk before the next one is taken
                index += 1
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
    process: bool = False,
) -> StageResult:
    """Stage records that arrive as JSON lines from elsewhere (the Reddit API) the same way."""
    data = b"".join(line.rstrip(b"\n") + b"\n" for line in lines)
    with ChunkStager(lake, kind, source_name, window, codec, process) as stager:
        if data:
            stager.stage(LineChunk.of(data, 1), batch_id)
    return stager.result


@task(name="stage-dump", cache_policy=NO_CACHE)
def stage_dump_task(
    path: Path,
    lake: Lake,
    window: Window,
    codec: str,
    chunk_bytes: int,
    source: str = "dump",
    process: bool = False,
) -> StageResult:
    """Local file in, local lake out: nothing transient to retry, so no retries."""
    with file_progress(path) as on_progress:
        return stage_dump(
            path, lake, window, codec, chunk_bytes, on_progress, source=source, process=process
        )
