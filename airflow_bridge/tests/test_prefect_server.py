"""The hook, the trigger and the operator against a real Prefect server running the real flow
on a process worker (fixtures in conftest.py)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from conftest import connection_json
from prefect_airflow_bridge import (
    PrefectFlowRunTrigger,
    PrefectHook,
    PrefectRunDeploymentOperator,
    PrefectRunFailed,
)
from prefect_airflow_bridge.hook import PrefectAPIError

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("prefect_connection")]

RUN_TIMEOUT = 900.0  # a whole pipeline run on a busy 2-core machine, with room to spare


def window_config(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    return {
        "source": "sample",
        "since": "2024-03-02T00:00:00+00:00",
        "until": "2024-03-03T00:00:00+00:00",
        "lake_dir": str(tmp_path / "lake"),
        "warehouse_path": str(tmp_path / "warehouse.duckdb"),
        "state_path": str(tmp_path / "state.duckdb"),
        **extra,
    }


def context(run_id: str, try_number: int = 1) -> dict[str, Any]:
    pushed: dict[str, Any] = {}
    ti = SimpleNamespace(
        dag_id="bridge_tests",
        task_id="run",
        map_index=-1,
        try_number=try_number,
        xcom_push=lambda key, value: pushed.__setitem__(key, value),
        pushed=pushed,
    )
    return {"ti": ti, "run_id": run_id}


def wait_for_event(flow_run_id: str, deadline: float, poll: float = 2.0) -> dict[str, Any]:
    async def first_event() -> dict[str, Any]:
        trigger = PrefectFlowRunTrigger(flow_run_id, poll_interval=poll, deadline=deadline)
        async for event in trigger.run():
            return event.payload
        raise AssertionError("the trigger ended without an event")

    return asyncio.run(first_event())


def wait_until_started(flow_run_id: str, deadline: float) -> str:
    """Until the worker has started the run's process (or the run has ended). Cancelling in
    the instant between the worker's PENDING and the process's RUNNING can leave the run in
    CANCELLING for good (a race inside Prefect's worker, seen here once in ~30 runs); what the
    bridge's on_kill meets in practice is a run that Airflow was waiting on, which has started."""
    hook = PrefectHook()
    while True:
        state = hook.get_flow_run(flow_run_id)["state"]["type"]
        if state not in {"SCHEDULED", "PENDING"} or time.time() > deadline:
            return state
        time.sleep(0.5)


def test_hook_finds_the_deployment_by_name(deployment) -> None:
    found = PrefectHook().get_deployment(deployment.name)
    assert str(found["id"]) == deployment.id
    assert PrefectHook().test_connection()[0]


def test_a_connection_without_the_servers_auth_string_is_refused_with_what_to_check(
    deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The session's server requires PREFECT_SERVER_API_AUTH_STRING; every other test in this
    # folder gets in with the connection's extra auth_string (HTTP Basic).
    api_url = deployment.server.api_url
    monkeypatch.setenv("AIRFLOW_CONN_PREFECT_NOAUTH", connection_json(api_url, None))
    monkeypatch.setenv("AIRFLOW_CONN_PREFECT_WRONG", connection_json(api_url, "admin:wrong"))
    for conn_id in ("prefect_noauth", "prefect_wrong"):
        with pytest.raises(PrefectAPIError) as refused:
            PrefectHook(conn_id, retries=0).get_deployment(deployment.name)
        assert "HTTP 401: Unauthorized (check the connection's credentials" in str(refused.value)
        assert "auth_string" in str(refused.value)
        ok, message = PrefectHook(conn_id, retries=0).test_connection()
        assert not ok and "HTTP 401" in message
    assert PrefectHook().test_connection() == (True, f"Connected to {api_url}")


def test_the_triggers_on_kill_cancels_the_run(deployment, tmp_path: Path) -> None:
    """What Airflow calls when a user kills the task while it is deferred."""
    hook = PrefectHook()
    flow_run = hook.create_flow_run(
        deployment.id, {"config": window_config(tmp_path)}, f"trigger-kill-{tmp_path.name}"
    )
    wait_until_started(str(flow_run["id"]), deadline=time.time() + RUN_TIMEOUT)
    asyncio.run(PrefectFlowRunTrigger(str(flow_run["id"])).on_kill())
    state = hook.get_flow_run(str(flow_run["id"]))["state"]
    assert state["type"] in {"CANCELLING", "CANCELLED", "COMPLETED"}
    if state["type"] != "COMPLETED":
        event = wait_for_event(str(flow_run["id"]), deadline=time.time() + RUN_TIMEOUT)
        assert event["state_type"] == "CANCELLED"


def test_a_retry_finds_the_first_run_and_on_kill_cancels_it(deployment, tmp_path: Path) -> None:
    operator = PrefectRunDeploymentOperator(
        task_id="run",
        deployment=deployment.name,
        parameters={"config": window_config(tmp_path)},
        wait=False,
    )
    before = deployment.count_runs()
    first = operator.execute(context("retry-test", try_number=1))
    retry = operator.execute(context("retry-test", try_number=2))
    assert retry["flow_run_id"] == first["flow_run_id"]
    assert deployment.count_runs() == before + 1
    assert first["url"].endswith(f"/runs/flow-run/{first['flow_run_id']}")

    # A wait whose deadline has passed reports a timeout rather than waiting on.
    event = wait_for_event(first["flow_run_id"], deadline=time.time() - 1)
    assert event["status"] in {"timeout", "success"}  # success only if the run was very quick

    wait_until_started(first["flow_run_id"], deadline=time.time() + RUN_TIMEOUT)
    operator.on_kill()
    state = PrefectHook().get_flow_run(first["flow_run_id"])["state"]
    assert state["type"] in {"CANCELLING", "CANCELLED", "COMPLETED"}
    if state["type"] != "COMPLETED":
        event = wait_for_event(first["flow_run_id"], deadline=time.time() + RUN_TIMEOUT)
        assert event["state_type"] == "CANCELLED"


def test_trigger_reports_a_completed_run_and_the_operator_returns_it(
    deployment, tmp_path: Path
) -> None:
    hook = PrefectHook()
    flow_run = hook.create_flow_run(
        deployment.id, {"config": window_config(tmp_path)}, f"trigger-ok-{tmp_path.name}"
    )
    event = wait_for_event(str(flow_run["id"]), deadline=time.time() + RUN_TIMEOUT)
    assert event["status"] == "success", event
    assert event["state_name"] == "Completed"
    operator = PrefectRunDeploymentOperator(task_id="run", deployment=deployment.name)
    result = operator.execute_complete(context("ok"), event)
    assert result["flow_run_id"] == str(flow_run["id"])
    assert result["url"].startswith(deployment.server.api_url.removesuffix("/api"))


def test_a_failed_run_fails_the_task_with_prefects_message(deployment, tmp_path: Path) -> None:
    # Valid for the deployment's parameter schema; fails once the flow runs.
    missing = tmp_path / "missing" / "RS_2024-03.zst"
    config = window_config(tmp_path, source="dump", dump_paths=[str(missing)])
    operator = PrefectRunDeploymentOperator(
        task_id="run",
        deployment=deployment.name,
        parameters={"config": config},
        deferrable=False,
        poll_interval=2,
        timeout=RUN_TIMEOUT,
    )
    with pytest.raises(PrefectRunFailed) as failure:
        operator.execute(context(f"fail-{tmp_path.name}"))
    message = str(failure.value)
    assert "ended Failed" in message
    assert "dump file not found" in message
    assert str(missing) in message
