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
from dataclasses import dataclass
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
class LineChunk:
    """Whole lines of decompressed NDJSON; `first_line` is the 1-based number of the first.
    `data` may be the reader's own buffer (a bytearray): read it, never change it.
    `offsets`: 0, then the offset just past each line's '\n' (found by the reader, so in
    its thread when it reads ahead)."""

    data: bytes | bytearray
    first_line: int
    offsets: np.ndarray

    @classmethod
    def of(cls, data: bytes | bytearray, first_line: int) -> LineChunk:
        return cls(data, first_line, line_offsets(data))

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
    """Set when a dump ends early (truncated download): the complete lines before it are kept."""

    error: str | None = None


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


def iter_line_chunks(
    path: Path,
    chunk_bytes: int = settings.CHUNK_BYTES,
    read_bytes: int = settings.READ_BYTES,
    on_progress: Callable[[int], None] | None = None,
    tail: DumpTail | None = None,
) -> Iterator[LineChunk]:
    """Yield chunks of whole lines, each about `chunk_bytes` long; memory stays near that size.

    `on_progress` receives compressed bytes consumed so far. A truncated or corrupt frame ends
    the stream: the complete lines before it are yielded and `tail.error` says what happened.
    """
    pending = bytearray()
    next_line = 1
    with path.open("rb") as raw:
        pieces = _decompress(raw, read_bytes)
        while True:
            try:
                piece = next(pieces, b"")
            except zstandard.ZstdError as exc:
                if tail is not None:
                    tail.error = f"corrupt or truncated zstd data after byte {raw.tell()}: {exc}"
                    break
                raise DumpError(f"{path}: corrupt or truncated zstd data: {exc}") from exc
            if on_progress is not None:
                on_progress(raw.tell())
            if not piece:
                break
            pending += piece
            if len(pending) >= chunk_bytes:
                cut = pending.rfind(b"\n") + 1
                if cut:
                    # The buffer itself becomes the chunk: only the partial line after the
                    # cut is copied, so a chunk never exists twice.
                    data, pending = pending, pending[cut:]
                    del data[cut:]
                    chunk = LineChunk.of(data, next_line)
                    del data
                    next_line += chunk.line_count
                    yield chunk
                    del chunk  # the consumer holds the chunk; do not keep a second one alive
    if pending:
        if not pending.endswith(b"\n"):
            pending += b"\n"
        yield LineChunk.of(pending, next_line)
        del pending


def _decompress(raw: BinaryIO, read_bytes: int) -> Iterator[memoryview]:
    """Decompressed pieces of at most `read_bytes`, frame after frame. zstandard's
    stream_reader returns b"" at a truncated frame just as at a clean end; a decompressobj per
    frame lets us tell the two apart and raise on truncation."""
    decompressor = zstandard.ZstdDecompressor(max_window_size=settings.ZSTD_MAX_WINDOW_SIZE)
    frame, in_frame = decompressor.decompressobj(), False
    while block := raw.read(read_bytes):
        while block:
            in_frame = True
            piece = memoryview(frame.decompress(block))
            for start in range(0, len(piece), read_bytes):
                yield piece[start : start + read_bytes]
            if frame.eof:
                block, frame, in_frame = frame.unused_data, decompressor.decompressobj(), False
            else:
                block = b""
    if in_frame:
        raise zstandard.ZstdError("the input ends inside a zstd frame (truncated file)")


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
