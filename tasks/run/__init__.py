"""What the flows share: the lake, engines, warehouse, check engine and state store a
PipelineConfig names (engines), the source it reads (source), the Prefect run it is in
(context), the run summary and the rebuild from the lake.

Imports any stage; no stage imports it.
"""

from tasks.run.context import flow_run_id
from tasks.run.engines import Engines, build_engines, build_lake, open_state, stop_glue_runs_hook
from tasks.run.rebuild import RebuildResult, rebuild_from_lake
from tasks.run.source import ResolvedSource, resolve_source
from tasks.run.summary import RunSummary

__all__ = [
    "Engines",
    "RebuildResult",
    "ResolvedSource",
    "RunSummary",
    "build_engines",
    "build_lake",
    "flow_run_id",
    "open_state",
    "rebuild_from_lake",
    "resolve_source",
    "stop_glue_runs_hook",
]
