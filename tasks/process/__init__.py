"""Raw -> processed: the DuckDB engine, the Glue engine (which runs glue_scripts/process_reddit.py)
and the restoring of processed days that expired.

Imports tasks.core and tasks.lake.
"""

from typing import TYPE_CHECKING

from tasks.core import lazy_names
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

# The cloud engines load on first use (tasks.core.lazy).
__getattr__ = lazy_names(
    __name__, {"glue_client": "glue", "process_glue_task": "glue", "stop_runs_of_flow_run": "glue"}
)
