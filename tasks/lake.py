"""The lake: where raw, processed and curated files live, behind one small interface.

The local folder implements it here; the S3 lake (prefect-aws S3Bucket) implements the same
methods, so stages never know which one they write to. Keys always use '/'.
"""

from __future__ import annotations

import os
import shutil
import tempfile
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


class LocalLake:
    """A lake in a local folder. Writes go to a temporary file first, then an atomic rename,
    so a run killed mid-write never leaves half a batch under its final key."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        if key.startswith("/") or ".." in key.split("/"):
            raise ValueError(f"lake key must be relative and stay inside the lake: {key!r}")
        return self.root / key

    def put_bytes(self, key: str, data: bytes) -> None:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=target.name)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def put_file(self, key: str, path: Path) -> None:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".tmp-{target.name}")
        shutil.move(str(path), tmp)
        os.replace(tmp, target)

    def get_bytes(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def list_keys(self, prefix: str) -> list[str]:
        base = self._path(prefix)
        if base.is_file():
            return [prefix]
        if not base.is_dir():
            return []
        return sorted(
            p.relative_to(self.root).as_posix()
            for p in base.rglob("*")
            if p.is_file() and not p.name.startswith(".tmp-")
        )

    def list_folders(self, prefix: str) -> list[str]:
        base = self._path(prefix)
        if not base.is_dir():
            return []
        return sorted(
            p.relative_to(self.root).as_posix() + "/" for p in base.iterdir() if p.is_dir()
        )

    def delete_prefix(self, prefix: str) -> int:
        keys = self.list_keys(prefix)
        for key in keys:
            self._path(key).unlink()
        return len(keys)

    def local_path(self, key: str) -> Path:
        return self._path(key)

    def describe(self, key: str) -> str:
        return str(self._path(key))


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
