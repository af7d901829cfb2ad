"""prefect.yaml end to end on a real Prefect server: the bootstrap creates the pool, `prefect
--no-prompt deploy --all` deploys prefect.yaml as production does and prefect.local.yaml the
`local` deployment, a process worker runs it with parameters, the warehouse holds the sample,
and the server refuses bad parameters before any run starts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import httpx
import pytest
import yaml
from helpers import PREFECT, PROJECT_DIR, prefect_server, run

# The pool the production deployments of prefect.yaml go to in these tests: a process pool no
# worker polls, so their schedules (on, as in production) never start a run here.
PRODUCTION_POOL = "reddit-production"


def deployments_in(path: Path) -> list[dict]:
    return yaml.safe_load(path.read_text())["deployments"]


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A server with the pools, deployed by the commands the deploy workflow and the bootstrap
    run: `prefect --no-prompt deploy --all`, then the local file on the process pool."""
    with prefect_server(tmp_path_factory.mktemp("prefect-home")) as env:
        env = {**env, "REDDIT_PIPELINE_SUBREDDITS": "python,rust"}
        for command in (
            [sys.executable, "-m", "flows.bootstrap", "--no-deploy"],
            [*PREFECT, "work-pool", "create", PRODUCTION_POOL, "--type", "process"],
        ):
            result = run(command, env)
            assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        deploy_env = {
            **env,
            "REDDIT_PIPELINE_WORK_POOL": PRODUCTION_POOL,
            "REDDIT_PIPELINE_PROJECT_DIR": str(PROJECT_DIR),
            "PWD": str(PROJECT_DIR),
        }
        for command in (
            [*PREFECT, "--no-prompt", "deploy", "--all"],
            [*PREFECT, "--no-prompt", "deploy", "--all", "--prefect-file", "prefect.local.yaml"],
        ):
            result = run(command, deploy_env)
            assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        yield env


def _scheduled_runs(name: str, env: dict[str, str]) -> list[dict]:
    flow_name, deployment_name = name.split("/")
    response = httpx.post(
        f"{env['PREFECT_API_URL']}/flow_runs/filter",
        json={
            "flows": {"name": {"any_": [flow_name]}},
            "deployments": {"name": {"any_": [deployment_name]}},
            "flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}}},
        },
        timeout=30,
    )
    response.raise_for_status()
    return response.json()


def _run_deployment(name: str, params: list[str], env: dict[str, str]):
    """`prefect deployment run --watch`, and once its run is Scheduled on the server,
    `prefect worker start --run-once`: a run-once worker polls once, so it must find the run
    there (started first, it could poll before the run exists and leave it waiting)."""
    watch = subprocess.Popen(
        [*PREFECT, "deployment", "run", name, *params, "--watch", "--watch-timeout", "540"],
        cwd=PROJECT_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    worker = None
    try:
        deadline = time.monotonic() + 120
        while not _scheduled_runs(name, env):
            assert watch.poll() is None, watch.communicate()
            assert time.monotonic() < deadline, "the flow run was not scheduled within 120 s"
            time.sleep(0.5)
        worker = subprocess.Popen(
            [*PREFECT, "worker", "start", "--pool", "reddit-process", "--run-once"],
            cwd=PROJECT_DIR,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        stdout, stderr = watch.communicate(timeout=600)
        watched = subprocess.CompletedProcess(watch.args, watch.returncode, stdout, stderr)
        worker_out, _ = worker.communicate(timeout=120)
    finally:
        for proc in (watch, worker):
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=30)
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
def test_deploy_all_makes_every_deployment_of_the_files_on_its_pool_with_limits_and_schedules(
    deployed: dict[str, str],
) -> None:
    code = """
import asyncio, json
from prefect.client.orchestration import get_client
async def main():
    async with get_client() as client:
        flows = {f.id: f.name for f in await client.read_flows()}
        out = {}
        for d in await client.read_deployments():
            out[d.name] = {
                "flow": flows[d.flow_id],
                "pool": d.work_pool_name,
                "enforce": d.enforce_parameter_schema,
                "limit": d.global_concurrency_limit.limit if d.global_concurrency_limit else None,
                "schedules": [s.active for s in d.schedules],
                "params": d.parameters,
                "pull": d.pull_steps,
            }
        print(json.dumps(out))
asyncio.run(main())
"""
    result = run([sys.executable, "-c", code], deployed)
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout.strip().splitlines()[-1])
    production = deployments_in(PROJECT_DIR / "prefect.yaml")
    local = deployments_in(PROJECT_DIR / "prefect.local.yaml")
    assert sorted(found) == sorted(d["name"] for d in production + local)
    assert [d["name"] for d in local] == ["local"]
    assert found["local"]["pool"] == "reddit-process"
    for spec in production:
        deployment = found[spec["name"]]
        assert deployment["pool"] == PRODUCTION_POOL, spec["name"]
        # Production schedules are on, exactly as the file has them.
        assert deployment["schedules"] == [s["active"] for s in spec.get("schedules", [])]
        pull = deployment["pull"][0]["prefect.deployments.steps.set_working_directory"]
        assert pull["directory"] == str(PROJECT_DIR)
    assert all(d["enforce"] and d["limit"] == 1 for d in found.values())
    assert found["incremental"]["schedules"] == [True]
    assert found["local"]["schedules"] == [] and found["daily"]["schedules"] == []
    assert found["daily"]["flow"] == "reddit-pipeline"  # the Airflow DAG's default deployment
    assert found["rebuild"]["schedules"] == []
    assert found["rebuild"]["params"]["config"]["pipeline"]["lake"] == "s3"
    # The Prefect variable made by the bootstrap became the subreddits parameter.
    assert found["incremental"]["params"]["config"]["subreddits"] == ["python", "rust"]
    # Both API deployments pace through the global limit the bootstrap made.
    for name in ("incremental", "daily-refresh"):
        assert found[name]["params"]["config"]["reddit_rate_limit"] == "reddit-api"


def test_every_deployed_flow_describes_every_parameter_for_the_ui() -> None:
    """The form the Prefect UI shows for a deployment is the flow's parameter schema: each
    field needs a description (Prefect takes them from the docstring's Args section)."""
    from prefect.flows import load_flow_from_entrypoint

    files = (PROJECT_DIR / "prefect.yaml", PROJECT_DIR / "prefect.local.yaml")
    entrypoints = {d["entrypoint"] for path in files for d in deployments_in(path)}
    undescribed = [
        (entrypoint, name)
        for entrypoint in sorted(entrypoints)
        for name, field in load_flow_from_entrypoint(str(PROJECT_DIR / entrypoint))
        .parameters.model_dump()["properties"]
        .items()
        if not field.get("description")
    ]
    assert undescribed == []


def test_prefect_yaml_holds_only_production_deployments_on_the_environments_pool() -> None:
    """`prefect deploy --all` (the deploy workflow) must not bind a deployment to a pool or a
    folder of the machine it runs on: that is prefect.local.yaml's `local`."""
    for spec in deployments_in(PROJECT_DIR / "prefect.yaml"):
        assert spec["work_pool"]["name"] == "{{ $REDDIT_PIPELINE_WORK_POOL }}", spec["name"]
        steps = spec["pull"]
        assert steps[-1]["prefect.deployments.steps.set_working_directory"]["directory"] in (
            "{{ $REDDIT_PIPELINE_PROJECT_DIR }}",
            "{{ clone.directory }}",
        ), spec["name"]


def _deployment_id(name: str, env: dict[str, str]) -> str:
    response = httpx.get(f"{env['PREFECT_API_URL']}/deployments/name/{name}", timeout=30)
    response.raise_for_status()
    return response.json()["id"]


@pytest.mark.e2e
@pytest.mark.parametrize("parameter", ["config", "overrides"])
def test_server_refuses_every_out_of_range_duration_and_size_of_a_deployment_run(
    deployed: dict[str, str], parameter: str
) -> None:
    """Through the endpoint `prefect deployment run` and the Airflow bridge call; a negative
    overlap (-P1D) used to be accepted and silently dropped rows."""
    from helpers import OUT_OF_RANGE

    deployment_id = _deployment_id("reddit-pipeline/incremental", deployed)
    answers = {}
    for field, value, in_schema in OUT_OF_RANGE:
        if not in_schema:
            continue
        response = httpx.post(
            f"{deployed['PREFECT_API_URL']}/deployments/{deployment_id}/create_flow_run",
            json={"parameters": {parameter: {field: value}}},
            timeout=30,
        )
        answers[(field, value)] = (response.status_code, response.json().get("detail", ""))
    refused = {key: detail for key, (status, detail) in answers.items() if status == 409}
    assert sorted(refused) == sorted(answers), answers
    for (field, _), detail in refused.items():
        assert f"Validation failed for field '{parameter}.{field}'" in detail, detail


@pytest.mark.e2e
def test_production_deployments_confine_run_paths_to_the_projects_folders(
    deployed: dict[str, str],
) -> None:
    from prefect.flows import load_flow_from_entrypoint

    for spec in deployments_in(PROJECT_DIR / "prefect.yaml"):
        flow = load_flow_from_entrypoint(str(PROJECT_DIR / spec["entrypoint"])).name
        response = httpx.get(
            f"{deployed['PREFECT_API_URL']}/deployments/name/{flow}/{spec['name']}", timeout=30
        )
        response.raise_for_status()
        env = response.json()["job_variables"]["env"]
        assert env == {"REDDIT_PIPELINE_ALLOWED_ROOTS": ".local:data"}, spec["name"]
