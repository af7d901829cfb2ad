"""Pieces with no server: the connection's reading, the key, the trigger's serialization,
and the example DAG folder's import."""

from __future__ import annotations

import asyncio
import base64
import importlib.util
import inspect
import json
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from airflow.sdk import Connection
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from prefect_airflow_bridge import PrefectFlowRunTrigger, PrefectRunDeploymentOperator
from prefect_airflow_bridge.hook import (
    PrefectApi,
    PrefectAPIError,
    PrefectHook,
    RetryPolicy,
    api_from_connection,
    deployment_path,
)
from prefect_airflow_bridge.operator import as_json_parameters, idempotency_key

DAGS_DIR = Path(__file__).resolve().parents[1] / "dags"


def conn(**kwargs: object) -> Connection:
    return Connection(conn_id="prefect_test", conn_type="prefect", **kwargs)


def test_cloud_api_key_is_a_bearer_token_and_the_ui_url_is_the_app() -> None:
    api = api_from_connection(
        conn(host="https://api.prefect.cloud/api/accounts/A1/workspaces/W2", password="pnu_key")
    )
    assert api.headers["Authorization"] == "Bearer pnu_key"
    assert api.flow_run_url("r1") == (
        "https://app.prefect.cloud/account/A1/workspace/W2/runs/flow-run/r1"
    )


def test_self_hosted_auth_string_is_http_basic() -> None:
    api = api_from_connection(
        conn(host="http://127.0.0.1:4200/api", extra=json.dumps({"auth_string": "admin:s3cret"}))
    )
    token = api.headers["Authorization"].removeprefix("Basic ")
    assert base64.b64decode(token).decode() == "admin:s3cret"
    assert api.flow_run_url("r1") == "http://127.0.0.1:4200/runs/flow-run/r1"


def test_bare_host_gets_scheme_port_and_api_and_no_auth() -> None:
    api = api_from_connection(conn(host="prefect.internal", port=4200))
    assert api.api_url == "http://prefect.internal:4200/api"
    assert "Authorization" not in api.headers


def test_two_kinds_of_credentials_are_refused() -> None:
    with pytest.raises(AirflowException, match="both"):
        api_from_connection(
            conn(host="http://h/api", password="k", extra=json.dumps({"auth_string": "u:p"}))
        )


def test_missing_url_is_refused() -> None:
    with pytest.raises(AirflowException, match="no Prefect API URL"):
        api_from_connection(conn())


def test_deployment_name_must_have_flow_and_deployment() -> None:
    assert deployment_path("reddit-pipeline/daily run") == (
        "/deployments/name/reddit-pipeline/daily%20run"
    )
    with pytest.raises(AirflowException, match="flow-name/deployment-name"):
        deployment_path("daily")


def fake_context(try_number: int, map_index: int = -1) -> dict:
    ti = SimpleNamespace(
        dag_id="d",
        task_id="t",
        map_index=map_index,
        try_number=try_number,
        xcom_push=lambda **_: None,
    )
    return {"ti": ti, "run_id": "scheduled__2024-03-02T00:00:00+00:00"}


def test_idempotency_key_is_the_same_for_every_try_and_differs_per_mapped_index() -> None:
    first, retry = idempotency_key(fake_context(1)), idempotency_key(fake_context(2))
    assert first == retry == "airflow/d/t/scheduled__2024-03-02T00:00:00+00:00/-1"
    assert idempotency_key(fake_context(1, map_index=3)) != first


def test_parameters_become_json() -> None:
    when = datetime(2024, 3, 2, tzinfo=UTC)
    assert as_json_parameters({"config": {"since": when, "lake_dir": Path("/x")}}) == {
        "config": {"since": "2024-03-02T00:00:00+00:00", "lake_dir": "/x"}
    }
    assert as_json_parameters('{"config": {"source": "sample"}}') == {
        "config": {"source": "sample"}
    }
    with pytest.raises(AirflowException, match="not JSON"):
        as_json_parameters("{'config': {}}")


def test_trigger_serializes_to_ids_and_numbers_and_back() -> None:
    trigger = PrefectFlowRunTrigger("run-1", "prefect_x", poll_interval=5, deadline=123.0)
    path, kwargs = trigger.serialize()
    module, _, name = path.rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    assert cls is PrefectFlowRunTrigger
    assert json.loads(json.dumps(kwargs)) == kwargs
    assert cls(**kwargs).serialize() == (path, kwargs)


def test_operator_templates_deployment_and_parameters() -> None:
    assert {"deployment", "parameters"} <= set(PrefectRunDeploymentOperator.template_fields)


def test_dag_folder_imports_without_errors() -> None:
    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # Airflow < 3.1
        from airflow.models.dagbag import DagBag
    # include_examples=False where the DagBag still has it (Airflow 3.3 loads no examples from a
    # folder and dropped the argument).
    kwargs = {"include_examples": False}
    if "include_examples" not in inspect.signature(DagBag.__init__).parameters:
        kwargs = {}
    bag = DagBag(dag_folder=str(DAGS_DIR), **kwargs)
    assert bag.import_errors == {}
    assert "reddit_pipeline_daily" in bag.dags
    dag = bag.dags["reddit_pipeline_daily"]  # get_dag would read the metadata database
    task = dag.get_task("run_reddit_pipeline")
    assert task.retries >= 1
    assert dag.render_template_as_native_obj


def test_dag_config_is_the_data_interval_over_variable_and_params() -> None:
    spec = importlib.util.spec_from_file_location(
        "example_dag", DAGS_DIR / "reddit_pipeline_daily.py"
    )
    module = importlib.util.module_from_spec(spec)
    assert spec.loader
    spec.loader.exec_module(module)
    config = module.pipeline_config(
        {"subreddits": ["python"], "config": {"lake_dir": "/p", "since": "ignored"}},
        {"lake_dir": "/v", "warehouse_path": "/w.duckdb"},
        datetime(2024, 3, 2, tzinfo=UTC),
        datetime(2024, 3, 3, tzinfo=UTC),
    )
    assert config == {
        "lake_dir": "/p",
        "warehouse_path": "/w.duckdb",
        "subreddits": ["python"],
        "since": "2024-03-02T00:00:00+00:00",
        "until": "2024-03-03T00:00:00+00:00",
    }


def _hook_answering(*answers: object) -> tuple[PrefectHook, list[str]]:
    """A hook whose HTTP client gets the given answers in turn (a status code, or an
    exception to raise), at the edge of the network; returns it and the requests seen."""
    seen: list[str] = []
    pending = list(answers)

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.method} {request.url.path}")
        answer = pending.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return httpx.Response(answer, json={"detail": f"status {answer}", "id": "d1"})

    hook = PrefectHook(retries=3, backoff=0.0)
    hook._api = PrefectApi(api_url="http://prefect.test/api", headers={})
    hook.get_conn = lambda: httpx.Client(  # type: ignore[method-assign]
        base_url=hook.api.api_url, transport=httpx.MockTransport(handler)
    )
    return hook, seen


def test_a_briefly_unavailable_server_is_retried_until_it_answers() -> None:
    hook, seen = _hook_answering(503, httpx.ConnectError("refused"), 502, 200)
    assert hook.get_deployment("reddit-pipeline/local")["id"] == "d1"
    assert len(seen) == 4


def test_retries_are_bounded_and_the_last_answer_is_reported() -> None:
    hook, seen = _hook_answering(503, 503, 503, 503)
    with pytest.raises(PrefectAPIError, match=r"find deployment .* failed: HTTP 503: status 503"):
        hook.get_deployment("reddit-pipeline/local")
    assert len(seen) == 4


def test_a_client_error_is_not_retried() -> None:
    hook, seen = _hook_answering(409)
    with pytest.raises(PrefectAPIError, match="HTTP 409"):
        hook.get_deployment("reddit-pipeline/local")
    assert seen == ["GET /api/deployments/name/reddit-pipeline/local"]


def test_a_missing_deployment_fails_the_task_at_once_naming_it_and_how_to_list_them() -> None:
    hook, seen = _hook_answering(404, 200)
    with pytest.raises(AirflowFailException) as info:
        hook.get_deployment("reddit-pipeline/missing")
    message = str(info.value)
    assert "no deployment 'reddit-pipeline/missing'" in message
    assert "flow 'reddit-pipeline', deployment 'missing'" in message
    assert "prefect deployment ls" in message
    # One request, and an exception Airflow does not retry (unlike AirflowException).
    assert seen == ["GET /api/deployments/name/reddit-pipeline/missing"]


def test_an_unreachable_server_fails_with_the_url_after_the_retries() -> None:
    hook, seen = _hook_answering(*[httpx.ConnectError("refused")] * 4)
    with pytest.raises(PrefectAPIError, match=r"ConnectError.*http://prefect.test/api reachable"):
        hook.get_deployment("reddit-pipeline/local")
    assert len(seen) == 4


def _trigger_answering(*answers: object, max_errors: int = 3) -> tuple[Any, list[str]]:
    """A trigger whose HTTP client gets the given answers in turn (a status code, a
    (status, headers) pair, or an exception to raise); returns the first event's payload and
    the requests seen."""
    seen: list[str] = []
    pending = list(answers)
    run = {"id": "run-1", "name": "calm-fox", "state": {"type": "COMPLETED", "name": "Completed"}}

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.method} {request.url.path}")
        answer = pending.pop(0)
        if isinstance(answer, Exception):
            raise answer
        status, headers = answer if isinstance(answer, tuple) else (answer, {})
        return httpx.Response(status, headers=headers, json=run if status == 200 else {})

    trigger = PrefectFlowRunTrigger("run-1", poll_interval=0.01, max_errors=max_errors)
    api = PrefectApi(api_url="http://prefect.test/api", headers={})

    async def fake_api() -> PrefectApi:
        return api

    trigger._api = fake_api  # type: ignore[method-assign]
    trigger._client = lambda api: httpx.AsyncClient(  # type: ignore[method-assign]
        base_url=api.api_url, transport=httpx.MockTransport(handler)
    )

    async def first_event() -> dict[str, Any]:
        async for event in trigger.run():
            return event.payload
        raise AssertionError("the trigger ended without an event")

    return asyncio.run(first_event()), seen


def test_the_trigger_waits_out_a_rate_limit_and_a_busy_server_like_the_hook() -> None:
    event, seen = _trigger_answering(
        (429, {"Retry-After": "0"}), 503, httpx.ConnectError("refused"), 200, max_errors=4
    )
    assert event["status"] == "success" and event["state_name"] == "Completed"
    assert seen == ["GET /api/flow_runs/run-1"] * 4


def test_the_trigger_gives_up_after_max_errors_rate_limits_in_a_row() -> None:
    event, seen = _trigger_answering(*[(429, {"Retry-After": "0"})] * 3)
    assert event["status"] == "error"
    assert event["message"] == "could not read the flow run 3 times in a row: HTTP 429"
    assert len(seen) == 3


def test_a_client_error_ends_the_trigger_at_once_with_prefects_answer() -> None:
    with pytest.raises(PrefectAPIError, match="read flow run run-1 failed: HTTP 404"):
        _trigger_answering(404)


def test_the_retry_policy_honours_retry_after_within_its_cap() -> None:
    policy = RetryPolicy(backoff=2.0, max_wait=60.0)
    request = httpx.Request("GET", "http://prefect.test/api/x")
    limited = httpx.Response(429, headers={"Retry-After": "7"}, request=request)
    assert policy.is_transient(limited)
    assert policy.wait(0, limited) == 7.0
    assert policy.wait(3) == 16.0
    assert policy.wait(10) == 60.0
    assert policy.wait(0, httpx.Response(503, headers={"Retry-After": "soon"})) == 2.0
    assert not policy.is_transient(httpx.Response(404))
