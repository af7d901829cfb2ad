"""The lake: where raw, processed and curated files live, behind one small interface.

A local folder (tasks.lake.local) and an S3 bucket (tasks.lake.s3, a prefect-aws S3Bucket)
implement the same methods, so stages never know which one they write to. Keys always use
'/'; what they are is tasks.lake.keys.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol


class Lake(Protocol):
    def put_bytes(self, key: str, data: bytes) -> None:
        """Write a whole object; readers see the old object or the new one, never a part."""

    def put_file(self, key: str, path: Path) -> None:
        """Upload a local file (may move it)."""

    def get_bytes(self, key: str) -> bytes: ...

    def list_keys(self, prefix: str) -> list[str]:
        """Every key under `prefix`, sorted."""

    def list_folders(self, prefix: str) -> list[str]:
        """The folders right below `prefix` (keys ending in '/'), sorted: one LIST request per
        1000 folders on S3, where listing every key below would page through all of them."""

    def delete_prefix(self, prefix: str) -> int: ...

    def local_path(self, key: str) -> Path | None:
        """A path a local engine can read directly, or None when the lake is remote."""

    def describe(self, key: str) -> str:
        """Where the key lives, for logs and summaries (a path or an s3:// URI)."""


def readable_path(lake: Lake, key: str, tmp_dir: Path) -> Path:
    """A local path an engine can open: the lake's own file, or a copy fetched into tmp_dir."""
    local = lake.local_path(key)
    if local is not None:
        return local
    # Keep the key's folders: engines read day= and dt= partitions from the path (hive style).
    target = tmp_dir / key
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(lake.get_bytes(key))
    return target
