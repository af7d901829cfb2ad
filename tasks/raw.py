"""The raw layer: where a batch lives, what its name says, and how its bytes are encoded.

Kept lines go out byte for byte as they came in; only the codec wraps them.
"""

from __future__ import annotations

import re
import threading

import numpy as np
import pyarrow as pa
import zstandard
from isal import igzip

from tasks import settings
from tasks.config import SUBREDDIT_PATTERN

CODEC_SUFFIX = {"gzip": "ndjson.gz", "zstd": "ndjson.zst"}

# The subreddit names a record may carry, and so the only ones a raw key holds: Reddit's rule
# for community names (config.SUBREDDIT_PATTERN, the one the API source checks), a user
# profile's "u_<username>" (usernames are 3-20 letters, digits, '_' or '-', so such names run
# to 22 characters), and "reddit.com", the 2005-2011 default community whose name predates
# the rule and fills the early dumps. Each is safe as a folder name on S3 and every local
# disk (no '/', no '..', no glob character, at most 22 characters). Staging quarantines any
# other name (sql/process/classify_lines.sql's valid_subreddit, made from this pattern).
RECORD_SUBREDDIT_PATTERN = (
    rf"^(?:{SUBREDDIT_PATTERN.strip('^$')}|u_[A-Za-z0-9_-]{{3,20}}|reddit\.com)$"
)
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# Batch ids are made from a dump's file name: only these characters are kept (see
# safe_name), so an id is a safe file name and never a DuckDB glob.
_BATCH_ID = re.compile(r"^[A-Za-z0-9_-]+$")


class UnsafeKeyError(ValueError):
    """A raw key part that is not safe on S3 and local disks (staging should have refused it)."""


def safe_name(text: str) -> str:
    """`text` with every character but letters, digits, '_' and '-' replaced by '_': a dump's
    own name ('my dump [1]_comments') may hold glob characters, spaces or dots, and a batch id
    ends at its first dot (tasks.process.batch_of)."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", text)


def raw_key(kind: str, subreddit: str, dt: str, batch_id: str, codec: str) -> str:
    """Where a (subreddit, day) of a batch lives. Every part is checked, whatever the data:
    a record's subreddit becomes a folder, so '../..' would climb out of the lake, 'a/b' nest
    a folder that rebuilds skip, '*' and '?' turn into DuckDB globs."""
    if kind not in settings.KINDS:
        raise UnsafeKeyError(f"unknown kind {kind!r}")
    if not re.fullmatch(RECORD_SUBREDDIT_PATTERN, subreddit):
        raise UnsafeKeyError(f"subreddit {subreddit!r} is not a valid name for a lake key")
    if not _DAY.fullmatch(dt):
        raise UnsafeKeyError(f"day {dt!r} is not YYYY-MM-DD")
    if not _BATCH_ID.fullmatch(batch_id):
        raise UnsafeKeyError(f"batch id {batch_id!r} holds characters unsafe in a lake key")
    return (
        f"{settings.RAW_PREFIX}/{kind}/subreddit={subreddit}/dt={dt}/"
        f"{batch_id}.{CODEC_SUFFIX[codec]}"
    )


def source_of_batch(batch_id: str) -> str:
    """'dump', 'sample' or 'api': batch ids start with their source."""
    return batch_id.split("-", 1)[0]


_local = threading.local()


def compress(data: bytes | memoryview, codec: str) -> bytes:
    # isal's gzip is several times faster than zlib's and writes a standard gzip member;
    # both release the GIL, so partitions compress in parallel threads. zstd: level 1, one
    # compressor per thread (making one per call costs more than a small partition).
    if codec == "gzip":
        return igzip.compress(data, compresslevel=1, mtime=0)
    compressor = getattr(_local, "zstd", None)
    if compressor is None:
        compressor = _local.zstd = zstandard.ZstdCompressor(level=1)
    return compressor.compress(data)


class RawBodies:
    """Contiguous runs of values of an Arrow string column, as bytes, without a copy of the
    column: a run inside one Arrow chunk is a view of its values buffer."""

    def __init__(self, column: pa.ChunkedArray) -> None:
        self.chunks = []
        first = 0
        for array in column.chunks:
            if len(array) == 0:
                continue
            large = pa.types.is_large_string(array.type)
            if not (large or pa.types.is_string(array.type)):
                array = array.cast(pa.large_string())
                large = True
            dtype = np.int64 if large else np.int32
            offsets = np.frombuffer(array.buffers()[1], dtype=dtype)
            offsets = offsets[array.offset : array.offset + len(array) + 1]
            values = memoryview(array.buffers()[2]) if array.buffers()[2] else memoryview(b"")
            self.chunks.append((first, first + len(array), offsets, values))
            first += len(array)

    def slice(self, start: int, end: int) -> bytes | memoryview:
        """The concatenated values of rows [start, end)."""
        pieces = []
        for first, last, offsets, values in self.chunks:
            if last <= start or first >= end:
                continue
            lo, hi = max(start, first) - first, min(end, last) - first
            pieces.append(values[offsets[lo] : offsets[hi]])
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)
