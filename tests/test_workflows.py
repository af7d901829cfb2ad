"""The GitHub workflows parse, name only make targets the Makefile has and files the repository
has, and wire what the tests and `prefect deploy` read (TEST_POSTGRES_DSN, the API secrets)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / ".github" / "workflows"


def _load(name: str) -> dict[str, Any]:
    return yaml.safe_load((WORKFLOWS / name).read_text())


def _triggers(workflow: dict[str, Any]) -> Any:
    # YAML 1.1 reads the bare key `on` as the boolean True.
    return workflow.get("on", workflow.get(True))


def make_targets(makefile: Path = ROOT / "Makefile") -> set[str]:
    """Rule targets (`name: deps`), not variable assignments (`X := y`)."""
    targets = set()
    for line in makefile.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_./$()-]+(?:\s+[A-Za-z0-9_./-]+)*)\s*:(?![=])", line)
        if match and not line.startswith("\t"):
            targets.update(match.group(1).split())
    return targets


def _steps(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    return [step for job in workflow["jobs"].values() for step in job["steps"]]


def _make_calls(workflow: dict[str, Any]) -> list[str]:
    targets = []
    for step in _steps(workflow):
        for command in str(step.get("run", "")).splitlines():
            words = shlex.split(command)
            if words[:1] == ["make"]:
                targets += [w for w in words[1:] if "=" not in w and not w.startswith("-")]
    return targets


@pytest.mark.parametrize("name", ["ci.yml", "deploy.yml"])
def test_the_workflow_parses_and_names_only_existing_targets_and_files(name: str) -> None:
    workflow = _load(name)
    targets = make_targets()

    assert workflow["jobs"]
    assert set(_make_calls(workflow)) <= targets
    for step in _steps(workflow):
        paths = str(step.get("with", {}).get("cache-dependency-path", "")).split()
        for path in paths:
            assert (ROOT / path).is_file(), f"{name} names {path}, which is not in the repo"


def test_ci_runs_lint_and_tests_on_every_push_and_pr_with_postgres() -> None:
    workflow = _load("ci.yml")
    job = workflow["jobs"]["test"]

    assert set(_triggers(workflow)) == {"push", "pull_request"}
    # Once: `make test` lints first, so a separate lint step would run the linter twice.
    assert _make_calls(workflow) == ["test"]
    assert re.search(r"^test:.*\blint\b", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert job["services"]["postgres"]["image"] == "postgres:15"
    assert "5432:5432" in job["services"]["postgres"]["ports"]
    # The tests' PostgreSQL comes from TEST_POSTGRES_DSN (tests/helpers.py, used by conftest).
    helpers = (ROOT / "tests" / "helpers.py").read_text()
    assert "TEST_POSTGRES_DSN" in helpers
    assert job["env"]["TEST_POSTGRES_DSN"] == (
        "postgresql://postgres:postgres@localhost:5432/postgres"
    )
    password = job["services"]["postgres"]["env"]["POSTGRES_PASSWORD"]
    assert f"postgres:{password}@" in job["env"]["TEST_POSTGRES_DSN"]
    # The tests' own roles have no password: the server must trust TCP connections, as the
    # local one does (the image's default with POSTGRES_PASSWORD is scram-sha-256).
    assert job["services"]["postgres"]["env"]["POSTGRES_HOST_AUTH_METHOD"] == "trust"


def test_deploy_runs_prefect_deploy_on_version_tags_with_secrets() -> None:
    workflow = _load("deploy.yml")
    job = workflow["jobs"]["deploy"]
    runs = [str(step.get("run", "")) for step in _steps(workflow)]

    assert _triggers(workflow) == {"push": {"tags": ["v*"]}}
    assert job["env"]["PREFECT_API_URL"] == "${{ secrets.PREFECT_API_URL }}"
    assert job["env"]["PREFECT_API_KEY"] == "${{ secrets.PREFECT_API_KEY }}"
    # The image and the deploy install the versions the suite passed on.
    pinned = "pip install --constraint constraints.txt -e ."
    install = next(i for i, r in enumerate(runs) if pinned in r)
    deploy = next(i for i, r in enumerate(runs) if "prefect --no-prompt deploy --all" in r)
    assert install < deploy
    assert (ROOT / "prefect.yaml").is_file()
    assert (ROOT / "pyproject.toml").is_file()


def test_make_targets_reads_rules_not_assignments(tmp_path: Path) -> None:
    makefile = tmp_path / "Makefile"
    makefile.write_text("X := 1\nY ?= 2\n.PHONY: a\na: b\n\techo a: b\nb c:\n")

    assert make_targets(makefile) == {".PHONY", "a", "b", "c"}
