"""Operations: alerts and monitoring automations on the Prefect server, database roles (`python -m
tasks.ops.alerts`, `tasks.ops.monitoring`, `tasks.ops.roles`).

Imports tasks.quality and tasks.state.
"""

from tasks.ops.alerts import AlertConfig, ensure_alerts
from tasks.ops.monitoring import ensure_monitoring, report_slowdown
from tasks.ops.roles import Roles, apply_roles, connect_redshift_admin

__all__ = [
    "AlertConfig",
    "Roles",
    "apply_roles",
    "connect_redshift_admin",
    "ensure_alerts",
    "ensure_monitoring",
    "report_slowdown",
]
