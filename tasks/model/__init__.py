"""Processed -> curated: the DuckDB engine over sql/staging and sql/marts, the Athena engine over
the same SQL in Athena's dialect, and the translation between them (dialects).

Imports tasks.core, tasks.lake and tasks.process.
"""

from typing import TYPE_CHECKING, Any

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


def __getattr__(name: str) -> Any:
    """The Athena engine and the dialects import sqlglot (and Athena prefect-aws): loaded
    when first asked for, so a local run never pays for them."""
    if name in ("AthenaRunner", "model_athena_task"):
        from tasks.model import athena

        return getattr(athena, name)
    if name == "model_schemas":
        from tasks.model import dialects

        return dialects.model_schemas
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
