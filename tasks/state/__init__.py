"""The state store (runs, watermarks, check results: its whole schema, behind its methods), on a
DuckDB file or PostgreSQL through a pool, and its backups in the lake.

Imports tasks.core and tasks.lake.
"""

from tasks.state.backup import (
    BackupResult,
    NoStateError,
    RestoreError,
    backup_state,
    list_backups,
    read_backup,
    restore_state,
)
from tasks.state.pool import open_pooled_state, pooled_state
from tasks.state.store import (
    RunRecord,
    StateLockedError,
    StateStore,
    Watermarks,
    marks_not_held,
    open_duckdb_state,
)

__all__ = [
    "BackupResult",
    "NoStateError",
    "RestoreError",
    "RunRecord",
    "StateLockedError",
    "StateStore",
    "Watermarks",
    "backup_state",
    "list_backups",
    "marks_not_held",
    "open_duckdb_state",
    "open_pooled_state",
    "pooled_state",
    "read_backup",
    "restore_state",
]
