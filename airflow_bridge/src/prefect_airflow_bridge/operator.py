"""PrefectRunDeploymentOperator: start a run of a Prefect deployment and wait for it.

The pipeline's logic stays in Prefect (retries, caching, the run's history and UI); Airflow
only decides when a window runs. So the operator is small: find the deployment, create a run
with an idempotency key from the Airflow task instance, wait (deferred, by default), and fail
with Prefect's own final state and message.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from pathlib import PurePath
from typing import Any, ClassVar

from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowException

from prefect_airflow_bridge.hook import PrefectHook
from prefect_airflow_bridge.trigger import PrefectFlowRunTrigger, classify, run_event


class PrefectRunFailed(AirflowException):
    """The Prefect run ended Failed, Crashed or Cancelled, or was not seen to finish in time."""


def idempotency_key(context: Context) -> str:
    """One key per task instance, the same for every try: dag_id, task_id, run_id, map_index.

    try_number is left out on purpose: a retry (worker lost, triggerer restarted, an HTTP
    error after Prefect created the run) must find the run the first try created, never start a
    second pipeline run over the same window.
    """
    ti = context["ti"]
    map_index = getattr(ti, "map_index", -1)
    return f"airflow/{ti.dag_id}/{ti.task_id}/{context['run_id']}/{map_index}"


def _jsonable(value: Any) -> Any:
    """What native template rendering may leave in the parameters, as JSON's types."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable: {value!r}")


def as_json_parameters(parameters: Any) -> dict[str, Any]:
    """The flow's parameters as plain JSON. A string is taken as a JSON object (a template
    rendered without render_template_as_native_obj); anything else must be a mapping."""
    if parameters is None:
        return {}
    if isinstance(parameters, str):
        try:
            parameters = json.loads(parameters)
        except ValueError as exc:
            raise AirflowException(
                f"parameters rendered to a string that is not JSON ({exc}): {parameters[:200]!r}."
                " Render templates as native objects (DAG(render_template_as_native_obj=True))"
                " or make the template produce JSON (| tojson)."
            ) from exc
    if not isinstance(parameters, dict):
        raise AirflowException(f"parameters must be a mapping, got {type(parameters).__name__}")
    return json.loads(json.dumps(parameters, default=_jsonable))


class PrefectRunDeploymentOperator(BaseOperator):
    """Run a Prefect deployment and, with `wait`, wait for the run to finish.

    :param deployment: `flow-name/deployment-name`, e.g. `reddit-pipeline/daily` (templated).
    :param parameters: the flow's parameters (templated; nested values too).
    :param prefect_conn_id: the Airflow connection holding the API URL and credentials.
    :param wait: wait for the run to end, and fail the task if it did not complete.
    :param deferrable: wait in the triggerer (no worker slot held) rather than on the worker.
    :param poll_interval: seconds between two reads of the run's state.
    :param timeout: seconds to wait at most; then the run is cancelled and the task fails.
    :param idempotency_key: overrides the key derived from the task instance (templated).
    :param tags: tags for the Prefect run (the Airflow dag and run ids are always added).

    Returns (XCom) `{"flow_run_id", "flow_run_name", "url", "state_name"}`.
    """

    template_fields: Sequence[str] = ("deployment", "parameters", "idempotency_key", "tags")
    template_fields_renderers: ClassVar[dict[str, str]] = {"parameters": "json"}
    ui_color = "#2d6df6"

    def __init__(
        self,
        *,
        deployment: str,
        parameters: dict[str, Any] | str | None = None,
        prefect_conn_id: str = PrefectHook.default_conn_name,
        wait: bool = True,
        deferrable: bool = True,
        poll_interval: float = 30.0,
        timeout: float | None = None,
        idempotency_key: str | None = None,
        tags: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.deployment = deployment
        self.parameters = parameters
        self.prefect_conn_id = prefect_conn_id
        self.wait = wait
        self.deferrable = deferrable
        self.poll_interval = poll_interval
        self.timeout = timeout
        self.idempotency_key = idempotency_key
        self.tags = tags
        self._flow_run_id: str | None = None

    @property
    def hook(self) -> PrefectHook:
        return PrefectHook(self.prefect_conn_id)

    def execute(self, context: Context) -> dict[str, Any] | None:
        hook = self.hook
        deployment = hook.get_deployment(self.deployment)
        key = self.idempotency_key or idempotency_key(context)
        ti = context["ti"]
        tags = [*(self.tags or []), f"airflow-dag:{ti.dag_id}", f"airflow-run:{context['run_id']}"]
        flow_run = hook.create_flow_run(
            str(deployment["id"]), as_json_parameters(self.parameters), key, tags
        )
        self._flow_run_id = flow_run_id = str(flow_run["id"])
        url = hook.api.flow_run_url(flow_run_id)
        # Pushed before waiting, so the run can be found even if the wait is interrupted.
        ti.xcom_push(key="flow_run_id", value=flow_run_id)
        ti.xcom_push(key="flow_run_url", value=url)
        self.log.info(
            "Prefect flow run %s (%s) of %s, idempotency key %r: %s",
            flow_run.get("name"),
            flow_run_id,
            self.deployment,
            key,
            url,
        )
        if not self.wait:
            return self._result(run_event("created", flow_run, hook.api))
        if classify((flow_run.get("state") or {}).get("type")):
            # A retry found the first try's run already finished: its outcome is the answer.
            return self._finish(run_event(classify(flow_run["state"]["type"]), flow_run, hook.api))
        deadline = time.time() + self.timeout if self.timeout else None
        if self.deferrable:
            self.defer(
                trigger=PrefectFlowRunTrigger(
                    flow_run_id=flow_run_id,
                    prefect_conn_id=self.prefect_conn_id,
                    poll_interval=self.poll_interval,
                    deadline=deadline,
                ),
                method_name="execute_complete",
            )
        return self._finish(self._poll(hook, flow_run_id, deadline))

    def _poll(self, hook: PrefectHook, flow_run_id: str, deadline: float | None) -> dict[str, Any]:
        """Wait on the worker (deferrable=False): for installations without a triggerer."""
        while True:
            flow_run = hook.get_flow_run(flow_run_id)
            outcome = classify((flow_run.get("state") or {}).get("type"))
            if outcome:
                return run_event(outcome, flow_run, hook.api)
            if deadline is not None and time.time() >= deadline:
                return run_event(
                    "timeout", flow_run, hook.api, "the flow run did not finish before the timeout"
                )
            self.log.info("Flow run %s is %s", flow_run_id, flow_run["state"]["type"])
            pause = self.poll_interval
            if deadline is not None:
                pause = max(0.0, min(pause, deadline - time.time()))
            time.sleep(pause)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        """Resumed on a worker with the trigger's event once the run is final."""
        self._flow_run_id = event.get("flow_run_id")
        return self._finish(event)

    def _finish(self, event: dict[str, Any]) -> dict[str, Any]:
        status = event.get("status")
        if status == "success":
            self.log.info("Prefect flow run %s completed: %s", event["flow_run_id"], event["url"])
            return self._result(event)
        if status == "timeout":
            self._cancel(event["flow_run_id"], f"Airflow task timed out after {self.timeout}s")
            raise PrefectRunFailed(
                f"Prefect flow run {event['flow_run_id']} did not finish within {self.timeout}s;"
                f" cancelled it. {event['url']}"
            )
        if status == "failed":
            raise PrefectRunFailed(
                f"Prefect flow run {event.get('flow_run_name')} ({event['flow_run_id']}) ended "
                f"{event.get('state_name')}: {event.get('message') or 'no message'}. "
                f"{event['url']}"
            )
        raise PrefectRunFailed(
            f"Prefect flow run {event.get('flow_run_id')}: {event.get('message')}. "
            f"{event.get('url')}"
        )

    @staticmethod
    def _result(event: dict[str, Any]) -> dict[str, Any]:
        return {
            "flow_run_id": event["flow_run_id"],
            "flow_run_name": event.get("flow_run_name"),
            "url": event["url"],
            "state_name": event.get("state_name"),
        }

    def _cancel(self, flow_run_id: str, message: str) -> None:
        try:
            self.hook.cancel_flow_run(flow_run_id, message)
            self.log.info("Asked Prefect to cancel flow run %s", flow_run_id)
        except Exception:
            self.log.exception("Could not cancel Prefect flow run %s", flow_run_id)

    def on_kill(self) -> None:
        """The task was killed while waiting on the worker: cancel the Prefect run with it.
        (While deferred, the trigger's on_kill does the same.)"""
        if self._flow_run_id:
            self._cancel(self._flow_run_id, "Cancelled from Airflow: the task was killed")
