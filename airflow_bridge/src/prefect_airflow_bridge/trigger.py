"""PrefectFlowRunTrigger: wait for a Prefect flow run in the triggerer, not on a worker.

A pipeline run takes minutes to hours; polling it from a worker would hold a worker slot all
that time. The triggerer runs thousands of these coroutines in one event loop, each asleep
between two GETs of the flow run.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
from airflow.sdk import BaseHook
from airflow.triggers.base import BaseTrigger, TriggerEvent

from prefect_airflow_bridge.hook import (
    FAILED_STATES,
    TERMINAL_STATES,
    PrefectApi,
    RetryPolicy,
    api_from_connection,
    cancel_state,
    raise_for_prefect,
)


def run_event(
    status: str, flow_run: dict[str, Any], api: PrefectApi, message: str | None = None
) -> dict[str, Any]:
    """The event's payload: plain JSON, since Airflow stores it and hands it to the operator's
    execute_complete in another process."""
    state = flow_run.get("state") or {}
    return {
        "status": status,
        "flow_run_id": str(flow_run["id"]),
        "flow_run_name": flow_run.get("name"),
        "state_type": state.get("type"),
        "state_name": state.get("name"),
        "message": message if message is not None else state.get("message"),
        "url": api.flow_run_url(str(flow_run["id"])),
    }


def classify(state_type: str | None) -> str | None:
    """'success' or 'failed' once the run is final; None while it is still going."""
    if state_type not in TERMINAL_STATES:
        return None
    return "failed" if state_type in FAILED_STATES else "success"


class PrefectFlowRunTrigger(BaseTrigger):
    """Poll `GET /flow_runs/{id}` until the run is final or the deadline passes.

    The deadline is an absolute time (epoch seconds), so a trigger moved to another triggerer,
    or restarted, keeps the operator's timeout instead of starting it over. Transient errors
    (the hook's RetryPolicy: unreachable, 429 rate limits, 502/503/504) are retried up to
    `max_errors` polls in a row, waiting as the policy says (Retry-After honoured): a
    restarting or rate-limiting Prefect server must not fail a run that is doing fine.
    """

    def __init__(
        self,
        flow_run_id: str,
        prefect_conn_id: str = "prefect_default",
        poll_interval: float = 30.0,
        deadline: float | None = None,
        max_errors: int = 5,
    ) -> None:
        super().__init__()
        self.flow_run_id = flow_run_id
        self.prefect_conn_id = prefect_conn_id
        self.poll_interval = poll_interval
        self.deadline = deadline
        self.max_errors = max_errors

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Only ids and numbers: the connection (and its secrets) is read again where the
        trigger runs, never stored in the trigger table."""
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "flow_run_id": self.flow_run_id,
                "prefect_conn_id": self.prefect_conn_id,
                "poll_interval": self.poll_interval,
                "deadline": self.deadline,
                "max_errors": self.max_errors,
            },
        )

    async def _api(self) -> PrefectApi:
        return api_from_connection(await BaseHook.aget_connection(self.prefect_conn_id))

    def _client(self, api: PrefectApi) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=api.api_url, headers=api.headers, timeout=30.0)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        api = await self._api()
        policy = RetryPolicy(backoff=min(self.poll_interval, 5.0))
        errors = 0
        async with self._client(api) as client:
            while True:
                problem: str | None = None
                try:
                    response = await client.get(f"/flow_runs/{self.flow_run_id}")
                except httpx.TransportError as exc:
                    problem, wait = f"{type(exc).__name__}: {exc}", policy.wait(errors)
                else:
                    if policy.is_transient(response):
                        problem = f"HTTP {response.status_code}"
                        wait = policy.wait(errors, response)
                    else:
                        raise_for_prefect(response, f"read flow run {self.flow_run_id}")
                if problem is not None:
                    errors += 1
                    self.log.warning(
                        "Polling flow run %s failed (%d/%d): %s; next try in %.1f s",
                        self.flow_run_id,
                        errors,
                        self.max_errors,
                        problem,
                        wait,
                    )
                    if errors >= self.max_errors:
                        yield TriggerEvent(
                            {
                                "status": "error",
                                "flow_run_id": self.flow_run_id,
                                "message": f"could not read the flow run {errors} times in a "
                                f"row: {problem}",
                                "url": api.flow_run_url(self.flow_run_id),
                            }
                        )
                        return
                else:
                    errors, wait = 0, self.poll_interval
                    flow_run = response.json()
                    state_type = (flow_run.get("state") or {}).get("type")
                    outcome = classify(state_type)
                    if outcome:
                        yield TriggerEvent(run_event(outcome, flow_run, api))
                        return
                    self.log.info("Flow run %s is %s", self.flow_run_id, state_type)
                if self.deadline is not None and time.time() >= self.deadline:
                    yield TriggerEvent(
                        {
                            "status": "timeout",
                            "flow_run_id": self.flow_run_id,
                            "message": "the flow run did not finish before the timeout",
                            "url": api.flow_run_url(self.flow_run_id),
                        }
                    )
                    return
                await asyncio.sleep(self._sleep_for(wait))

    def _sleep_for(self, wait: float) -> float:
        """`wait`, cut short by the deadline."""
        if self.deadline is None:
            return wait
        return max(0.0, min(wait, self.deadline - time.time()))

    async def on_kill(self) -> None:
        """A user marked the deferred task failed/succeeded or cleared it (Airflow >= 3.3
        calls this): cancel the Prefect run too, so it does not go on unwatched."""
        api = await self._api()
        async with self._client(api) as client:
            response = await client.post(
                f"/flow_runs/{self.flow_run_id}/set_state",
                json=cancel_state("Cancelled from Airflow: the task was killed"),
            )
            raise_for_prefect(response, f"cancel flow run {self.flow_run_id}")
