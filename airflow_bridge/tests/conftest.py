"""Fixtures: a real Prefect server that requires basic auth (PREFECT_SERVER_API_AUTH_STRING),
the `daily` deployment deployed from the repository's prefect.yaml, a process worker.

Prefect runs from the main project's virtualenv (Prefect and Airflow cannot share one), as
subprocesses of this test session, each with its own PREFECT_HOME under a temporary folder and
each stopped by its PID at the end.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

# Before anything imports airflow: the in-process tests get an Airflow home of their own,
# never ~/airflow (ci.sh sets one too; a bare `pytest` run gets this one).
if "AIRFLOW_HOME" not in os.environ:
    import tempfile

    os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="airflow-bridge-home-")
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")

BRIDGE_DIR = Path(__file__).resolve().parents[1]
REPO_DIR = BRIDGE_DIR.parent
DAGS_DIR = BRIDGE_DIR / "dags"
MAIN_VENV = Path(os.environ.get("REDDIT_PIPELINE_MAIN_VENV", REPO_DIR / ".venv"))
MAIN_BIN = MAIN_VENV / "bin"
FLOW_NAME = "reddit-pipeline"
# The example DAG's default deployment, as prefect.yaml defines it.
DEPLOYMENT_NAME = "daily"
WORK_POOL = "airflow-test-pool"
# The server refuses any request without it; the bridge sends it from the connection's extra.
AUTH_STRING = "airflow-bridge:" + secrets.token_urlsafe(12)
# This machine is small and shared: a server start takes ~10 s when idle, much more when busy.
START_TIMEOUT = float(os.environ.get("PREFECT_TEST_START_TIMEOUT", "240"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class PrefectServer:
    api_url: str
    env: dict[str, str]
    home: Path

    def client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.api_url, timeout=60, auth=httpx.BasicAuth(*AUTH_STRING.split(":", 1))
        )

    def run_prefect(self, *args: str, timeout: float = 300) -> str:
        """A `prefect` CLI command from the main venv, against this server; fails loudly."""
        done = subprocess.run(
            [str(MAIN_BIN / "prefect"), *args],
            cwd=REPO_DIR,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert done.returncode == 0, f"prefect {args} failed:\n{done.stdout}\n{done.stderr}"
        return done.stdout


@dataclass
class Deployment:
    server: PrefectServer
    id: str
    name: str = f"{FLOW_NAME}/{DEPLOYMENT_NAME}"

    def count_runs(self) -> int:
        with self.server.client() as client:
            response = client.post(
                "/flow_runs/count",
                json={"flow_runs": {"deployment_id": {"any_": [self.id]}}},
            )
        response.raise_for_status()
        return response.json()


def start_process(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """In its own session, so stopping it (by its PID's group) also stops what it spawned:
    the server's uvicorn, the worker's flow-run processes."""
    with log.open("ab") as out:
        return subprocess.Popen(
            args,
            cwd=REPO_DIR,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop_process(proc: subprocess.Popen, grace: float = 30) -> None:
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)


def wait_healthy(api_url: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"prefect server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{api_url}/health", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    pytest.fail(f"prefect server not healthy after {START_TIMEOUT}s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    if not (MAIN_BIN / "prefect").exists():
        pytest.fail(f"no Prefect in the main venv ({MAIN_BIN}): run `make` at the repo root first")
    home = tmp_path_factory.mktemp("prefect-home")
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "AIRFLOW"))},
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": api_url,
        # The server requires it (PREFECT_SERVER_...); its clients (CLI, worker, flow runs) send it.
        "PREFECT_SERVER_API_AUTH_STRING": AUTH_STRING,
        "PREFECT_API_AUTH_STRING": AUTH_STRING,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_SERVER_UI_ENABLED": "false",
        "PREFECT_LOGGING_LEVEL": "INFO",
        "VIRTUAL_ENV": str(MAIN_VENV),
        "PATH": f"{MAIN_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    log = home / "server.log"
    server_env = {k: v for k, v in env.items() if k != "PREFECT_API_URL"}
    proc = start_process(
        [str(MAIN_BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        server_env,
        log,
    )
    try:
        wait_healthy(api_url, proc, log)
        yield PrefectServer(api_url, env, home)
    finally:
        stop_process(proc)


@pytest.fixture(scope="session")
def deployment(
    prefect_server: PrefectServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    """prefect.yaml's `daily` deployment of the real flow, deployed as production deploys it
    (`prefect --no-prompt deploy`) to a process pool, with a worker polling that pool. Its
    runs may write only under REDDIT_PIPELINE_ALLOWED_ROOTS (prefect.yaml: the project's
    .local and data); the tests' lakes and warehouses live in pytest's temporary folder."""
    prefect_server.run_prefect("work-pool", "create", WORK_POOL, "--type", "process")
    roots = {"REDDIT_PIPELINE_ALLOWED_ROOTS": str(tmp_path_factory.getbasetemp())}
    done = subprocess.run(
        [
            str(MAIN_BIN / "prefect"),
            "--no-prompt",
            "deploy",
            "--name",
            DEPLOYMENT_NAME,
            "--job-variable",
            json.dumps({"env": roots}),
        ],
        cwd=REPO_DIR,
        env={
            **prefect_server.env,
            "REDDIT_PIPELINE_WORK_POOL": WORK_POOL,
            "REDDIT_PIPELINE_PROJECT_DIR": str(REPO_DIR),
        },
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"deploy failed:\n{done.stdout}\n{done.stderr}"
    with prefect_server.client() as client:
        found = client.get(f"/deployments/name/{FLOW_NAME}/{DEPLOYMENT_NAME}")
    found.raise_for_status()
    worker = start_process(
        [str(MAIN_BIN / "prefect"), "worker", "start", "--pool", WORK_POOL, "--limit", "2"],
        {**prefect_server.env, "PREFECT_WORKER_QUERY_SECONDS": "2"},
        prefect_server.home / "worker.log",
    )
    try:
        yield Deployment(prefect_server, str(found.json()["id"]))
    finally:
        stop_process(worker)


def connection_json(api_url: str, auth_string: str | None = AUTH_STRING) -> str:
    """The `prefect_default` connection as AIRFLOW_CONN_PREFECT_DEFAULT holds it."""
    extra = {"auth_string": auth_string} if auth_string else {}
    return json.dumps({"conn_type": "prefect", "host": api_url, "extra": extra})


@pytest.fixture(scope="session")
def airflow_env(
    tmp_path_factory: pytest.TempPathFactory, prefect_server: PrefectServer
) -> dict[str, str]:
    """An Airflow home in a temporary folder, migrated: SQLite, the example DAG folder, no
    examples, the Prefect connection pointing at the test server, short waits."""
    home = tmp_path_factory.mktemp("airflow-home")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PREFECT_"))}
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_DIR),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW_CONN_PREFECT_DEFAULT": connection_json(prefect_server.api_url),
            "REDDIT_PIPELINE_DAG_POLL_INTERVAL": "2",
            "REDDIT_PIPELINE_DAG_RETRIES": "1",
            "REDDIT_PIPELINE_DAG_RETRY_DELAY": "1",
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        }
    )
    done = subprocess.run(
        [str(Path(sys.executable).parent / "airflow"), "db", "migrate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, f"airflow db migrate failed:\n{done.stdout}\n{done.stderr}"
    return env


@pytest.fixture
def prefect_connection(monkeypatch: pytest.MonkeyPatch, prefect_server: PrefectServer) -> None:
    """The connection as Airflow reads it from the environment, for in-process hook tests."""
    monkeypatch.setenv("AIRFLOW_CONN_PREFECT_DEFAULT", connection_json(prefect_server.api_url))
