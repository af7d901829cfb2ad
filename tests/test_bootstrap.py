"""The bootstrap: pure pieces tested directly, and two runs on a real server that leave the
same blocks, pool, limit, variables, automations and deployments."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from helpers import prefect_server, run

from flows.backfill import split_parts
from flows.bootstrap import (
    blocks_from_env,
    deployment_names,
    main,
    pool_definition,
    require_image,
    scheduled_deployments,
    with_defaults,
)
from tasks.config import PipelineConfig


def test_pool_definitions_read_images_from_the_environment_and_drop_unset_values(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("REDDIT_PIPELINE_ECS_CLUSTER", raising=False)
    monkeypatch.setenv("REDDIT_PIPELINE_IMAGE", "registry.example/reddit:abc123")
    ecs = pool_definition("ecs")
    assert ecs["type"] == "ecs"
    assert ecs["job_variables"]["image"] == "registry.example/reddit:abc123"
    assert (ecs["job_variables"]["cpu"], ecs["job_variables"]["memory"]) == (1024, 4096)
    assert "cluster" not in ecs["job_variables"]
    monkeypatch.delenv("REDDIT_PIPELINE_IMAGE")
    assert "image" not in pool_definition("docker")["job_variables"]


def test_job_variables_become_template_defaults_and_unknown_ones_are_refused() -> None:
    template = {"variables": {"properties": {"env": {"type": "object"}}}}
    assert with_defaults(template, {"env": {"A": "1"}})["variables"]["properties"]["env"][
        "default"
    ] == {"A": "1"}
    with pytest.raises(ValueError, match="cpu"):
        with_defaults(template, {"cpu": 1})


def test_blocks_come_only_from_variables_that_are_set() -> None:
    assert blocks_from_env({}) == {}
    found = blocks_from_env(
        {
            "REDDIT_CLIENT_ID": "id",
            "REDDIT_CLIENT_SECRET": "secret",
            "REDDIT_USER_AGENT": "linux:redditpipe:0.1.0 (by /u/jane_doe)",
            "AWS_ACCESS_KEY_ID": "AKIA",
            "AWS_SECRET_ACCESS_KEY": "s",
            "AWS_REGION": "eu-west-1",
            "REDDIT_PIPELINE_LAKE_BUCKET": "lake",
        }
    )
    assert sorted(found) == ["reddit-aws", "reddit-credentials", "reddit-lake"]
    assert found["reddit-lake"].bucket_name == "lake"


def test_only_the_process_pool_gets_the_local_deployment() -> None:
    assert "local" in deployment_names("process")
    assert "local" not in deployment_names("ecs")
    assert {"incremental", "daily"} <= set(deployment_names("ecs"))


def test_scheduled_deployments_are_named_by_their_flow_and_include_no_unscheduled_one() -> None:
    scheduled = scheduled_deployments()
    assert "reddit-pipeline/incremental" in scheduled
    assert "reddit-maintenance/maintenance" in scheduled
    assert not {"reddit-pipeline/daily", "reddit-backfill/backfill"} & set(scheduled)


def test_an_image_pool_without_an_image_is_refused_with_what_to_set(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("REDDIT_PIPELINE_IMAGE", raising=False)
    for pool_type in ("docker", "ecs"):
        assert main(["--pool-type", pool_type, "--no-deploy"]) == 1
        error = capsys.readouterr().err
        assert error.startswith(f"error: --pool-type {pool_type} needs the project's image")
        assert "REDDIT_PIPELINE_IMAGE" in error and error.count("\n") == 1
    require_image("process", {})
    require_image("ecs", {"image": "registry.example/reddit:abc"})
    assert "rebuild" in deployment_names("ecs")


def test_backfill_splits_a_window_into_utc_days_and_dumps_into_files(tmp_path: Path) -> None:
    config = PipelineConfig(
        source="sample",
        since=datetime(2024, 3, 1, 12, tzinfo=UTC),
        until=datetime(2024, 3, 3, 6, tzinfo=UTC),
    )
    parts = split_parts(config)
    assert [p.label for p in parts] == ["2024-03-01", "2024-03-02", "2024-03-03"]
    assert parts[0].config.since == config.since
    assert parts[1].config.since == datetime(2024, 3, 2, tzinfo=UTC)
    assert parts[-1].config.until == config.until
    assert all(p.config.full_refresh for p in parts)
    dumps = [tmp_path / "RS_2024-01.zst", tmp_path / "RC_2024-01.zst"]
    by_file = split_parts(PipelineConfig(source="dump", dump_paths=dumps))
    assert [p.config.dump_paths for p in by_file] == [[dumps[0]], [dumps[1]]]
    with pytest.raises(ValueError, match="since and until"):
        split_parts(PipelineConfig(source="sample"))


INVENTORY = """
import asyncio, json
from prefect.client.orchestration import get_client
async def main():
    async with get_client() as client:
        blocks = await client.read_block_documents()
        pools = await client.read_work_pools()
        limits = await client.read_global_concurrency_limits(limit=100, offset=0)
        automations = await client.read_automations()
        variables = await client.read_variables()
        deployments = await client.read_deployments()
        flows = {f.id: f.name for f in await client.read_flows()}
        print(json.dumps({
            "blocks": sorted((b.block_type.slug, b.name) for b in blocks if not b.is_anonymous),
            "pools": sorted((p.name, p.type, json.dumps(p.base_job_template, sort_keys=True))
                            for p in pools),
            "limits": sorted((c.name, c.limit, c.slot_decay_per_second) for c in limits),
            "automations": sorted(a.name for a in automations),
            "variables": sorted((v.name, json.dumps(v.value)) for v in variables),
            "deployments": sorted(str(d.id) for d in deployments),
            "active_schedules": sorted(
                f"{flows[d.flow_id]}/{d.name}" for d in deployments for s in d.schedules
                if s.active
            ),
        }))
asyncio.run(main())
"""


@pytest.mark.e2e
def test_bootstrap_twice_leaves_the_same_objects(tmp_path: Path) -> None:
    with prefect_server(tmp_path / "prefect-home") as env:
        env = {
            **env,
            "REDDIT_CLIENT_ID": "id",
            "REDDIT_CLIENT_SECRET": "secret",
            "REDDIT_USER_AGENT": "linux:redditpipe:0.1.0 (by /u/jane_doe)",
            "REDDIT_PIPELINE_ALERT_WEBHOOK_URL": "http://127.0.0.1:9/alerts",
        }
        inventories = []
        for _ in range(2):
            result = run([sys.executable, "-m", "flows.bootstrap"], env)
            assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
            listed = run([sys.executable, "-c", INVENTORY], env)
            assert listed.returncode == 0, listed.stderr
            inventories.append(json.loads(listed.stdout.strip().splitlines()[-1]))
    first, second = inventories
    assert first == second
    assert ["reddit-credentials", "reddit-credentials"] in first["blocks"]
    assert [p[:2] for p in first["pools"]] == [["reddit-process", "process"]]
    # Besides one limit per deployment (deployment concurrency), the Reddit API's.
    assert [c for c in first["limits"] if not c[0].startswith("deployment:")] == [
        ["reddit-api", 10, 1.6]
    ]
    # failure, data contract, SLA and slowdown alerts; every deployment of prefect.yaml and
    # prefect.local.yaml, their production schedules switched off on this process pool
    assert len(first["automations"]) == 4
    assert len(first["deployments"]) == len(deployment_names("process"))
    assert first["active_schedules"] == []


@pytest.mark.e2e
def test_bootstrap_keeps_schedules_on_when_asked(tmp_path: Path) -> None:
    with prefect_server(tmp_path / "prefect-home") as env:
        result = run([sys.executable, "-m", "flows.bootstrap", "--activate-schedules"], env)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        listed = run([sys.executable, "-c", INVENTORY], env)
        assert listed.returncode == 0, listed.stderr
    inventory = json.loads(listed.stdout.strip().splitlines()[-1])
    assert inventory["active_schedules"] == sorted(scheduled_deployments())


@pytest.mark.e2e
def test_pool_job_variables_become_defaults_of_the_real_docker_and_ecs_templates(
    prefect_api: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The job templates Prefect's docker worker and prefect-aws's ECS worker ship, not a
    stand-in: every job variable of prefect.yaml is a key of them."""
    import asyncio

    from prefect.workers.utilities import get_default_base_job_template_for_infrastructure_type

    monkeypatch.setenv("REDDIT_PIPELINE_IMAGE", "registry.example/reddit:abc123")
    monkeypatch.setenv("REDDIT_PIPELINE_ECS_CLUSTER", "reddit")
    for pool_type in ("process", "docker", "ecs"):
        wanted = pool_definition(pool_type)["job_variables"]
        template = asyncio.run(get_default_base_job_template_for_infrastructure_type(pool_type))
        properties = with_defaults(template, wanted)["variables"]["properties"]
        assert {k: properties[k]["default"] for k in wanted} == wanted
    assert wanted["image"] == "registry.example/reddit:abc123"
