"""reddit_maintenance: housekeeping the pipeline's local files need, weekly.

- DuckDB files grow with every MERGE: deleted and updated row versions stay in the file until a
  checkpoint rewrites the touched row groups. FORCE CHECKPOINT reclaims them.
- Quarantine files are for people to read, so they are kept a while (default 30 days) and then
  pruned; their counts stay in the state store's run records.

The DuckDB files take one writer at a time: the deployment shares the pipeline's work pool and
its runs wait for a running pipeline to release the file (DuckDB raises otherwise).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import duckdb
from prefect import flow, get_run_logger, task
from pydantic import Field

from tasks import settings
from tasks.config import check_allowed_path


@task(name="checkpoint-duckdb", retries=3, retry_delay_seconds=120)
def checkpoint_duckdb(path: Path) -> int:
    """Checkpoint one DuckDB file; returns bytes reclaimed. Retried because a pipeline run
    may hold the file's write lock for a few minutes."""
    if not path.exists():
        return 0
    before = path.stat().st_size
    con = duckdb.connect(str(path))
    try:
        con.execute("force checkpoint")
    finally:
        con.close()
    return before - path.stat().st_size


def prune_quarantine(lake_dir: Path, older_than_days: float, now: float | None = None) -> int:
    """Delete quarantine files not modified for `older_than_days`; returns how many."""
    root = lake_dir / settings.QUARANTINE_PREFIX
    if not root.exists():
        return 0
    cutoff = (now or time.time()) - older_than_days * 86400
    pruned = 0
    for path in root.rglob("*.ndjson"):
        if path.stat().st_mtime < cutoff:
            path.unlink()
            pruned += 1
    return pruned


@flow(name="reddit-maintenance", log_prints=True)
def reddit_maintenance(
    warehouse_path: Path = settings.DEFAULT_WAREHOUSE_PATH,
    state_path: Path = settings.DEFAULT_STATE_PATH,
    lake_dir: Path = settings.DEFAULT_LAKE_DIR,
    quarantine_days: Annotated[
        float, Field(ge=0, description="Keep quarantine files this many days.")
    ] = 30,
) -> dict[str, int]:
    """Compact the DuckDB warehouse and state files, then prune old quarantine files.

    Args:
        warehouse_path: DuckDB warehouse file to checkpoint (skipped if absent).
        state_path: DuckDB state store file to checkpoint (skipped if absent).
        lake_dir: Local lake folder whose quarantine files are pruned.
        quarantine_days: Keep quarantine files this many days.
    """
    # The files it rewrites and deletes are parameters: confined like a pipeline run's paths.
    paths = {"warehouse_path": warehouse_path, "state_path": state_path, "lake_dir": lake_dir}
    for name, path in paths.items():
        check_allowed_path(name, path)
    log = get_run_logger()
    result = {
        "warehouse_bytes_reclaimed": checkpoint_duckdb(warehouse_path),
        "state_bytes_reclaimed": checkpoint_duckdb(state_path),
        "quarantine_files_pruned": prune_quarantine(lake_dir, quarantine_days),
    }
    log.info("Maintenance: %s", result)
    return result


if __name__ == "__main__":
    reddit_maintenance()
