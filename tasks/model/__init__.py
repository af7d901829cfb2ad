"""Processed -> curated: the DuckDB engine over sql/staging and sql/marts, the Athena engine over
the same SQL in Athena's dialect, and the translation between them (dialects).

Imports tasks.core, tasks.lake and tasks.process.
"""

from typing import TYPE_CHECKING

from tasks.core import lazy_names
from tasks.model.duckdb_engine import MART_MODELS, ModelResult, model_task, register_processed

if TYPE_CHECKING:
    from tasks.model.athena import AthenaRunner, model_athena_task
    from tasks.model.dialects import model_schemas

__all__ = [
    "MART_MODELS",
    "AthenaRunner",
    "ModelResult",
    "model_athena_task",
    "model_schemas",
    "model_task",
    "register_processed",
]

# The cloud engines load on first use (tasks.core.lazy).
__getattr__ = lazy_names(
    __name__, {"AthenaRunner": "athena", "model_athena_task": "athena", "model_schemas": "dialects"}
)
