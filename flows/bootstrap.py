"""Set up a Prefect server or workspace for the pipeline, idempotently:

    python -m flows.bootstrap                     # process pool, schedules switched off
    python -m flows.bootstrap --activate-schedules  # ... with the production schedules on
    python -m flows.bootstrap --pool-type ecs     # the ECS pool (REDDIT_PIPELINE_IMAGE set)

In order: block types; blocks from the environment (RedditCredentials from REDDIT_*,
AwsCredentials and S3Bucket from AWS_* and REDDIT_PIPELINE_LAKE_BUCKET); the work pool, its job
defaults taken from prefect.yaml's `definitions.work_pools`; the Reddit API global concurrency
limit; the Prefect variables the deployments read; the alert automations (tasks.ops.alerts); and
the deployments (`prefect --no-prompt deploy --all`: prefect.yaml, and on the process pool
also prefect.local.yaml). Each step creates what is missing and updates what exists, by name,
so a second run leaves the same objects and never a duplicate.

On the process pool (a developer's machine) the schedules of prefect.yaml are switched off
after the deploy unless --activate-schedules is given: a checkout should not start pulling
from Reddit every 15 minutes, or backing up to S3, just because it was deployed to try.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from prefect.blocks.core import Block
from prefect.client.orchestration import PrefectClient, get_client
from prefect.client.schemas.actions import (
    GlobalConcurrencyLimitCreate,
    GlobalConcurrencyLimitUpdate,
    VariableCreate,
    WorkPoolCreate,
    WorkPoolUpdate,
)
from prefect.exceptions import ObjectNotFound
from prefect.utilities.templating import apply_values

from tasks import settings

PROJECT_DIR = Path(__file__).resolve().parents[1]
PREFECT_FILE = PROJECT_DIR / "prefect.yaml"
# Deployments for this checkout only (the bundled sample), deployed on the process pool.
LOCAL_PREFECT_FILE = PROJECT_DIR / "prefect.local.yaml"
# Pool types whose runs need the project's image: without one they would run the stock
# Prefect image, which has no project code.
IMAGE_POOL_TYPES = {"docker", "ecs"}

REDDIT_BLOCK = "reddit-credentials"
AWS_BLOCK = "reddit-aws"
LAKE_BLOCK = "reddit-lake"
# Reddit allows ~100 requests a minute per OAuth client (1000 per 600 s window). A slot decays
# every 1/1.6 s (96 a minute, a little under, for the requests of other tools on the same
# client); `limit` is the burst a cold limit admits. tasks.extract.reddit_api takes one slot
# a request.
REDDIT_API_LIMIT = "reddit-api"
REDDIT_API_BURST = 10
REDDIT_API_DECAY_PER_SECOND = 1.6
SUBREDDITS_VARIABLE = "reddit_subreddits"
DEFAULT_SUBREDDITS = ["python", "dataengineering"]


@dataclass
class Report:
    """What the bootstrap did, one line per object, printed at the end."""

    lines: list[str] = field(default_factory=list)

    def add(self, line: str) -> None:
        self.lines.append(line)
        print(line, flush=True)


def register_block_types() -> list[str]:
    """Block types of this project and of prefect-aws; registration is idempotent."""
    from prefect_aws import AwsCredentials, S3Bucket

    from blocks import warehouse
    from blocks.reddit import RedditCredentials

    types: list[type[Block]] = [
        RedditCredentials,
        warehouse.PostgresWarehouse,
        warehouse.RedshiftWarehouse,
        warehouse.AthenaEngine,
        AwsCredentials,
        S3Bucket,
    ]
    for block_type in types:
        block_type.register_type_and_schema()
    return [t.get_block_type_slug() for t in types]


def blocks_from_env(env: Mapping[str, str]) -> dict[str, Block]:
    """The blocks the environment has values for, by name; nothing is saved here."""
    found: dict[str, Block] = {}
    from tasks.extract import credentials_from_env

    auth = credentials_from_env(env)
    if auth is not None:
        from blocks.reddit import RedditCredentials

        found[REDDIT_BLOCK] = RedditCredentials(
            client_id=auth.client_id,
            client_secret=auth.client_secret,
            user_agent=auth.user_agent,
            username=auth.username,
            password=auth.password,
        )
    if env.get("AWS_ACCESS_KEY_ID") or env.get("AWS_PROFILE"):
        from prefect_aws import AwsCredentials, S3Bucket

        aws = AwsCredentials(
            aws_access_key_id=env.get("AWS_ACCESS_KEY_ID"),
            aws_secret_access_key=env.get("AWS_SECRET_ACCESS_KEY"),
            aws_session_token=env.get("AWS_SESSION_TOKEN"),
            profile_name=env.get("AWS_PROFILE"),
            region_name=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION"),
        )
        found[AWS_BLOCK] = aws
        if env.get("REDDIT_PIPELINE_LAKE_BUCKET"):
            found[LAKE_BLOCK] = S3Bucket(
                bucket_name=env["REDDIT_PIPELINE_LAKE_BUCKET"], credentials=aws
            )
    return found


def save_blocks(blocks: Mapping[str, Block]) -> None:
    """Save under a fixed name with overwrite: the same block document, updated in place."""
    for name, block in blocks.items():
        block.save(name, overwrite=True)


def pool_definition(pool_type: str, prefect_file: Path = PREFECT_FILE) -> dict[str, Any]:
    """prefect.yaml's `definitions.work_pools.<type>`, with `{{ $VAR }}` read from the
    environment and unset values dropped (an empty image would break every run)."""
    definitions = yaml.safe_load(prefect_file.read_text())["definitions"]["work_pools"]
    if pool_type not in definitions:
        raise ValueError(f"prefect.yaml defines no work pool of type {pool_type!r}")
    resolved = apply_values(definitions[pool_type], dict(os.environ), remove_notset=True)
    resolved["job_variables"] = _drop_empty(resolved.get("job_variables") or {})
    return resolved


def _drop_empty(values: dict[str, Any]) -> dict[str, Any]:
    return {
        k: _drop_empty(v) if isinstance(v, dict) else v
        for k, v in values.items()
        if v not in ("", None, {})
    }


def with_defaults(template: dict[str, Any], job_variables: Mapping[str, Any]) -> dict[str, Any]:
    """The base job template with these job variables as its defaults."""
    properties = template.get("variables", {}).get("properties", {})
    unknown = sorted(set(job_variables) - set(properties))
    if unknown:
        raise ValueError(f"job variables {unknown} are not in the pool type's job template")
    for key, value in job_variables.items():
        properties[key]["default"] = value
    return template


async def ensure_work_pool(client: PrefectClient, name: str, pool_type: str, job_vars: dict) -> str:
    """Create the pool, or update its job template defaults; a changed type is an error
    rather than a silent replacement (its workers would stop matching)."""
    from prefect.workers.utilities import get_default_base_job_template_for_infrastructure_type

    template = await get_default_base_job_template_for_infrastructure_type(pool_type)
    if template is None:
        raise ValueError(f"no job template for work pool type {pool_type!r}")
    template = with_defaults(template, job_vars)
    try:
        existing = await client.read_work_pool(name)
    except ObjectNotFound:
        await client.create_work_pool(
            WorkPoolCreate(name=name, type=pool_type, base_job_template=template)
        )
        return "created"
    if existing.type != pool_type:
        raise ValueError(
            f"work pool {name!r} exists with type {existing.type!r}, not {pool_type!r}; "
            "delete it or choose another --pool-name"
        )
    await client.update_work_pool(name, WorkPoolUpdate(base_job_template=template))
    return "updated"


async def ensure_reddit_api_limit(client: PrefectClient) -> str:
    """The global concurrency limit with slot decay that paces Reddit requests across
    workers sharing one OAuth client."""
    try:
        await client.read_global_concurrency_limit_by_name(REDDIT_API_LIMIT)
    except ObjectNotFound:
        await client.create_global_concurrency_limit(
            GlobalConcurrencyLimitCreate(
                name=REDDIT_API_LIMIT,
                limit=REDDIT_API_BURST,
                slot_decay_per_second=REDDIT_API_DECAY_PER_SECOND,
            )
        )
        return "created"
    await client.update_global_concurrency_limit(
        REDDIT_API_LIMIT,
        GlobalConcurrencyLimitUpdate(
            limit=REDDIT_API_BURST, slot_decay_per_second=REDDIT_API_DECAY_PER_SECOND, active=True
        ),
    )
    return "updated"


async def ensure_variables(client: PrefectClient, env: Mapping[str, str]) -> str:
    """`reddit_subreddits` for the API deployments: REDDIT_PIPELINE_SUBREDDITS (comma
    separated) overwrites it; otherwise an existing value, edited in the UI, is kept."""
    wanted = [s.strip() for s in env.get("REDDIT_PIPELINE_SUBREDDITS", "").split(",") if s.strip()]
    existing = await client.read_variable_by_name(SUBREDDITS_VARIABLE)
    if existing is not None and not wanted:
        return f"kept {existing.value}"
    value = wanted or DEFAULT_SUBREDDITS
    if existing is not None:
        from prefect.client.schemas.actions import VariableUpdate

        await client.update_variable(VariableUpdate(name=SUBREDDITS_VARIABLE, value=value))
        return f"updated {value}"
    await client.create_variable(VariableCreate(name=SUBREDDITS_VARIABLE, value=value))
    return f"created {value}"


def ensure_alert_automations(env: Mapping[str, str]) -> str:
    """tasks.ops.alerts.ensure_alerts with the destination from the environment
    (REDDIT_PIPELINE_ALERT_WEBHOOK_URL, _SLACK_WEBHOOK_URL, or _EMAIL_TO with
    SENDGRID_API_KEY and _EMAIL_FROM, or _ALERT_BLOCK_ID). Without one, no automation: an
    alert that notifies nobody is worse than none, as it looks like coverage."""
    try:
        from tasks.ops import AlertConfig, ensure_alerts
    except ImportError as exc:
        return f"skipped: tasks.ops.alerts is not usable ({exc})"
    values = {
        "webhook_url": env.get("REDDIT_PIPELINE_ALERT_WEBHOOK_URL"),
        "slack_webhook_url": env.get("REDDIT_PIPELINE_ALERT_SLACK_WEBHOOK_URL"),
        "email_to": [a for a in env.get("REDDIT_PIPELINE_ALERT_EMAIL_TO", "").split(",") if a],
        "email_from": env.get("REDDIT_PIPELINE_ALERT_EMAIL_FROM"),
        "sendgrid_api_key": env.get("SENDGRID_API_KEY"),
        "block_document_id": env.get("REDDIT_PIPELINE_ALERT_BLOCK_ID"),
    }
    if not any(values.values()):
        return "skipped: no alert destination (set REDDIT_PIPELINE_ALERT_WEBHOOK_URL or another)"
    config = AlertConfig(**{k: v for k, v in values.items() if v})
    ids = ensure_alerts(config)
    from tasks.ops import ensure_monitoring

    sla = float(env.get("REDDIT_PIPELINE_SLA_SECONDS", "1800"))
    ids |= ensure_monitoring(config, sla_seconds=sla)
    return f"{len(ids)} automations: {', '.join(sorted(ids))}"


def ensure_roles(env: Mapping[str, str], connect_redshift: Callable | None = None) -> str:
    """Apply sql/roles with an admin DSN; without one, skip (roles need an administrator).
    A redshift:// DSN applies Redshift's roles, granting the loader role to
    REDDIT_PIPELINE_REDSHIFT_LOADER_USER; any other DSN, PostgreSQL's."""
    dsn = env.get("REDDIT_PIPELINE_ADMIN_DSN")
    if not dsn:
        return "skipped: set REDDIT_PIPELINE_ADMIN_DSN to apply the database roles"
    from tasks.ops import Roles, apply_roles, connect_redshift_admin

    roles = Roles(schema=env.get(settings.WAREHOUSE_SCHEMA_ENV, settings.WAREHOUSE_SCHEMA))
    file = apply_roles(
        dsn,
        roles,
        loader_user=env.get("REDDIT_PIPELINE_REDSHIFT_LOADER_USER"),
        connect_redshift=connect_redshift or connect_redshift_admin,
    )
    return f"{file}: {roles.loader}, {roles.analyst}, {roles.state}"


def prefect_files(pool_type: str) -> list[Path]:
    """prefect.yaml (production) everywhere; prefect.local.yaml too on the process pool."""
    return [PREFECT_FILE, LOCAL_PREFECT_FILE] if pool_type == "process" else [PREFECT_FILE]


def deployment_names(pool_type: str) -> list[str]:
    """The deployments the bootstrap makes for this pool type, as the files name them."""
    return [
        d["name"]
        for path in prefect_files(pool_type)
        for d in yaml.safe_load(path.read_text())["deployments"]
    ]


def deploy(pool_name: str, pool_type: str, run: Callable = subprocess.run) -> None:
    """`prefect --no-prompt deploy --all` per file, from the project folder, with the
    environment the templates in the files read."""
    env = {**os.environ, "REDDIT_PIPELINE_WORK_POOL": pool_name, "PWD": str(PROJECT_DIR)}
    if pool_type == "process":
        # The process worker runs this checkout; in an image the image's own path is used.
        env["REDDIT_PIPELINE_PROJECT_DIR"] = str(PROJECT_DIR)
    else:
        env.pop("REDDIT_PIPELINE_PROJECT_DIR", None)
    for path in prefect_files(pool_type):
        command = [sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--all"]
        if path != PREFECT_FILE:
            command += ["--prefect-file", str(path.relative_to(PROJECT_DIR))]
        run(command, cwd=PROJECT_DIR, env=env, check=True)


async def deactivate_schedules(client: PrefectClient, names: list[str]) -> list[str]:
    """Switch off every schedule of these deployments (`prefect deploy` switched them on, as
    prefect.yaml says for production); the server drops the runs they had scheduled."""
    switched: list[str] = []
    for flow_name, deployment_name in (n.split("/", 1) for n in names):
        deployment = await client.read_deployment_by_name(f"{flow_name}/{deployment_name}")
        for schedule in deployment.schedules:
            if schedule.active:
                await client.update_deployment_schedule(deployment.id, schedule.id, active=False)
                switched.append(deployment_name)
    return sorted(set(switched))


def scheduled_deployments(prefect_file: Path = PREFECT_FILE) -> list[str]:
    """`flow-name/deployment-name` of each deployment in the file that has a schedule (the
    flow's name is read from its entrypoint, as `prefect deploy` does)."""
    from prefect.flows import load_flow_from_entrypoint

    deployments = yaml.safe_load(prefect_file.read_text())["deployments"]
    return [
        f"{load_flow_from_entrypoint(str(PROJECT_DIR / d['entrypoint'])).name}/{d['name']}"
        for d in deployments
        if d.get("schedules")
    ]


async def _server_objects(pool_name: str, pool_type: str, job_vars: dict, report: Report) -> None:
    async with get_client() as client:
        pool = await ensure_work_pool(client, pool_name, pool_type, job_vars)
        report.add(f"work pool {pool_name} ({pool_type}): {pool}")
        report.add(f"concurrency limit {REDDIT_API_LIMIT}: {await ensure_reddit_api_limit(client)}")
        report.add(f"variable {SUBREDDITS_VARIABLE}: {await ensure_variables(client, os.environ)}")


async def _switch_off_schedules() -> list[str]:
    async with get_client() as client:
        return await deactivate_schedules(client, scheduled_deployments())


def require_image(pool_type: str, job_vars: Mapping[str, Any]) -> None:
    """A docker or ecs pool without the project's image would run the stock Prefect image,
    where every run fails on a missing module: refuse up front, saying what to set."""
    if pool_type in IMAGE_POOL_TYPES and not job_vars.get("image"):
        raise ValueError(
            f"--pool-type {pool_type} needs the project's image: set REDDIT_PIPELINE_IMAGE "
            "(e.g. registry.example/reddit-pipeline:<git sha>, built from the Dockerfile)"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m flows.bootstrap",
        description="Create or update the pipeline's blocks, work pool, Reddit API limit, "
        "alerts and deployments on the Prefect API in PREFECT_API_URL.",
    )
    parser.add_argument("--pool-type", choices=["process", "docker", "ecs"], default="process")
    parser.add_argument("--pool-name", help="default: the name in prefect.yaml for the type")
    parser.add_argument("--no-deploy", action="store_true", help="skip `prefect deploy`")
    parser.add_argument(
        "--activate-schedules",
        action="store_true",
        help="keep prefect.yaml's schedules on for a process pool (they are always on for "
        "docker and ecs pools)",
    )
    args = parser.parse_args(argv)
    report = Report()
    try:
        definition = pool_definition(args.pool_type)
        require_image(args.pool_type, definition["job_variables"])
        pool_name = args.pool_name or definition["name"]
        report.add(f"block types: {', '.join(register_block_types())}")
        blocks = blocks_from_env(os.environ)
        save_blocks(blocks)
        report.add(f"blocks: {', '.join(sorted(blocks)) or 'none (no REDDIT_* or AWS_* set)'}")
        asyncio.run(_server_objects(pool_name, args.pool_type, definition["job_variables"], report))
        report.add(f"alerts: {ensure_alert_automations(os.environ)}")
        report.add(f"roles: {ensure_roles(os.environ)}")
        if not args.no_deploy:
            deploy(pool_name, args.pool_type)
            names = deployment_names(args.pool_type)
            report.add(f"deployments: {', '.join(names)} on {pool_name}")
            if args.pool_type == "process" and not args.activate_schedules:
                off = asyncio.run(_switch_off_schedules())
                report.add(
                    f"schedules switched off: {', '.join(off) or 'none'} "
                    "(--activate-schedules keeps them on)"
                )
    except (ValueError, subprocess.CalledProcessError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
