"""Terminal progress for long local work; silent when output is not a terminal (CI, workers)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)


@contextmanager
def file_progress(path: Path, enabled: bool | None = None) -> Iterator[Callable[[int], None]]:
    """A callback taking compressed bytes consumed, drawn as a bar over the file's size."""
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        yield lambda _done: None
        return
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        transient=False,
    ) as progress:
        task = progress.add_task(f"reading {path.name}", total=path.stat().st_size)
        yield lambda done: progress.update(task, completed=done)
