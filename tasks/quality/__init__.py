"""The data contracts (contracts/, run by Soda) and where they run: Soda data sources (sources)
over the run's data on DuckDB, PostgreSQL or Athena (datasets).

Imports tasks.core, tasks.lake, tasks.model, tasks.state and blocks.warehouse.
"""

import os

# Soda Core sends telemetry on import unless told not to; offline that costs ~6 s of failed
# network calls per run. Here, once: any module of this package runs this file first, before
# it can import soda.
os.environ.setdefault("SODA_CORE_TELEMETRY_ENABLED", "false")

from tasks.quality.contracts import (
    QUALITY_FAILED_EVENT,
    CheckReport,
    answered_posts_in_warehouse,
    check_task,
    enforce,
    publish_check_results,
    record_check_results,
)
from tasks.quality.datasets import (
    DEFAULT_PG_CHECK_SCHEMA,
    athena_view_sql,
    lake_source,
    postgres_copy_source,
)
from tasks.quality.sources import (
    CheckEngine,
    CheckSource,
    CheckSourceError,
    athena_source,
    redshift_source,
)

__all__ = [
    "DEFAULT_PG_CHECK_SCHEMA",
    "QUALITY_FAILED_EVENT",
    "CheckEngine",
    "CheckReport",
    "CheckSource",
    "CheckSourceError",
    "answered_posts_in_warehouse",
    "athena_source",
    "athena_view_sql",
    "check_task",
    "enforce",
    "lake_source",
    "postgres_copy_source",
    "publish_check_results",
    "record_check_results",
    "redshift_source",
]
