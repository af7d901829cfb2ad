"""Monitoring beyond failures: an SLA on the scheduled incremental runs, and a slowdown alert.

A failed run is loud (tasks.ops.alerts), but a run that never finishes, or never starts because no
worker polls the pool, is silent: nothing fails, the data just goes stale. Only the server can
notice an event that did *not* happen, so the SLA is a Prefect PROACTIVE automation: once a run
of the deployment is Pending (a worker took it) or Late (nobody took it), the server expects its
Completed (or Cancelled) event within `sla_seconds`, per flow run (`for_each` on the run's
resource id), and notifies otherwise.

A run that completes but takes far longer than usual is the early sign of the same trouble
(Reddit throttling, a growing backlog, a slow warehouse). `check_slowdown` compares the run's
duration with the median of the recent completed runs in the state store at the end of a run;
`report_slowdown` emits `reddit_pipeline.run.slow` with the figures, and a reactive automation
on that event notifies.

    python -m tasks.ops.monitoring --webhook-url https://example.com/hook --sla-seconds 1800
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from datetime import timedelta
from typing import Any
from uuid import UUID

from tasks.ops.alerts import (
    FLOW_NAME,
    AlertConfig,
    destination_arguments,
    event_notification,
    notification_target,
    print_automations,
    upsert_automations,
)
from tasks.state import StateStore

SLA_AUTOMATION = "reddit-pipeline: scheduled run late (SLA)"
SLOW_AUTOMATION = "reddit-pipeline: run much slower than usual"
SLOW_EVENT = "reddit_pipeline.run.slow"
DEFAULT_DEPLOYMENT = "incremental"
# The incremental deployment runs every 15 minutes; twice that without a Completed run means
# the lake and warehouse are falling behind.
DEFAULT_SLA_SECONDS = 1800
# A Scheduled event is emitted when the scheduler creates a run, days ahead: timing from it
# would fire for every future run. Pending (a worker took the run) and Late (the run is past
# its start and nobody took it: the worker is down) mark the moment the clock should start.
SLA_STARTS_AFTER = {"prefect.flow-run.Pending", "prefect.flow-run.Late"}
# Cancelled is expected too: the deployment's CANCEL_NEW concurrency policy cancels a run whose
# predecessor is still going, and that predecessor carries the SLA itself.
SLA_EXPECT = {"prefect.flow-run.Completed", "prefect.flow-run.Cancelled"}
MIN_HISTORY = 3  # below three earlier runs a median says little; no verdict.

SLA_SUBJECT = "reddit-pipeline SLA missed: {{ flow_run.name }} not completed in time"
SLA_BODY = (
    "Flow run {{ flow_run.name }} ({{ flow_run.id }}) of deployment {{ deployment.name }} has "
    "not completed within {sla} seconds of starting or being due; it is "
    "{{ flow_run.state.name }}. Check the worker (`prefect work-pool ls`) and "
    "`python flows/main.py status`."
)
SLOW_SUBJECT = "reddit-pipeline run {{ event.payload.run_id }} was slow"
SLOW_BODY = "{{ event.payload.message }}"


def sla_automation(
    block_document_id: UUID,
    sla_seconds: float = DEFAULT_SLA_SECONDS,
    deployment: str = DEFAULT_DEPLOYMENT,
    flow_name: str = FLOW_NAME,
) -> Any:
    """The proactive SLA automation, as a value. Matches runs by the names of their flow and
    deployment (related resources), not ids, so redeploying keeps it valid."""
    from prefect.automations import Automation, EventTrigger, Posture, SendNotification

    return Automation(
        name=SLA_AUTOMATION,
        description=f"Notify when a {flow_name}/{deployment} run has not completed within "
        f"{sla_seconds:g} s of becoming Pending or Late.",
        trigger=EventTrigger(
            after=set(SLA_STARTS_AFTER),
            expect=set(SLA_EXPECT),
            match={"prefect.resource.id": "prefect.flow-run.*"},
            match_related=[
                {"prefect.resource.role": "flow", "prefect.resource.name": flow_name},
                {"prefect.resource.role": "deployment", "prefect.resource.name": deployment},
            ],
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=sla_seconds),
        ),
        actions=[
            SendNotification(
                block_document_id=block_document_id,
                subject=SLA_SUBJECT,
                body=SLA_BODY.replace("{sla}", f"{sla_seconds:g}"),
            )
        ],
    )


def slow_automation(block_document_id: UUID) -> Any:
    """A reactive automation on the slowdown event `report_slowdown` emits."""
    return event_notification(
        SLOW_AUTOMATION,
        "Notify when a run took more than k times the median of recent runs.",
        SLOW_EVENT,
        "reddit_pipeline.run.*",
        block_document_id,
        SLOW_SUBJECT,
        SLOW_BODY,
    )


def ensure_monitoring(
    target: AlertConfig | UUID | str,
    sla_seconds: float = DEFAULT_SLA_SECONDS,
    deployment: str = DEFAULT_DEPLOYMENT,
) -> dict[str, UUID]:
    """Create the SLA and slowdown automations or update them in place by name, as
    tasks.ops.alerts.ensure_alerts does, so a second bootstrap leaves one of each."""
    block_id, flow_name = notification_target(target)
    return upsert_automations(
        [sla_automation(block_id, sla_seconds, deployment, flow_name), slow_automation(block_id)]
    )


# -- slowdown ---------------------------------------------------------------------------------


# Earlier runs read to find `recent` ones of the same kind: a bound on the scan, enough for a
# daily run's history among 15-minute ones (96 a day) for a few days.
HISTORY_SCAN = 1000
# The parameters that change how long a run takes. The deployments differ in them: incremental
# (no refresh, open window), daily-refresh (refresh_max_age P7D), backfill parts (a bounded
# window or dump files), so runs of one deployment compare only with each other.
KIND_PARAMETERS = (
    "source",
    "subreddits",
    "refresh_max_age",
    "full_refresh",
    "process_engine",
    "model_engine",
    "warehouse",
)


def run_kind(parameters: str | dict[str, Any] | None) -> str:
    """What a run is, from the parameters the state store keeps with it."""
    values = json.loads(parameters) if isinstance(parameters, str) else (parameters or {})
    kind = {name: values.get(name) for name in KIND_PARAMETERS}
    kind["window"] = bool(values.get("since") or values.get("until"))
    kind["dumps"] = bool(values.get("dump_paths"))
    return json.dumps(kind, sort_keys=True, default=str)


def _completed_durations(store: StateStore, run_id: str, recent: int) -> tuple[float, list[float]]:
    """This run's duration in seconds, and those of the `recent` completed runs of the same
    kind (run_kind) that started before it (newest first). Durations come from
    started_at/finished_at, which both databases store as naive UTC."""
    row = store.run_times(run_id)
    if row is None or row[1] is None:
        raise ValueError(f"run {run_id!r} is not finished in the state store")
    started, finished, parameters = row
    kind = run_kind(parameters)
    rows = store.completed_runs_before(run_id, started, HISTORY_SCAN)
    same = [(f - s).total_seconds() for s, f, p in rows if run_kind(p) == kind]
    return (finished - started).total_seconds(), same[:recent]


def slowdown_figures(
    store: StateStore, run_id: str, k: float = 3.0, recent: int = 10
) -> dict[str, Any] | None:
    """The figures behind a slowdown verdict, or None when the run is not slow or there is too
    little history to say."""
    duration, history = _completed_durations(store, run_id, recent)
    if len(history) < MIN_HISTORY:
        return None
    median = statistics.median(history)
    if median <= 0 or duration <= k * median:
        return None
    return {
        "run_id": run_id,
        "duration_seconds": round(duration, 3),
        "median_seconds": round(median, 3),
        "ratio": round(duration / median, 2),
        "k": k,
        "recent_runs": len(history),
    }


def _message(figures: dict[str, Any]) -> str:
    return (
        f"run {figures['run_id']} took {figures['duration_seconds']:.1f}s, "
        f"{figures['ratio']:.1f}x the median {figures['median_seconds']:.1f}s of the last "
        f"{figures['recent_runs']} completed runs of its kind (threshold {figures['k']:g}x)"
    )


def check_slowdown(store: StateStore, run_id: str, k: float = 3.0, recent: int = 10) -> str | None:
    """A message when the run took more than k times the median of the `recent` completed runs
    before it, else None."""
    figures = slowdown_figures(store, run_id, k, recent)
    return _message(figures) if figures else None


def report_slowdown(store: StateStore, run_id: str, k: float = 3.0, recent: int = 10) -> str | None:
    """check_slowdown, plus the `reddit_pipeline.run.slow` event with the figures, for the
    automation to notify. Call it after finish_run, before the store is closed."""
    figures = slowdown_figures(store, run_id, k, recent)
    if figures is None:
        return None
    from prefect.events import emit_event

    message = _message(figures)
    emit_event(
        event=SLOW_EVENT,
        resource={
            "prefect.resource.id": f"reddit_pipeline.run.{run_id}",
            "prefect.resource.name": run_id,
        },
        payload={**figures, "message": message},
    )
    return message


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tasks.ops.monitoring",
        description="Create or update the SLA and slowdown automations on PREFECT_API_URL.",
    )
    destination_arguments(parser, email=False)
    parser.add_argument("--sla-seconds", type=float, default=DEFAULT_SLA_SECONDS)
    parser.add_argument("--deployment", default=DEFAULT_DEPLOYMENT)
    args = parser.parse_args(argv)
    target: AlertConfig | UUID = args.block_document_id or AlertConfig(webhook_url=args.webhook_url)
    return print_automations(lambda: ensure_monitoring(target, args.sla_seconds, args.deployment))


if __name__ == "__main__":
    sys.exit(main())
