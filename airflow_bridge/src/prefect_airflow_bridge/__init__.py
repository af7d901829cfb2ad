"""Run Prefect deployments from Airflow 3 over Prefect's REST API (never imports prefect)."""

from __future__ import annotations

from prefect_airflow_bridge.hook import PrefectAPIError, PrefectHook
from prefect_airflow_bridge.operator import PrefectRunDeploymentOperator, PrefectRunFailed
from prefect_airflow_bridge.trigger import PrefectFlowRunTrigger

__all__ = [
    "PrefectAPIError",
    "PrefectFlowRunTrigger",
    "PrefectHook",
    "PrefectRunDeploymentOperator",
    "PrefectRunFailed",
]
