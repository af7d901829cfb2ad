"""Reading Reddit dump files (Pushshift / Arctic Shift): zstd-compressed NDJSON, streamed.

Python only moves bytes here; DuckDB parses the JSON (see stage.py). Chunks are cut at newline
bytes, which never occur inside a multi-byte UTF-8 sequence, so a character split across two
reads is whole again once the chunk is assembled.
"""

from __future__ import annotations

import queue
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO

import numpy as np
import zstandard

from tasks import settings

_MONTHLY = re.compile(r"^(?P<prefix>RS|RC)_\d{4}-\d{2}(-\d{2})?$")
_PER_SUBREDDIT = re.compile(r"^(?P<sub>.+)_(?P<kind>submissions|comments)$")


class DumpError(ValueError):
    """A dump file that cannot be read at all: wrong name, missing, not zstd."""


@dataclass(frozen=True)
class LongLine:
    """A line longer than settings.MAX_LINE_BYTES: the reader kept only its number, its size
    and its first bytes; in the chunk it reads as an empty line, so line numbers stay exact."""

    line_no: int
    size: int
    head: bytes


@dataclass(frozen=True)
class LineChunk:
    """Whole lines of decompressed NDJSON; `first_line` is the 1-based number of the first.
    `data` may be the reader's own buffer (a bytearray): read it, never change it.
    `offsets`: 0, then the offset just past each line's '\n' (found by the reader, so in
    its thread when it reads ahead). `long_lines`: lines of this chunk the reader left out
    (too long to hold), blank in `data`."""

    data: bytes | bytearray
    first_line: int
    offsets: np.ndarray
    long_lines: tuple[LongLine, ...] = ()

    @classmethod
    def of(
        cls, data: bytes | bytearray, first_line: int, long_lines: tuple[LongLine, ...] = ()
    ) -> LineChunk:
        return cls(data, first_line, line_offsets(data), long_lines)

    @property
    def line_count(self) -> int:
        return len(self.offsets) - 1


def line_offsets(data: bytes | bytearray, step: int = 4 * 1024 * 1024) -> np.ndarray:
    """0, then the offset just past each '\n'. Scanned a few MiB at a time: a whole-chunk
    comparison would hold a byte-per-byte mask as large as the chunk."""
    view = np.frombuffer(data, dtype=np.uint8)
    parts = [np.zeros(1, dtype=np.int64)]
    for start in range(0, len(view), step):
        parts.append(np.flatnonzero(view[start : start + step] == 10).astype(np.int64) + start + 1)
    return np.concatenate(parts)


@dataclass
class DumpTail:
    """Set when a dump ends early (a truncated download, damaged bytes): the complete lines
    before the damage are kept; `error` names the damage and `offset` the compressed byte
    where it was found."""

    error: str | None = None
    offset: int | None = None


class DumpDamage(Exception):
    """Damaged zstd data at a byte offset of the compressed file."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.offset = offset


def dump_kind(path: Path) -> str:
    """posts or comments, from the dump's file name."""
    stem = path.name.removesuffix(".zst")
    if match := _MONTHLY.match(stem):
        return "posts" if match["prefix"] == "RS" else "comments"
    if match := _PER_SUBREDDIT.match(stem):
        return "posts" if match["kind"] == "submissions" else "comments"
    raise DumpError(
        f"{path.name}: cannot tell posts from comments by the name; expected RS_YYYY-MM.zst, "
        "RC_YYYY-MM.zst, <subreddit>_submissions.zst or <subreddit>_comments.zst"
    )


def check_dump(path: Path) -> None:
    """Fail before any work when a dump is missing or is not a zstd file."""
    if not path.is_file():
        raise DumpError(f"dump file not found: {path}")
    dump_kind(path)
    with path.open("rb") as handle:
        magic = handle.read(4)
    if magic != b"\x28\xb5\x2f\xfd":
        raise DumpError(f"{path} is not a zstd file (expected a .zst dump)")


_BOM = b"\xef\xbb\xbf"


def iter_line_chunks(
    path: Path,
    chunk_bytes: int = settings.CHUNK_BYTES,
    read_bytes: int = settings.READ_BYTES,
    on_progress: Callable[[int], None] | None = None,
    tail: DumpTail | None = None,
    max_line_bytes: int = settings.MAX_LINE_BYTES,
) -> Iterator[LineChunk]:
    """Yield chunks of whole lines, each about `chunk_bytes` long; memory stays near that size.

    `on_progress` receives compressed bytes consumed so far. A damaged frame ends the stream:
    the complete lines before it are yielded and `tail` says what and where (without a tail,
    DumpError). A line that grows past `max_line_bytes` is not kept: it becomes an empty
    line of its chunk, listed in the chunk's `long_lines`. A UTF-8 byte order mark at the
    start (some tools write one) is not part of the first record and is dropped.
    """
    pending = bytearray()
    next_line = 1
    long_lines: list[LongLine] = []
    skipping: LongLine | None = None  # the over-long line being read past
    at_start = True
    with path.open("rb") as raw:
        pieces = _decompress(raw, read_bytes)
        while True:
            try:
                piece = next(pieces, b"")
            except DumpDamage as exc:
                if tail is None:
                    raise DumpError(f"{path}: {exc}") from exc
                tail.error, tail.offset = str(exc), exc.offset
                break
            if on_progress is not None:
                on_progress(raw.tell())
            if not piece:
                break
            if skipping is not None:
                end = bytes(piece).find(b"\n")
                if end < 0:
                    skipping = replace(skipping, size=skipping.size + len(piece))
                    continue
                long_lines.append(replace(skipping, size=skipping.size + end))
                skipping = None
                pending += b"\n"  # the long line, blank
                piece = piece[end + 1 :]
            pending += piece
            if at_start and len(pending) >= len(_BOM):
                if pending.startswith(_BOM):
                    del pending[: len(_BOM)]
                at_start = False
            line_start = pending.rfind(b"\n") + 1
            if len(pending) - line_start > max_line_bytes:
                line_no = next_line + pending.count(b"\n", 0, line_start)
                head = bytes(pending[line_start : line_start + settings.QUARANTINE_HEAD_BYTES])
                skipping = LongLine(line_no, len(pending) - line_start, head)
                del pending[line_start:]
            if len(pending) >= chunk_bytes:
                cut = pending.rfind(b"\n") + 1
                if cut:
                    # The buffer itself becomes the chunk: only the partial line after the
                    # cut is copied, so a chunk never exists twice.
                    data, pending = pending, pending[cut:]
                    del data[cut:]
                    chunk = _chunk(data, next_line, long_lines)
                    del data
                    next_line += chunk.line_count
                    yield chunk
                    del chunk  # the consumer holds the chunk; do not keep a second one alive
    if skipping is not None:  # the dump ended (or broke off) inside the long line
        long_lines.append(skipping)
        pending += b"\n"
    if pending:
        if not pending.endswith(b"\n"):
            pending += b"\n"
        yield _chunk(pending, next_line, long_lines)
        del pending


def _chunk(data: bytearray, first_line: int, long_lines: list[LongLine]) -> LineChunk:
    """A chunk with the long lines it holds, taken off `long_lines`."""
    chunk = LineChunk.of(data, first_line)
    last = first_line + chunk.line_count
    mine = tuple(line for line in long_lines if line.line_no < last)
    del long_lines[: len(mine)]
    return replace(chunk, long_lines=mine) if mine else chunk


def _decompress(raw: BinaryIO, read_bytes: int) -> Iterator[memoryview]:
    """Decompressed pieces of at most `read_bytes`, frame after frame; DumpDamage with the
    byte offset at damaged data or a frame cut short. zstandard's stream_reader returns b""
    at a truncated frame just as at a clean end; a decompressobj per frame tells the two
    apart. Compressed bytes go in settings.DECODE_BYTES at a time, so damage is located to
    that piece and each decoded piece stays small."""
    decompressor = zstandard.ZstdDecompressor(max_window_size=settings.ZSTD_MAX_WINDOW_SIZE)
    frame, frame_start, in_frame = decompressor.decompressobj(), 0, False
    feed = min(read_bytes, settings.DECODE_BYTES)
    consumed = 0  # compressed bytes handed to the decoder so far
    while block := raw.read(read_bytes):
        view = memoryview(block)
        for start in range(0, len(view), feed):
            data = view[start : start + feed]
            while data:
                in_frame = True
                try:
                    piece = memoryview(frame.decompress(data))
                except zstandard.ZstdError as exc:
                    raise DumpDamage(
                        f"damaged zstd data, found decoding bytes {consumed}-"
                        f"{consumed + len(data)} (its frame starts at byte {frame_start}): {exc}",
                        consumed,
                    ) from exc
                for at in range(0, len(piece), read_bytes):
                    yield piece[at : at + read_bytes]
                if frame.eof:
                    unused = frame.unused_data
                    consumed += len(data) - len(unused)
                    frame_start = consumed
                    data, frame, in_frame = unused, decompressor.decompressobj(), False
                else:
                    consumed += len(data)
                    data = b""
    if in_frame:
        raise DumpDamage(
            f"truncated: the file ends at byte {consumed} inside the zstd frame that starts "
            f"at byte {frame_start} (an interrupted download?)",
            consumed,
        )


def read_ahead(chunks: Iterator[LineChunk]) -> Iterator[LineChunk]:
    """The same chunks, the next one decompressed in a thread while the caller works on the
    current one (zstandard releases the GIL). At most one chunk waits, so memory grows by one
    chunk, not with the dump; an error in the reader is raised here, in order."""
    ready: queue.Queue[tuple[LineChunk | None, BaseException | None]] = queue.Queue(maxsize=1)
    stop = threading.Event()

    def offer(item: tuple[LineChunk | None, BaseException | None]) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def read() -> None:
        try:
            for chunk in chunks:
                if not offer((chunk, None)):
                    return
                del chunk
            offer((None, None))
        except BaseException as exc:  # handed to the consumer, who raises it
            offer((None, exc))

    reader = threading.Thread(target=read, name="dump-read-ahead", daemon=True)
    reader.start()
    try:
        while True:
            chunk, error = ready.get()
            if error is not None:
                raise error
            if chunk is None:
                return
            yield chunk
            del chunk
    finally:
        stop.set()
        reader.join()
