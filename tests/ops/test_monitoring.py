"""Monitoring for real: the proactive SLA automation on the session's Prefect server notices a
run that does not complete in time, and the slowdown check reads durations from a real state
store."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from helpers import Receiver

from tasks.ops.alerts import FLOW_NAME, AlertConfig
from tasks.ops.monitoring import (
    SLA_AUTOMATION,
    SLOW_AUTOMATION,
    check_slowdown,
    ensure_monitoring,
    report_slowdown,
    run_kind,
)
from tasks.state.store import StateStore, open_duckdb_state, open_postgres_state

SLA_SECONDS = 10  # the least Prefect accepts for a proactive trigger


@pytest.fixture
def deployment_name() -> str:
    return f"sla-test-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def monitoring(
    prefect_api: str, receiver: Receiver, deployment_name: str
) -> Iterator[dict[str, Any]]:
    """The automations pointed at the receiver, deleted afterwards."""
    from prefect.client.orchestration import get_client

    config = AlertConfig(webhook_url=receiver.url, block_name="test-monitoring")
    ids = ensure_monitoring(config, sla_seconds=SLA_SECONDS, deployment=deployment_name)
    yield ids
    with get_client(sync_client=True) as client:
        for automation_id in ids.values():
            client.delete_automation(automation_id)


def _deployment_runs(deployment_name: str, count: int) -> list[Any]:
    """`count` runs of a deployment of the pipeline flow, as the scheduler would create them
    (no worker: the test moves their states itself)."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        flow_id = client.create_flow_from_name(FLOW_NAME)
        deployment_id = client.create_deployment(flow_id=flow_id, name=deployment_name)
        return [client.create_flow_run_from_deployment(deployment_id) for _ in range(count)]


def _set_state(run_id: Any, state: Any) -> None:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        client.set_flow_run_state(run_id, state, force=True)


def test_ensure_monitoring_twice_leaves_one_automation_of_each(
    monitoring: dict[str, Any], receiver: Receiver, deployment_name: str
) -> None:
    from prefect.client.orchestration import get_client

    config = AlertConfig(webhook_url=receiver.url, block_name="test-monitoring")
    again = ensure_monitoring(config, sla_seconds=SLA_SECONDS, deployment=deployment_name)

    assert again == monitoring
    with get_client(sync_client=True) as client:
        for name in (SLA_AUTOMATION, SLOW_AUTOMATION):
            assert len(client.read_automations_by_name(name)) == 1


def test_a_run_that_does_not_complete_within_the_sla_sends_a_notification(
    monitoring: dict[str, Any], receiver: Receiver, deployment_name: str
) -> None:
    from prefect.states import Completed, Pending, Running

    on_time, late = _deployment_runs(deployment_name, 2)
    for run in (on_time, late):
        _set_state(run.id, Pending())
        _set_state(run.id, Running())
    _set_state(on_time.id, Completed())

    message = receiver.wait_for(late.name, timeout=SLA_SECONDS + 90)

    assert "SLA missed" in message["subject"]
    assert deployment_name in message["text"]
    time.sleep(5)  # the on-time run's window ended at the same time as the late one's
    assert not any(on_time.name in str(m) for m in receiver.messages)


def test_a_slow_run_event_sends_a_notification_with_the_figures(
    monitoring: dict[str, Any], receiver: Receiver, tmp_path: Path
) -> None:
    store = open_duckdb_state(tmp_path / "state.duckdb")
    try:
        _record_runs(store, [60, 62, 58, 61], slow_seconds=400)
        message = report_slowdown(store, "run-slow")
    finally:
        store.close()

    assert message is not None
    notification = receiver.wait_for("run-slow")
    assert "6.6x the median 60.5s" in notification["text"]


# -- check_slowdown on real state stores ---------------------------------------------------


def _record_runs(store: StateStore, durations: list[float], slow_seconds: float) -> None:
    """Completed runs an hour apart with the given durations, then `run-slow` last."""
    start = datetime(2024, 3, 1, 12, 0, 0)
    rows = [(f"run-{i}", d, "completed") for i, d in enumerate(durations)]
    rows += [("run-failed", 5000, "failed"), ("run-slow", slow_seconds, "completed")]
    for i, (run_id, seconds, status) in enumerate(rows):
        started = start + timedelta(hours=i)
        store.execute(
            "insert into pipeline_runs (run_id, source, status, started_at, finished_at) "
            "values (%s, 'api', %s, %s, %s)",
            (run_id, status, started, started + timedelta(seconds=seconds)),
        )
    store.con.commit()


@pytest.fixture(params=["duckdb", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StateStore]:
    if request.param == "duckdb":
        opened = open_duckdb_state(tmp_path / "state.duckdb")
    else:
        opened = open_postgres_state(request.getfixturevalue("pg_dsn"))
    yield opened
    opened.close()


def test_check_slowdown_flags_a_run_over_k_times_the_median(store: StateStore) -> None:
    _record_runs(store, [100, 120, 80, 110, 90], slow_seconds=301)

    message = check_slowdown(store, "run-slow", k=3, recent=10)

    assert message is not None
    assert "run run-slow took 301.0s, 3.0x the median 100.0s of the last 5" in message


def test_check_slowdown_ignores_failed_runs_and_looks_only_at_recent_ones(
    store: StateStore,
) -> None:
    # The old runs were slow; the 3 most recent ones were fast: recent=3 sees only those.
    _record_runs(store, [1000, 1000, 1000, 10, 10, 10], slow_seconds=100)

    assert check_slowdown(store, "run-slow", k=3, recent=3) is not None
    assert check_slowdown(store, "run-slow", k=3, recent=6) is None


def test_check_slowdown_says_nothing_without_enough_history(store: StateStore) -> None:
    _record_runs(store, [10, 10], slow_seconds=1000)

    assert check_slowdown(store, "run-slow") is None
    assert check_slowdown(store, "run-1") is None


def test_check_slowdown_refuses_an_unfinished_run(store: StateStore) -> None:
    with pytest.raises(ValueError, match="not finished"):
        check_slowdown(store, "no-such-run")


INCREMENTAL = {"source": "api", "subreddits": ["python"], "refresh_max_age": "PT0S"}
DAILY_REFRESH = {**INCREMENTAL, "refresh_max_age": "P7D"}
BACKFILL_PART = {**INCREMENTAL, "since": "2024-03-01T00:00:00Z", "until": "2024-03-02T00:00:00Z"}


def _record_kinds(store: StateStore, runs: list[tuple[str, dict[str, Any], float]]) -> None:
    """Completed runs an hour apart, oldest first: (run_id, parameters, seconds)."""
    start = datetime(2024, 3, 1, 12, 0, 0)
    for i, (run_id, parameters, seconds) in enumerate(runs):
        started = start + timedelta(hours=i)
        store.execute(
            "insert into pipeline_runs (run_id, source, status, started_at, finished_at, "
            "parameters) values (%s, 'api', 'completed', %s, %s, %s)",
            (run_id, started, started + timedelta(seconds=seconds), json.dumps(parameters)),
        )
    store.con.commit()


def test_a_run_is_compared_only_with_recent_runs_of_its_kind(store: StateStore) -> None:
    # A day's mix, oldest first: the daily refresh and a backfill are long, the 15-minute
    # incremental runs short. Over all runs, the median is an incremental one's (60 s).
    history = [(f"daily-{i}", DAILY_REFRESH, 600.0) for i in range(3)]
    history += [(f"backfill-{i}", BACKFILL_PART, 900.0) for i in range(3)]
    history += [(f"incremental-{i}", INCREMENTAL, 60.0) for i in range(6)]
    latest = [
        ("daily-now", DAILY_REFRESH, 700.0),
        ("backfill-now", BACKFILL_PART, 1000.0),
        ("incremental-slow", INCREMENTAL, 400.0),
    ]
    _record_kinds(store, history + latest)

    assert check_slowdown(store, "daily-now", k=3, recent=10) is None
    assert check_slowdown(store, "backfill-now", k=3, recent=10) is None
    slow = check_slowdown(store, "incremental-slow", k=3, recent=10)
    assert slow is not None and "the median 60.0s of the last 6 completed runs" in slow
    # k and the history size are the caller's: k=7 lets the incremental run pass, and with
    # history 2 there are too few runs for a verdict.
    assert check_slowdown(store, "incremental-slow", k=7, recent=10) is None
    assert check_slowdown(store, "incremental-slow", k=3, recent=2) is None
    assert run_kind(json.dumps(DAILY_REFRESH)) != run_kind(INCREMENTAL) != run_kind(BACKFILL_PART)
    assert run_kind(None) == run_kind({})  # runs recorded before kinds are one kind


@pytest.mark.e2e
def test_the_flow_reports_a_slow_run_with_the_configured_factor(
    prefect_api: str, paths: dict[str, Path]
) -> None:
    from flows.main import reddit_pipeline
    from tasks.config import PipelineConfig
    from tasks.state.store import RunRecord

    config = PipelineConfig(source="sample", slowdown_factor=2.5, slowdown_history=3, **paths)
    store = open_duckdb_state(paths["state_path"])
    try:  # three runs of the same kind that took no time at all
        for i in range(3):
            store.start_run(
                RunRecord(f"quick-{i}", "sample", None, None, None, config.model_dump(mode="json"))
            )
            store.finish_run(f"quick-{i}", "completed", {}, 0, {})
    finally:
        store.close()

    summary = reddit_pipeline(config)

    slow = [m for m in summary.messages if "completed runs of its kind" in m]
    assert len(slow) == 1 and "of the last 3" in slow[0] and "threshold 2.5x" in slow[0]
