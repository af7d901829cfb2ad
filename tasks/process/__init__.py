"""Raw -> processed: the DuckDB engine, the Glue engine (which runs glue_scripts/process_reddit.py)
and the restoring of processed days that expired.

Imports tasks.core and tasks.lake.
"""

from typing import TYPE_CHECKING, Any

from tasks.process.complete_days import restore_missing_processed
from tasks.process.duckdb_engine import (
    ProcessResult,
    copy_partitioned_sql,
    empty_processed_sql,
    process_sql,
    process_task,
    publish_partitions,
)

if TYPE_CHECKING:
    from tasks.process.glue import glue_client, process_glue_task, stop_runs_of_flow_run

__all__ = [
    "ProcessResult",
    "copy_partitioned_sql",
    "empty_processed_sql",
    "glue_client",
    "process_glue_task",
    "process_sql",
    "process_task",
    "publish_partitions",
    "restore_missing_processed",
    "stop_runs_of_flow_run",
]


def __getattr__(name: str) -> Any:
    """The Glue engine imports boto3 and prefect-aws: loaded when first asked for, so a
    local run never pays for them."""
    if name in (
        "glue_client",
        "process_glue_task",
        "stop_runs_of_flow_run",
    ):
        from tasks.process import glue

        return getattr(glue, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
