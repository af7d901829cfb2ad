"""PrefectHook: Prefect's REST API over httpx, configured from an Airflow connection.

Airflow 3 and Prefect 3 cannot share one Python environment (their FastAPI pins clash), so the
bridge never imports prefect: it speaks the few REST endpoints it needs, sync for the operator
and async for the trigger, from one place that knows the URL, the auth and the error messages.
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
from airflow.sdk import BaseHook, Connection
from airflow.sdk.exceptions import AirflowException, AirflowFailException

# Answers that mean "try again shortly": a busy or restarting server (Prefect answers 503
# when its database is momentarily locked, 500 on an unexpected database error), a proxy in
# between, or a rate limit (Prefect Cloud answers 429 with Retry-After). Retrying is safe
# for every call the bridge makes (see PrefectHook._request).
TRANSIENT_STATUS = frozenset({429, 500, 502, 503, 504})

# Prefect's terminal state types, and the ones that mean the run did not do its work.
TERMINAL_STATES = frozenset({"COMPLETED", "FAILED", "CRASHED", "CANCELLED"})
FAILED_STATES = frozenset({"FAILED", "CRASHED", "CANCELLED"})


class PrefectAPIError(AirflowException):
    """Prefect answered with an error: the message carries the status and Prefect's detail."""

    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


@dataclass(frozen=True)
class PrefectApi:
    """Where the API is and how to authenticate: everything a request needs, and nothing that
    needs Airflow, so the trigger can build clients from it inside the triggerer's event loop."""

    api_url: str
    headers: dict[str, str]
    ui_url: str | None = None

    def flow_run_url(self, flow_run_id: str) -> str:
        """The run's page in the Prefect UI (self-hosted server or Prefect Cloud)."""
        return f"{self.ui_base()}/runs/flow-run/{flow_run_id}"

    def ui_base(self) -> str:
        """The UI lives beside the API: `.../api` on a self-hosted server, and
        app.prefect.cloud/account/A/workspace/W for Cloud's api.prefect.cloud/api/accounts/A/
        workspaces/W. An explicit `ui_url` in the connection's extra wins."""
        if self.ui_url:
            return self.ui_url.rstrip("/")
        url = self.api_url.rstrip("/")
        if "/api/accounts/" in url and "/workspaces/" in url:
            head, _, rest = url.partition("/api/accounts/")
            account, _, workspace = rest.partition("/workspaces/")
            head = head.replace("://api.", "://app.", 1)
            return f"{head}/account/{account}/workspace/{workspace.strip('/')}"
        return url.removesuffix("/api")


def api_from_connection(conn: Connection) -> PrefectApi:
    """Read the API URL and credentials from a connection.

    host: the API URL (`http://127.0.0.1:4200/api`, or Cloud's `https://api.prefect.cloud/api/
    accounts/<id>/workspaces/<id>`); a bare host name gets `schema` (default http), `port` and
    `/api`. password: a Prefect Cloud API key, sent as a Bearer token. extra `auth_string`:
    a self-hosted server's `user:pass` (PREFECT_SERVER_API_AUTH_STRING), sent as HTTP Basic.
    extra `api_url` overrides host; extra `ui_url` sets where run links point.
    """
    extra = conn.extra_dejson or {}
    api_url = extra.get("api_url") or _url_from_host(conn)
    if not api_url:
        raise AirflowException(
            f"Connection {conn.conn_id!r} has no Prefect API URL: set its host to e.g. "
            "http://127.0.0.1:4200/api (or extra api_url)"
        )
    api_key = conn.password or extra.get("api_key")
    auth_string = extra.get("auth_string")
    if api_key and auth_string:
        raise AirflowException(
            f"Connection {conn.conn_id!r} sets both an API key (password) and a basic-auth "
            "auth_string (extra): keep the one your Prefect server expects"
        )
    headers = {"Accept": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    elif auth_string:
        token = base64.b64encode(str(auth_string).encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    return PrefectApi(api_url.rstrip("/"), headers, extra.get("ui_url"))


def _url_from_host(conn: Connection) -> str | None:
    host = (conn.host or "").strip()
    if not host:
        return None
    if "://" in host:
        return host
    scheme = conn.schema or "http"
    port = f":{conn.port}" if conn.port else ""
    return f"{scheme}://{host}{port}/api"


def raise_for_prefect(response: httpx.Response, what: str) -> None:
    """Fail loudly with what was attempted, the HTTP status and Prefect's own detail."""
    if response.is_success:
        return
    try:
        body = response.json()
        detail: Any = body.get("detail") or body.get("exception_message") or response.text
    except (ValueError, AttributeError):
        detail = response.text
    if not isinstance(detail, str):
        detail = json.dumps(detail)
    if response.status_code in (401, 403):
        detail += (
            " (check the connection's credentials: extra auth_string for a server started with"
            " PREFECT_SERVER_API_AUTH_STRING, password for a Prefect Cloud API key)"
        )
    raise PrefectAPIError(
        f"Prefect API: {what} failed: HTTP {response.status_code}: {detail}",
        status_code=response.status_code,
    )


def _retry_after(response: httpx.Response, default: float) -> float:
    """The server's Retry-After in seconds when it gives one as a number, else `default`."""
    try:
        return max(0.0, float(response.headers.get("Retry-After", "")))
    except ValueError:
        return default


@dataclass(frozen=True)
class RetryPolicy:
    """What "try again shortly" means, for the hook's calls and the trigger's polls alike:
    transport errors and TRANSIENT_STATUS answers, exponential backoff from `backoff`
    seconds, the server's Retry-After when it sends one, and never more than `max_wait`."""

    backoff: float = 1.0
    max_wait: float = 60.0

    @staticmethod
    def is_transient(response: httpx.Response) -> bool:
        return response.status_code in TRANSIENT_STATUS

    def wait(self, attempt: int, response: httpx.Response | None = None) -> float:
        """Seconds to wait after failed attempt number `attempt` (0 for the first)."""
        default = self.backoff * 2**attempt
        if response is not None:
            default = _retry_after(response, default)
        return min(default, self.max_wait)


def deployment_path(deployment: str) -> str:
    """`flow-name/deployment-name` -> the REST path of the lookup by name, each part quoted."""
    flow_name, sep, deployment_name = deployment.partition("/")
    if not sep or not flow_name or not deployment_name:
        raise AirflowException(
            f"deployment must be 'flow-name/deployment-name', got {deployment!r}"
        )
    return f"/deployments/name/{quote(flow_name, safe='')}/{quote(deployment_name, safe='')}"


def cancel_state(message: str) -> dict[str, Any]:
    """A CANCELLING state: Prefect's worker then stops the run's process and marks it Cancelled
    (a run not yet picked up is cancelled at once by the server's orchestration)."""
    return {"state": {"type": "CANCELLING", "name": "Cancelling", "message": message}}


class PrefectHook(BaseHook):
    """Talk to a Prefect server or Prefect Cloud through the REST API.

    The connection (default id `prefect_default`, type `prefect`) holds the API URL and the
    credentials; see `api_from_connection`.
    """

    conn_name_attr = "prefect_conn_id"
    default_conn_name = "prefect_default"
    conn_type = "prefect"
    hook_name = "Prefect"

    def __init__(
        self,
        prefect_conn_id: str = default_conn_name,
        timeout: float = 30.0,
        retries: int = 4,
        backoff: float = 1.0,
    ) -> None:
        super().__init__()
        self.prefect_conn_id = prefect_conn_id
        self.timeout = timeout
        self.retries = retries
        self.policy = RetryPolicy(backoff=backoff)
        self._api: PrefectApi | None = None

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Label the connection form's fields with what the bridge reads from them."""
        return {
            "hidden_fields": ["schema", "port", "login"],
            "relabeling": {"host": "Prefect API URL", "password": "Prefect Cloud API key"},
            "placeholders": {
                "host": "http://127.0.0.1:4200/api",
                "extra": '{"auth_string": "user:pass"}',
            },
        }

    @property
    def api(self) -> PrefectApi:
        if self._api is None:
            self._api = api_from_connection(self.get_connection(self.prefect_conn_id))
        return self._api

    def get_conn(self) -> httpx.Client:
        """A client bound to the API URL, with the auth headers; the caller closes it."""
        return httpx.Client(
            base_url=self.api.api_url, headers=self.api.headers, timeout=self.timeout
        )

    def _request(self, method: str, path: str, what: str, **kwargs: Any) -> Any:
        """One call, retried (bounded, exponential backoff, Retry-After honoured) when the
        server is briefly unavailable or unreachable. Retrying is safe: reads are reads, a
        flow run is created under an idempotency key, and cancelling twice is cancelling."""
        with self.get_conn() as client:
            for attempt in range(self.retries + 1):
                last = attempt == self.retries
                try:
                    response = client.request(method, path, **kwargs)
                except httpx.TransportError as exc:
                    if last:
                        raise PrefectAPIError(
                            f"Prefect API: {what} failed: {type(exc).__name__}: {exc} "
                            f"(after {attempt + 1} attempts; is {self.api.api_url} reachable?)"
                        ) from exc
                    wait = self.policy.wait(attempt)
                else:
                    if not self.policy.is_transient(response) or last:
                        break
                    wait = self.policy.wait(attempt, response)
                self.log.warning("Prefect API: %s: retrying in %.1f s", what, wait)
                time.sleep(wait)
        raise_for_prefect(response, what)
        return response.json() if response.content else None

    def get_deployment(self, deployment: str) -> dict[str, Any]:
        """Look a deployment up by `flow-name/deployment-name`. A 404 fails the task for good:
        the name is wrong or the deployment was never made, and no retry of the Airflow task
        would find it (the DAG's retries would only wait minutes to fail again)."""
        try:
            return self._request(
                "GET", deployment_path(deployment), f"find deployment {deployment!r}"
            )
        except PrefectAPIError as exc:
            if exc.status_code != 404:
                raise
            flow_name, _, deployment_name = deployment.partition("/")
            raise AirflowFailException(
                f"Prefect has no deployment {deployment!r} (flow {flow_name!r}, deployment "
                f"{deployment_name!r}) at {self.api.api_url}: list the deployments with "
                "`prefect deployment ls` (names are flow-name/deployment-name), or create it "
                "with `prefect --no-prompt deploy --all`"
            ) from exc

    def create_flow_run(
        self,
        deployment_id: str,
        parameters: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
        tags: list[str] | None = None,
    ) -> dict[str, Any]:
        """Create a flow run of the deployment. With an idempotency key, Prefect returns the run
        already created with that key instead of a new one: that is what makes retries safe."""
        body: dict[str, Any] = {"parameters": parameters or {}}
        if idempotency_key:
            body["idempotency_key"] = idempotency_key
        if tags:
            body["tags"] = tags
        return self._request(
            "POST",
            f"/deployments/{deployment_id}/create_flow_run",
            f"create a flow run of deployment {deployment_id}",
            json=body,
        )

    def get_flow_run(self, flow_run_id: str) -> dict[str, Any]:
        return self._request("GET", f"/flow_runs/{flow_run_id}", f"read flow run {flow_run_id}")

    def cancel_flow_run(self, flow_run_id: str, message: str) -> dict[str, Any]:
        """Ask Prefect to cancel the run; a run already finished is left as it is."""
        return self._request(
            "POST",
            f"/flow_runs/{flow_run_id}/set_state",
            f"cancel flow run {flow_run_id}",
            json=cancel_state(message),
        )

    def count_flow_runs(self, deployment_id: str) -> int:
        """How many runs the deployment has (the tests use it to show retries add none)."""
        return self._request(
            "POST",
            "/flow_runs/count",
            f"count the flow runs of deployment {deployment_id}",
            json={"flow_runs": {"deployment_id": {"any_": [deployment_id]}}},
        )

    def test_connection(self) -> tuple[bool, str]:
        """The UI's 'Test' button: /health needs no auth, so read something that does."""
        try:
            self._request("POST", "/deployments/count", "count deployments", json={})
        except Exception as exc:
            return False, str(exc)
        return True, f"Connected to {self.api.api_url}"
