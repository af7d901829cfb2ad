"""Every `prefect deployment run` command of README.md and docs/*.md, run as written.

The server is set up as the README says (`make deploy-local`: the bootstrap, which deploys
prefect.yaml and prefect.local.yaml on the process pool, schedules off) from a copy of this
checkout, so the examples' default paths (`.local/...`) land in the copy. The API deployments
read a fake Reddit (tests/fake_reddit.py) through the `reddit-credentials` block the bootstrap
made from REDDIT_* variables; the one change made to them is their `reddit_base_url`, the edge of
the network. The worker has no REDDIT_* variables, so an API run that completes used the block.

A command shown with `$ ` and the answer under it must give that answer; a command holding a
`<placeholder>` (a block of the reader's) is created on the server, checked against the flow's
parameter model and deleted; every other command must end in a Completed run.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fake_reddit import USER_AGENT, FakeReddit
from helpers import PREFECT, PROJECT_DIR, prefect_server

pytestmark = pytest.mark.e2e

DOCS = [PROJECT_DIR / "README.md", *sorted((PROJECT_DIR / "docs").glob("*.md"))]
COMMAND = "prefect deployment run "
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.M | re.S)
INLINE = re.compile(r"`(prefect deployment run [^`]+)`")
# What the bootstrap puts into the `reddit_subreddits` variable, so an example's override of the
# subreddits shows in what the fake Reddit was asked.
DEPLOYED_SUBREDDITS = ["golang"]
API_DEPLOYMENTS = ("reddit-pipeline/incremental", "reddit-pipeline/daily-refresh")


@dataclass(frozen=True)
class Example:
    where: str  # file:line
    args: tuple[str, ...]  # shlex words, starting with "prefect"
    expected_output: str | None  # the answer printed under a `$ ` command


def _complete(text: str) -> list[str] | None:
    try:
        return shlex.split(text.replace("\\\n", " "), comments=True)
    except ValueError:  # a quote still open: the command goes on on the next line
        return None


def _fenced(path: Path, text: str) -> Iterator[Example]:
    for block in FENCE.finditer(text):
        first_line = text.count("\n", 0, block.start(1)) + 1
        lines = block.group(1).splitlines()
        i = 0
        while i < len(lines):
            line = lines[i].strip()
            prompt = line.startswith("$ ")
            if not line.removeprefix("$ ").startswith(COMMAND):
                i += 1
                continue
            start, command = i, line.removeprefix("$ ")
            while (args := _complete(command)) is None or command.endswith("\\"):
                i += 1
                command += "\n" + lines[i]
            i += 1
            expected = None
            if prompt:
                answer = []
                while i < len(lines) and not lines[i].startswith("$ "):
                    answer.append(lines[i])
                    i += 1
                expected = " ".join(" ".join(answer).split())
            yield Example(
                f"{path.relative_to(PROJECT_DIR)}:{first_line + start}", tuple(args), expected
            )


def _inline(path: Path, text: str) -> Iterator[Example]:
    outside = FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    for span in INLINE.finditer(outside):
        line = outside.count("\n", 0, span.start()) + 1
        args = shlex.split(" ".join(span.group(1).split()))
        yield Example(f"{path.relative_to(PROJECT_DIR)}:{line}", tuple(args), None)


def examples() -> list[Example]:
    """Each distinct command once, where it first appears."""
    found: dict[tuple[str, ...], Example] = {}
    for path in DOCS:
        text = path.read_text()
        for example in [*_fenced(path, text), *_inline(path, text)]:
            found.setdefault(example.args, example)
    return list(found.values())


EXAMPLES = examples()


def test_the_docs_hold_the_deployment_examples_this_module_runs() -> None:
    names = {e.args[3] for e in EXAMPLES}
    assert {"reddit-pipeline/local", "reddit-pipeline/incremental"} <= names
    assert {"reddit-backfill/backfill", "reddit-rebuild/rebuild"} <= names
    assert any(e.where.startswith("README.md") for e in EXAMPLES)
    assert any(e.expected_output for e in EXAMPLES)


@dataclass
class Site:
    env: dict[str, str]
    worker_env: dict[str, str]
    project: Path
    reddit: FakeReddit


def _copy_checkout(target: Path) -> None:
    """This checkout's files (tracked and new, not ignored) as they are on disk."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],
        cwd=PROJECT_DIR,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, (n.decode() for n in listed)):
        source = PROJECT_DIR / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            (target / name).write_bytes(source.read_bytes())


def _api(env: dict[str, str], method: str, path: str, **kwargs: Any) -> Any:
    response = httpx.request(method, f"{env['PREFECT_API_URL']}{path}", timeout=30, **kwargs)
    response.raise_for_status()
    return response.json() if response.content else None


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    project = tmp_path_factory.mktemp("checkout")
    _copy_checkout(project)
    now = time.time()
    with FakeReddit(limit=500, window=2.0) as reddit:
        for sub in ["python", "dataengineering", "rust", *DEPLOYED_SUBREDDITS]:
            posts = reddit.add_posts(sub, 30, now - 3600, step=60)
            reddit.add_comments(sub, posts[0], 20, now - 3000, step=30)
        with prefect_server(tmp_path_factory.mktemp("prefect-home")) as env:
            env = {**env, "COLUMNS": "400"}
            clean = {k: v for k, v in env.items() if not k.startswith("REDDIT_")}
            bootstrap = subprocess.run(
                [sys.executable, "-m", "flows.bootstrap"],
                cwd=project,
                env={
                    **clean,
                    "REDDIT_CLIENT_ID": reddit.client_id,
                    "REDDIT_CLIENT_SECRET": reddit.client_secret,
                    "REDDIT_USER_AGENT": USER_AGENT,
                    "REDDIT_PIPELINE_SUBREDDITS": ",".join(DEPLOYED_SUBREDDITS),
                },
                capture_output=True,
                text=True,
                timeout=900,
            )
            assert bootstrap.returncode == 0, bootstrap.stdout[-3000:] + bootstrap.stderr[-3000:]
            for name in API_DEPLOYMENTS:
                deployment = _api(clean, "GET", f"/deployments/name/{name}")
                parameters = deployment["parameters"]
                parameters["config"]["reddit_base_url"] = reddit.url
                _api(
                    clean,
                    "PATCH",
                    f"/deployments/{deployment['id']}",
                    json={"parameters": parameters},
                )
            yield Site(clean, clean, project, reddit)


def _flow_runs(env: dict[str, str], **filters: Any) -> list[dict]:
    return _api(env, "POST", "/flow_runs/filter", json={"flow_runs": filters} if filters else {})


def _top_level_runs_since(env: dict[str, str], known: set[str]) -> list[dict]:
    return [
        r
        for r in _flow_runs(env)
        if r["id"] not in known and r["deployment_id"] and not r["parent_task_run_id"]
    ]


def _stop(proc: subprocess.Popen | None) -> None:
    if proc is not None and proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def run_example(
    args: tuple[str, ...], site: Site, with_worker: bool = True
) -> tuple[subprocess.CompletedProcess, dict | None, str]:
    """The command; once the run it creates is on the server, a run-once worker on the
    bootstrap's process pool, in the copy; then the run as the server has it at the end."""
    known = {r["id"] for r in _flow_runs(site.env)}
    command = subprocess.Popen(
        [*PREFECT, *args[1:]],
        cwd=site.project,
        env=site.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    worker = None
    try:
        deadline = time.monotonic() + 120
        while not (created := _top_level_runs_since(site.env, known)):
            if command.poll() is not None and not _top_level_runs_since(site.env, known):
                out, err = command.communicate()
                return (
                    subprocess.CompletedProcess(command.args, command.returncode, out, err),
                    None,
                    "",
                )
            assert time.monotonic() < deadline, "no flow run within 120 s"
            time.sleep(0.5)
        if not with_worker:
            out, err = command.communicate(timeout=120)
            return (
                subprocess.CompletedProcess(command.args, command.returncode, out, err),
                created[0],
                "",
            )
        worker = subprocess.Popen(
            [*PREFECT, "worker", "start", "--pool", "reddit-process", "--run-once"],
            cwd=site.project,
            env=site.worker_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        out, err = command.communicate(timeout=900)
        worker_out, _ = worker.communicate(timeout=900)
    finally:
        _stop(command)
        _stop(worker)
    flow_run = _api(site.env, "GET", f"/flow_runs/{created[0]['id']}")
    deadline = time.monotonic() + 120
    while flow_run["state_type"] not in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
        assert time.monotonic() < deadline, flow_run["state"]
        time.sleep(1)
        flow_run = _api(site.env, "GET", f"/flow_runs/{created[0]['id']}")
    return (
        subprocess.CompletedProcess(command.args, command.returncode, out, err),
        flow_run,
        worker_out,
    )


def _run_parameter(args: tuple[str, ...], name: str) -> Any:
    """The value the command gives parameter `name` (--param name=... or --params {...})."""
    for flag, value in itertools.pairwise(args):
        if flag in ("--param", "-p") and value.startswith(f"{name}="):
            return json.loads(value.split("=", 1)[1])
        if flag == "--params" and name in json.loads(value):
            return json.loads(value)[name]
    return None


def _asked_subreddits(reddit: FakeReddit) -> set[str]:
    return {p.split("/")[2] for p in reddit.stats.paths if p.startswith("/r/")}


def _flow_of(deployment: str, site: Site) -> Any:
    from prefect.flows import load_flow_from_entrypoint

    spec = _api(site.env, "GET", f"/deployments/name/{deployment}")
    return load_flow_from_entrypoint(str(site.project / spec["entrypoint"]))


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.where for e in EXAMPLES])
def test_a_deployment_example_of_the_docs_runs_as_written(example: Example, site: Site) -> None:
    deployment = example.args[3]
    if example.expected_output is not None:
        result, flow_run, _ = run_example(example.args, site, with_worker=False)
        assert flow_run is None and result.returncode != 0, result
        output = " ".join((result.stdout + result.stderr).split())
        assert example.expected_output in output, output
        return
    if any(re.search(r"<[a-z_ -]+>", arg) for arg in example.args):
        # A name the reader fills in: the server must accept the rest as it stands, and the
        # flow's own parameter model the merged parameters; the run itself is deleted.
        result, flow_run, _ = run_example(example.args, site, with_worker=False)
        assert result.returncode == 0 and flow_run is not None, result.stdout + result.stderr
        _api(site.env, "DELETE", f"/flow_runs/{flow_run['id']}")
        _flow_of(deployment, site).validate_parameters(flow_run["parameters"])
        return
    # Each example as on a fresh checkout: runs over different subreddits sharing one lake is
    # issue 12's (its first item), not what these examples are about.
    shutil.rmtree(site.project / ".local", ignore_errors=True)
    site.reddit.stats.paths.clear()
    result, flow_run, worker_out = run_example(example.args, site)
    assert flow_run is not None, result.stdout + result.stderr
    assert flow_run["state_type"] == "COMPLETED", (
        flow_run["state"],
        result.stdout[-2000:],
        worker_out[-6000:],
    )
    if "--watch" in example.args:
        assert result.returncode == 0, result.stdout[-2000:]
    if deployment in API_DEPLOYMENTS:
        deployed = _api(site.env, "GET", f"/deployments/name/{deployment}")["parameters"]["config"]
        config = flow_run["parameters"]["config"]
        # The deployment's credentials block, rate limit and refresh, whatever the run changed.
        for field in ("reddit_credentials_block", "reddit_rate_limit", "refresh_max_age"):
            assert config[field] == deployed[field], field
        assert config["reddit_credentials_block"] == "reddit-credentials"
        assert config["reddit_rate_limit"] == "reddit-api"
        overrides = _run_parameter(example.args, "overrides") or {}
        assert flow_run["parameters"].get("overrides", {}) == overrides
        assert _asked_subreddits(site.reddit) == set(
            overrides.get("subreddits", DEPLOYED_SUBREDDITS)
        )


def _failure_message(flow_run: dict) -> str:
    return " ".join((flow_run["state"].get("message") or "").split())


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"overlap": "P8D"}, "less than or equal to 7 days"),
        ({"lake_dir": "/tmp/reddit-elsewhere"}, "is outside the folders this worker allows"),
        ({"warehouse_path": "../../warehouse.duckdb"}, "is outside the folders this worker allows"),
    ],
)
def test_a_production_run_out_of_bounds_fails_before_any_task_naming_the_field(
    site: Site, overrides: dict, message: str
) -> None:
    result, flow_run, worker_out = run_example(
        (
            "prefect",
            "deployment",
            "run",
            "reddit-pipeline/incremental",
            "--param",
            f"overrides={json.dumps(overrides)}",
            "--watch",
        ),
        site,
    )
    assert flow_run is not None and flow_run["state_type"] == "FAILED", (flow_run, worker_out)
    assert result.returncode == 1
    failure = _failure_message(flow_run)
    assert next(iter(overrides)) in failure and message in failure, failure
    tasks = _api(
        site.env,
        "POST",
        "/task_runs/filter",
        json={"flow_runs": {"id": {"any_": [flow_run["id"]]}}},
    )
    assert tasks == []
    assert not Path("/tmp/reddit-elsewhere").exists()
