"""Curated -> warehouse: the merge contract every warehouse follows (merge), then one driver each
for DuckDB, PostgreSQL and Redshift.

Imports tasks.core and tasks.lake.
"""

from tasks.load.duckdb_engine import held_in_duckdb, load_task
from tasks.load.merge import LoadResult
from tasks.load.postgres import held_in_postgres, load_postgres_task
from tasks.load.redshift import held_in_redshift, load_redshift_task

__all__ = [
    "LoadResult",
    "held_in_duckdb",
    "held_in_postgres",
    "held_in_redshift",
    "load_postgres_task",
    "load_redshift_task",
    "load_task",
]
