"""What a task or flow knows of the Prefect run it is in, with the same answer outside one
(a plain call in a test or a script): no run id, and this module's own logger."""

from __future__ import annotations

import logging

from prefect import get_run_logger
from prefect.exceptions import MissingContextError
from prefect.runtime import flow_run


def run_logger() -> logging.Logger | logging.LoggerAdapter:
    """The run's logger (its lines reach the Prefect UI), or a plain one outside a run."""
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger("tasks.run")


def flow_run_id() -> str | None:
    run_id = flow_run.get_id()
    return str(run_id) if run_id else None
