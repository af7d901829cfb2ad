"""Processed -> curated: the DuckDB engine over sql/staging and sql/marts, the Athena engine over
the same SQL in Athena's dialect, and the translation between them (dialects).

Imports tasks.core, tasks.lake and tasks.process.
"""

from tasks.model.athena import AthenaRunner, model_athena_task
from tasks.model.dialects import model_schemas
from tasks.model.duckdb_engine import MART_MODELS, ModelResult, model_task, register_processed

__all__ = [
    "MART_MODELS",
    "AthenaRunner",
    "ModelResult",
    "model_athena_task",
    "model_schemas",
    "model_task",
    "register_processed",
]
