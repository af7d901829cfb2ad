"""prefect.yaml end to end on a real Prefect server: the bootstrap creates the pool and deploys,
a process worker runs the `local` deployment with parameters, the warehouse holds the sample,
and the server refuses bad parameters before any run starts."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import httpx
import pytest

PROJECT_DIR = Path(__file__).resolve().parents[1]
PREFECT = [sys.executable, "-m", "prefect"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def prefect_server(home: Path, timeout: float = 180) -> Iterator[dict[str, str]]:
    """`prefect server start` on a free port with its own PREFECT_HOME; yields the environment
    for child commands, and stops the server by its PID (its process group) afterwards."""
    port = _free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": api_url,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_CLI_PROMPT": "false",
    }
    home.mkdir(parents=True, exist_ok=True)
    log = (home / "server.log").open("w")
    server = subprocess.Popen(
        [*PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env={k: v for k, v in env.items() if k != "PREFECT_API_URL"},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + timeout
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"prefect server exited: {(home / 'server.log').read_text()}")
            try:
                if httpx.get(f"{api_url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"prefect server not healthy after {timeout}s")
            time.sleep(0.5)
        yield env
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


def run(args: list[str], env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        args, cwd=PROJECT_DIR, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A server on which the bootstrap created the process pool and every deployment."""
    with prefect_server(tmp_path_factory.mktemp("prefect-home")) as env:
        env = {**env, "REDDIT_PIPELINE_SUBREDDITS": "python,rust"}
        result = run([sys.executable, "-m", "flows.bootstrap"], env)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        yield env


def _run_deployment(name: str, params: list[str], env: dict[str, str]):
    """`prefect deployment run --watch` beside `prefect worker start --run-once`."""
    worker = subprocess.Popen(
        [*PREFECT, "worker", "start", "--pool", "reddit-process", "--run-once"],
        cwd=PROJECT_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        watched = run(
            [*PREFECT, "deployment", "run", name, *params, "--watch", "--watch-timeout", "540"],
            env,
        )
        worker_out, _ = worker.communicate(timeout=120)
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGTERM)
            worker.wait(timeout=30)
    return watched, worker_out


@pytest.mark.e2e
def test_local_deployment_runs_the_sample_into_the_warehouse_given_by_parameters(
    deployed: dict[str, str], tmp_path: Path
) -> None:
    config = json.dumps(
        {
            "source": "sample",
            "lake_dir": str(tmp_path / "lake"),
            "warehouse_path": str(tmp_path / "warehouse.duckdb"),
            "state_path": str(tmp_path / "state.duckdb"),
        }
    )
    watched, worker_out = _run_deployment(
        "reddit-pipeline/local", ["--param", f"config={config}"], deployed
    )
    assert watched.returncode == 0, watched.stdout[-3000:] + watched.stderr + worker_out[-5000:]
    assert "Completed" in watched.stdout
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True)
    try:
        posts = con.execute("select count(*) from posts").fetchone()
        comments = con.execute("select count(*) from comments").fetchone()
    finally:
        con.close()
    assert (posts, comments) == ((600,), (3000,))


@pytest.mark.e2e
def test_server_rejects_a_config_the_schema_forbids_before_any_run(
    deployed: dict[str, str],
) -> None:
    result = run(
        [
            *PREFECT,
            "deployment",
            "run",
            "reddit-pipeline/local",
            "--param",
            'config={"source": "ftp", "subreddits": ["python"]}',
        ],
        deployed,
    )
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "Validation failed" in output or "validation" in output.lower(), output
    assert "'ftp' is not one of" in output, output


@pytest.mark.e2e
def test_server_rejects_an_invalid_subreddit_name_before_any_run(
    deployed: dict[str, str],
) -> None:
    result = run(
        [
            *PREFECT,
            "deployment",
            "run",
            "reddit-pipeline/local",
            "--param",
            'config={"subreddits": ["bad name!"]}',
        ],
        deployed,
    )
    assert result.returncode != 0
    assert "bad name!" in result.stdout + result.stderr


@pytest.mark.e2e
def test_deployments_carry_schedules_concurrency_and_enforced_schemas(
    deployed: dict[str, str],
) -> None:
    code = """
import asyncio, json
from prefect.client.orchestration import get_client
async def main():
    async with get_client() as client:
        out = {}
        for name in ["reddit-pipeline/local", "reddit-pipeline/incremental",
                     "reddit-pipeline/daily-refresh", "reddit-backfill/backfill",
                     "reddit-maintenance/maintenance", "reddit-rebuild/rebuild"]:
            d = await client.read_deployment_by_name(name)
            out[name] = {
                "pool": d.work_pool_name,
                "enforce": d.enforce_parameter_schema,
                "limit": d.global_concurrency_limit.limit if d.global_concurrency_limit else None,
                "schedules": len(d.schedules),
                "params": d.parameters,
                "pull": d.pull_steps,
            }
        print(json.dumps(out))
asyncio.run(main())
"""
    result = run([sys.executable, "-c", code], deployed)
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert {d["pool"] for d in found.values()} == {"reddit-process"}
    assert all(d["enforce"] and d["limit"] == 1 for d in found.values())
    assert found["reddit-pipeline/incremental"]["schedules"] == 1
    assert found["reddit-pipeline/local"]["schedules"] == 0
    assert found["reddit-rebuild/rebuild"]["schedules"] == 0
    assert found["reddit-rebuild/rebuild"]["params"]["config"]["pipeline"]["lake"] == "s3"
    # The Prefect variable made by the bootstrap became the subreddits parameter.
    assert found["reddit-pipeline/incremental"]["params"]["config"]["subreddits"] == [
        "python",
        "rust",
    ]
    pull = found["reddit-pipeline/incremental"]["pull"][0]
    assert pull["prefect.deployments.steps.set_working_directory"]["directory"] == str(PROJECT_DIR)
