"""The raw layer's bytes: kept lines go out byte for byte as they came in; only the codec wraps
them (where a batch lives and what its name says: tasks.lake.keys).
"""

from __future__ import annotations

import threading

import numpy as np
import pyarrow as pa
import zstandard
from isal import igzip

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
