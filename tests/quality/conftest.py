"""Fixtures of the data-contract tests: the bundled sample staged and processed once a module."""

from __future__ import annotations

import pytest

from tasks import settings
from tasks.extract.stage import Window, stage_dump
from tasks.lake.local import LocalLake
from tasks.process.duckdb_engine import process_batches


@pytest.fixture(scope="module")
def sample_lake(tmp_path_factory: pytest.TempPathFactory) -> tuple[LocalLake, list[str]]:
    """The sample staged and processed once for the module: (lake, days)."""
    lake = LocalLake(tmp_path_factory.mktemp("check") / "lake")
    stages = [
        stage_dump(path, lake, Window()) for path in sorted(settings.SAMPLE_DIR.glob("*.zst"))
    ]
    dts: set[str] = set()
    for kind in settings.KINDS:
        keys = [key for stage in stages if stage.kind == kind for key in stage.raw_keys]
        dts |= process_batches(lake, kind, keys).dts
    return lake, sorted(dts)
