"""The dump reader on hand-made edge cases, with the real zstandard library."""

from __future__ import annotations

import gzip
import io
import threading
from pathlib import Path

import pytest
import zstandard

from tasks import settings
from tasks.extract.dumps import (
    DumpError,
    DumpTail,
    check_dump,
    dump_kind,
    iter_line_chunks,
    read_ahead,
)

LINES = [
    '{"id":"a1","body":"café 🐍 au lait"}',
    '{"id":"a2","body":"数据管道 مرحبا שלום"}',
    '{"id":"a3","body":"e\u0301 👩\u200d💻 🇩🇪"}',
]


def write_zst(path: Path, data: bytes, **params: int) -> Path:
    compressor = zstandard.ZstdCompressor(
        compression_params=zstandard.ZstdCompressionParameters(**params) if params else None
    )
    path.write_bytes(compressor.compress(data))
    return path


def read_all(path: Path, **kwargs) -> tuple[list, bytes]:
    chunks = list(iter_line_chunks(path, **kwargs))
    return chunks, b"".join(chunk.data for chunk in chunks)


@pytest.mark.parametrize("read_bytes", [1, 3, 7])
def test_utf8_character_split_across_reads_is_reassembled(tmp_path: Path, read_bytes: int) -> None:
    data = "\n".join(LINES).encode() + b"\n"
    # Make sure the test really cuts through a character: some read boundary falls inside
    # the 4-byte emoji or the 2-byte é.
    emoji_at = data.index("🐍".encode())
    e_at = data.index("é".encode())
    cuts = range(read_bytes, len(data), read_bytes)
    assert any(emoji_at < cut < emoji_at + 4 or e_at < cut < e_at + 2 for cut in cuts)
    path = write_zst(tmp_path / "RC_2024-03.zst", data)

    chunks, joined = read_all(path, chunk_bytes=5, read_bytes=read_bytes)

    assert joined == data
    assert len(chunks) == len(LINES)
    for chunk in chunks:
        chunk.data.decode("utf-8")  # every chunk is whole characters
    assert [chunk.data.decode().rstrip("\n") for chunk in chunks] == LINES


def test_frame_with_2gib_window_is_read(tmp_path: Path) -> None:
    data = "\n".join(LINES * 50).encode() + b"\n"
    params = zstandard.ZstdCompressionParameters(
        window_log=31, enable_ldm=True, compression_level=3
    )
    buffer = io.BytesIO()
    # A streamed frame has no content size, so zstd keeps the 2 GiB window in its header,
    # exactly like the big Pushshift dumps.
    with zstandard.ZstdCompressor(compression_params=params).stream_writer(
        buffer, closefd=False
    ) as writer:
        writer.write(data)
    frame = buffer.getvalue()
    assert zstandard.get_frame_parameters(frame).window_size == 2**31
    with pytest.raises(zstandard.ZstdError, match="too much memory"):
        zstandard.ZstdDecompressor().stream_reader(io.BytesIO(frame)).read()
    path = tmp_path / "RS_2024-03.zst"
    path.write_bytes(frame)

    check_dump(path)
    chunks, joined = read_all(path)

    assert joined == data
    assert sum(chunk.line_count for chunk in chunks) == 150


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("RS_2024-03.zst", "posts"),
        ("RC_2024-03.zst", "comments"),
        ("RC_2024-03-01.zst", "comments"),
        ("python_submissions.zst", "posts"),
        ("AskHistorians_comments.zst", "comments"),
    ],
)
def test_dump_kind_comes_from_the_file_name(name: str, kind: str) -> None:
    assert dump_kind(Path(name)) == kind


@pytest.mark.parametrize(
    "name",
    ["comments_2024.zst", "RS-2024-03.zst", "RX_2024-03.zst", "python_posts.zst", "dump.zst"],
)
def test_file_name_neither_monthly_nor_per_subreddit_raises_dump_error(name: str) -> None:
    with pytest.raises(DumpError, match="cannot tell posts from comments"):
        dump_kind(Path(name))


def test_missing_dump_raises_dump_error_naming_the_path(tmp_path: Path) -> None:
    path = tmp_path / "RC_2024-03.zst"
    with pytest.raises(DumpError, match="dump file not found") as error:
        check_dump(path)
    assert str(path) in str(error.value)


def test_non_zstd_file_raises_dump_error(tmp_path: Path) -> None:
    path = tmp_path / "RC_2024-03.zst"
    path.write_bytes(gzip.compress(b'{"id":"a1"}\n'))
    with pytest.raises(DumpError, match="is not a zstd file") as error:
        check_dump(path)
    assert str(path) in str(error.value)


def test_check_dump_accepts_a_good_dump(tmp_path: Path) -> None:
    check_dump(write_zst(tmp_path / "python_comments.zst", b'{"id":"a1"}\n'))


def _truncated_dump(tmp_path: Path) -> tuple[Path, bytes]:
    lines = [b'{"id":"%06d","body":"%s"}' % (i, b"x" * (i % 97)) for i in range(20_000)]
    data = b"\n".join(lines) + b"\n"
    frame = zstandard.ZstdCompressor(level=3).compress(data)
    path = tmp_path / "RC_2024-03.zst"
    path.write_bytes(frame[: len(frame) // 2])  # a download cut off half way
    return path, data


def test_truncated_dump_keeps_complete_lines_and_sets_tail_error(tmp_path: Path) -> None:
    path, data = _truncated_dump(tmp_path)
    tail = DumpTail()

    chunks, joined = read_all(path, chunk_bytes=64 * 1024, tail=tail)

    assert tail.error is not None and "truncated" in tail.error
    # Every complete line before the cut is kept, in order, from line 1.
    kept = joined.split(b"\n")
    assert joined.startswith(b"\n".join(kept[:-2]))
    assert data.startswith(b"\n".join(kept[:-2]) + b"\n")
    assert chunks[0].first_line == 1


def test_truncated_dump_without_a_tail_raises_dump_error(tmp_path: Path) -> None:
    path, _ = _truncated_dump(tmp_path)
    with pytest.raises(DumpError, match="truncated"):
        read_all(path, chunk_bytes=64 * 1024)


def test_corrupt_frame_keeps_lines_before_it_and_sets_tail_error(tmp_path: Path) -> None:
    first = b"".join(b'{"id":"%06d"}\n' % i for i in range(1000))
    compressor = zstandard.ZstdCompressor(level=3, write_checksum=True)
    good = compressor.compress(first)
    bad = bytearray(compressor.compress(first))
    bad[len(bad) // 2 :] = bytes(len(bad) - len(bad) // 2)  # zeroed second half of a frame
    path = tmp_path / "RC_2024-03.zst"
    path.write_bytes(good + bytes(bad))
    tail = DumpTail()

    _, joined = read_all(path, chunk_bytes=1024, read_bytes=512, tail=tail)

    assert tail.error is not None and "damaged zstd data" in tail.error
    # Where: the second frame starts right after the first; the damage is found past it.
    assert f"its frame starts at byte {len(good)}" in tail.error
    assert tail.offset is not None and len(good) <= tail.offset < path.stat().st_size
    assert joined.startswith(first)
    with pytest.raises(DumpError, match="damaged zstd data"):
        read_all(path, chunk_bytes=1024, read_bytes=512)


def test_last_line_without_trailing_newline_is_yielded_whole(tmp_path: Path) -> None:
    path = write_zst(
        tmp_path / "RS_2024-03.zst", b'{"id":"a1"}\n{"id":"a2","t":"\xf0\x9f\xa6\x80"}'
    )
    chunks, joined = read_all(path, chunk_bytes=4, read_bytes=3)
    assert joined == b'{"id":"a1"}\n{"id":"a2","t":"\xf0\x9f\xa6\x80"}\n'
    assert [(c.first_line, c.line_count) for c in chunks] == [(1, 1), (2, 1)]


def test_crlf_line_ends_are_passed_through_unchanged(tmp_path: Path) -> None:
    data = b'{"id":"a1"}\r\n{"id":"a2"}\r\n{"id":"a3"}\r\n'
    path = write_zst(tmp_path / "RS_2024-03.zst", data)
    chunks, joined = read_all(path, chunk_bytes=8, read_bytes=5)
    assert joined == data
    assert [(c.first_line, c.line_count) for c in chunks] == [(1, 1), (2, 1), (3, 1)]


def test_blank_lines_are_counted_so_line_numbers_stay_exact(tmp_path: Path) -> None:
    data = b'\n{"id":"a1"}\n\n\n{"id":"a2"}\n   \n{"id":"a3"}\n'
    path = write_zst(tmp_path / "RS_2024-03.zst", data)
    chunks, joined = read_all(path)
    assert joined == data
    assert [(c.first_line, c.line_count) for c in chunks] == [(1, 7)]


def test_chunk_boundaries_give_the_right_first_line_numbers(tmp_path: Path) -> None:
    lines = [b'{"id":"%d","pad":"%s"}' % (i, b"y" * (i % 13)) for i in range(1, 501)]
    data = b"\n".join(lines) + b"\n"
    path = write_zst(tmp_path / "RC_2024-03.zst", data)
    chunk_bytes, read_bytes = 300, 64

    chunks, joined = read_all(path, chunk_bytes=chunk_bytes, read_bytes=read_bytes)

    assert joined == data
    assert len(chunks) > 10
    expected_first = 1
    for chunk in chunks:
        assert chunk.first_line == expected_first
        assert chunk.data.endswith(b"\n")
        assert chunk.line_count == chunk.data.count(b"\n")
        # The first line of the chunk is line `first_line` of the file (ids are line numbers).
        assert chunk.data.startswith(b'{"id":"%d",' % chunk.first_line)
        # Bounded memory: a chunk is cut as soon as it passes chunk_bytes.
        assert len(chunk.data) < chunk_bytes + read_bytes
        expected_first += chunk.line_count
    assert expected_first == 501


def test_frames_of_a_multi_frame_dump_are_all_read(tmp_path: Path) -> None:
    compressor = zstandard.ZstdCompressor(level=3)
    parts = [b'{"id":"a1"}\n{"id":"a2"}\n', b'{"id":"a3"}\n', b'{"id":"a4"}\n']
    path = tmp_path / "RC_2024-03.zst"
    path.write_bytes(b"".join(compressor.compress(part) for part in parts))
    _, joined = read_all(path, chunk_bytes=4, read_bytes=4)
    assert joined == b"".join(parts)


def test_progress_reports_compressed_bytes_up_to_the_file_size(tmp_path: Path) -> None:
    data = b"".join(b'{"id":"%d"}\n' % i for i in range(5000))
    path = write_zst(tmp_path / "RC_2024-03.zst", data)
    seen: list[int] = []
    read_all(path, chunk_bytes=4096, read_bytes=1024, on_progress=seen.append)
    assert seen == sorted(seen)
    assert seen[-1] == path.stat().st_size


def test_read_ahead_yields_every_chunk_in_order(tmp_path: Path) -> None:
    data = "".join(f'{{"id":"r{i}"}}\n' for i in range(5000)).encode()
    path = write_zst(tmp_path / "RC_2024-03.zst", data)
    direct = list(iter_line_chunks(path, chunk_bytes=4096, read_bytes=1024))
    ahead = list(read_ahead(iter_line_chunks(path, chunk_bytes=4096, read_bytes=1024)))
    assert len(direct) > 10
    assert [(c.data, c.first_line, c.line_count) for c in ahead] == [
        (c.data, c.first_line, c.line_count) for c in direct
    ]


def test_read_ahead_raises_the_readers_error_after_the_chunks_before_it(tmp_path: Path) -> None:
    data = "".join(f'{{"id":"t{i}"}}\n' for i in range(5000)).encode()
    path = tmp_path / "RC_2024-03.zst"
    compressor = zstandard.ZstdCompressor()
    # A whole frame, then a truncated one: the first frame's chunks come out, then the error.
    path.write_bytes(compressor.compress(data) + compressor.compress(data)[:-200])
    seen = []
    size = path.stat().st_size
    with pytest.raises(DumpError, match=f"truncated: the file ends at byte {size} inside"):
        for chunk in read_ahead(iter_line_chunks(path, chunk_bytes=4096, read_bytes=1024)):
            seen.append(chunk.first_line)
    assert seen and seen[0] == 1


def test_read_ahead_stops_its_reader_when_the_consumer_stops(tmp_path: Path) -> None:
    data = "".join(f'{{"id":"s{i}"}}\n' for i in range(50000)).encode()
    path = write_zst(tmp_path / "RC_2024-03.zst", data)
    before = threading.active_count()
    chunks = read_ahead(iter_line_chunks(path, chunk_bytes=4096, read_bytes=1024))
    first = next(chunks)
    assert first.first_line == 1
    chunks.close()  # joins the reader
    assert threading.active_count() == before


def test_a_byte_order_mark_at_the_start_is_not_part_of_the_first_line(tmp_path: Path) -> None:
    data = b'{"id":"a1"}\n{"id":"a2"}\n'
    path = write_zst(tmp_path / "RS_2024-03.zst", b"\xef\xbb\xbf" + data)
    _, joined = read_all(path, read_bytes=2)  # the mark split across reads
    assert joined == data


def test_a_line_longer_than_the_limit_is_left_out_blank_without_being_held(
    tmp_path: Path,
) -> None:
    long_line = b'{"id":"big","body":"' + b"x" * 300_000 + b'"}'
    lines = [b'{"id":"a1"}', long_line, b'{"id":"a2"}', b'{"id":"a3"}']
    path = write_zst(tmp_path / "RC_2024-03.zst", b"\n".join(lines) + b"\n")

    chunks = list(
        iter_line_chunks(path, chunk_bytes=64 * 1024, read_bytes=4096, max_line_bytes=20_000)
    )

    joined = b"".join(chunk.data for chunk in chunks)
    assert joined == b'{"id":"a1"}\n\n{"id":"a2"}\n{"id":"a3"}\n'
    [long] = [line for chunk in chunks for line in chunk.long_lines]
    assert (long.line_no, long.size) == (2, len(long_line))
    assert long_line.startswith(long.head) and 0 < len(long.head) <= settings.QUARANTINE_HEAD_BYTES
    # Bounded: no chunk ever held more than the limit plus one read of the long line.
    assert max(len(chunk.data) for chunk in chunks) < 64 * 1024 + 20_000 + 4096
