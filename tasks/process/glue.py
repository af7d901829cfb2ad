"""Process on AWS Glue: deploy the job script, run it, wait for it, stop it if we stop waiting.

Plain functions over a boto3 Glue client (prefect-aws's GlueJobBlock is broken in 0.7.12: its
trigger() is async and the run it returns has no client); thin Prefect tasks add retries. The
job (glue_scripts/process_reddit.py) writes the same processed keys and schema as the DuckDB
engine, and a manifest the flow turns into the same ProcessResult.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.tasks import exponential_backoff
from prefect_aws import AwsCredentials

from tasks import settings
from tasks.lake import S3Lake
from tasks.process.duckdb_engine import ProcessResult

logger = logging.getLogger(__name__)

SCRIPT_PATH = settings.PROJECT_DIR / "glue_scripts" / "process_reddit.py"
SCRIPT_KEY = "glue_scripts/process_reddit.py"
# Where the flow hands the job its raw key lists, and where the job writes its manifests.
REQUESTS_PREFIX = "_glue/requests"
MANIFESTS_PREFIX = "_glue/manifests"
# The job argument that ties a Glue run to the Prefect flow run that started it, so a
# cancellation hook (which runs outside the flow's process) can find and stop it.
FLOW_RUN_ARGUMENT = "--flow_run_id"
# Glue states in which a run may still write to the lake.
ACTIVE_STATES = frozenset({"STARTING", "RUNNING", "WAITING"})
# BatchStopJobRun takes at most 25 run ids.
STOP_BATCH = 25
# Glue's terminal states; only SUCCEEDED is a success.
SUCCEEDED = "SUCCEEDED"
FAILED_STATES = frozenset({"FAILED", "TIMEOUT", "ERROR", "STOPPED", "EXPIRED"})


class GlueJobFailed(RuntimeError):
    """A Glue run ended in FAILED, TIMEOUT, ERROR, STOPPED or EXPIRED; the message is Glue's."""

    def __init__(self, job_name: str, run_id: str, state: str, error_message: str | None):
        self.job_name, self.run_id, self.state = job_name, run_id, state
        self.error_message = error_message
        super().__init__(
            f"Glue job {job_name} run {run_id} ended {state}: "
            f"{error_message or '(Glue gave no ErrorMessage)'}"
        )


class GlueWaitTimeout(TimeoutError):
    """The run did not finish within our own wait limit (it is stopped, see run_glue_job)."""


@dataclass(frozen=True)
class GlueJobSpec:
    """A Glue job definition. Glue 5.0 runs Spark 3.5 on Python 3.11, like the local tests."""

    name: str
    role_arn: str
    glue_version: str = "5.0"
    worker_type: str = "G.1X"
    number_of_workers: int = 2
    timeout_minutes: int = 120
    max_retries: int = 0
    max_concurrent_runs: int = 4
    default_arguments: Mapping[str, str] = field(default_factory=dict)

    def definition(self, script_location: str) -> dict[str, Any]:
        """The JobUpdate body; create_job takes the same plus Name."""
        arguments = {
            "--job-language": "python",
            "--enable-metrics": "true",
            "--enable-continuous-cloudwatch-log": "true",
            **self.default_arguments,
        }
        return {
            "Role": self.role_arn,
            "Command": {
                "Name": "glueetl",
                "ScriptLocation": script_location,
                "PythonVersion": "3",
            },
            "DefaultArguments": arguments,
            "GlueVersion": self.glue_version,
            "WorkerType": self.worker_type,
            "NumberOfWorkers": self.number_of_workers,
            "Timeout": self.timeout_minutes,
            "MaxRetries": self.max_retries,
            "ExecutionProperty": {"MaxConcurrentRuns": self.max_concurrent_runs},
        }


@dataclass(frozen=True)
class WaitPolicy:
    """Polling: start at `initial` seconds, grow by `factor` up to `maximum`; give up (and stop
    the run) after `timeout` seconds. GetJobRun is throttled per account: poll gently."""

    initial: float = 5.0
    maximum: float = 60.0
    factor: float = 1.5
    timeout: float = 3 * 3600.0

    def delays(self) -> Any:
        delay = self.initial
        while True:
            yield delay
            delay = min(delay * self.factor, self.maximum)


def glue_client(credentials: AwsCredentials) -> Any:
    """A Glue client with the block's credentials, region and client parameters."""
    return credentials.get_client("glue")


def deploy_glue_job(glue: Any, lake: S3Lake, spec: GlueJobSpec, script: Path = SCRIPT_PATH) -> str:
    """Upload the script into the lake (with its encryption) and create or update the job, so
    deploying twice leaves one job with the newest script. Returns 'created' or 'updated'."""
    lake.put_bytes(SCRIPT_KEY, script.read_bytes())
    definition = spec.definition(lake.describe(SCRIPT_KEY))
    try:
        glue.get_job(JobName=spec.name)
    except glue.exceptions.EntityNotFoundException:
        glue.create_job(Name=spec.name, **definition)
        logger.info("created Glue job %s", spec.name)
        return "created"
    glue.update_job(JobName=spec.name, JobUpdate=definition)
    logger.info("updated Glue job %s", spec.name)
    return "updated"


def start_glue_run(glue: Any, job_name: str, arguments: Mapping[str, str]) -> str:
    """Start a run; arguments are `--name value` pairs on top of the job's defaults."""
    return glue.start_job_run(JobName=job_name, Arguments=dict(arguments))["JobRunId"]


def stop_glue_run(glue: Any, job_name: str, run_id: str) -> None:
    """Ask Glue to stop a run. Called while another exception propagates, so it logs its own
    failure instead of raising over the original one."""
    stop_glue_runs(glue, job_name, [run_id])


def stop_glue_runs(glue: Any, job_name: str, run_ids: list[str]) -> None:
    """stop_glue_run for several runs, STOP_BATCH per BatchStopJobRun call."""
    for start in range(0, len(run_ids), STOP_BATCH):
        batch = run_ids[start : start + STOP_BATCH]
        try:
            response = glue.batch_stop_job_run(JobName=job_name, JobRunIds=batch)
        except (BotoCoreError, ClientError) as error:
            logger.error("could not stop Glue job %s runs %s: %s", job_name, batch, error)
            continue
        for error in response.get("Errors", []):
            logger.warning(
                "Glue did not stop %s run %s: %s", job_name, error.get("JobRunId"), error
            )
        for stopped in response.get("SuccessfulSubmissions", []):
            logger.warning("stopped Glue job %s run %s", job_name, stopped.get("JobRunId"))


def _check(job_name: str, run_id: str, run: Mapping[str, Any]) -> bool:
    """True when the run succeeded, False while it runs; raises when it ended otherwise."""
    state = run["JobRunState"]
    if state == SUCCEEDED:
        return True
    if state in FAILED_STATES:
        raise GlueJobFailed(job_name, run_id, state, run.get("ErrorMessage"))
    return False


def wait_for_glue_run(
    glue: Any,
    job_name: str,
    run_id: str,
    wait: WaitPolicy = WaitPolicy(),
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Poll until the run ends; returns the JobRun of a success."""
    deadline = time.monotonic() + wait.timeout
    for delay in wait.delays():
        run = glue.get_job_run(JobName=job_name, RunId=run_id, PredecessorsIncluded=False)
        if _check(job_name, run_id, run["JobRun"]):
            return run["JobRun"]
        if time.monotonic() + delay > deadline:
            raise GlueWaitTimeout(f"Glue job {job_name} run {run_id} still running after wait")
        sleep(delay)
    raise AssertionError("unreachable")


def run_glue_job(
    glue: Any,
    job_name: str,
    arguments: Mapping[str, str],
    wait: WaitPolicy = WaitPolicy(),
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Start a run and wait for it. If the wait ends any other way than with the run's own
    end (KeyboardInterrupt, Prefect's TerminationSignal on cancellation, our wait timeout, a
    network error), the run is stopped: nothing keeps writing to the lake unwatched."""
    run_id = start_glue_run(glue, job_name, arguments)
    logger.info("started Glue job %s run %s", job_name, run_id)
    ended = False
    try:
        run = wait_for_glue_run(glue, job_name, run_id, wait, sleep)
        ended = True
        return run
    except GlueJobFailed:
        ended = True
        raise
    finally:
        if not ended:
            stop_glue_run(glue, job_name, run_id)


async def arun_glue_job(
    glue: Any,
    job_name: str,
    arguments: Mapping[str, str],
    wait: WaitPolicy = WaitPolicy(),
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> dict[str, Any]:
    """run_glue_job for async flows: a cancelled task (asyncio.CancelledError at a poll)
    stops the run the same way. boto3 calls run in a thread."""
    run_id = await asyncio.to_thread(start_glue_run, glue, job_name, arguments)
    ended = False
    try:
        deadline = time.monotonic() + wait.timeout
        for delay in wait.delays():
            run = await asyncio.to_thread(glue.get_job_run, JobName=job_name, RunId=run_id)
            try:
                done = _check(job_name, run_id, run["JobRun"])
            except GlueJobFailed:
                ended = True
                raise
            if done:
                ended = True
                return run["JobRun"]
            if time.monotonic() + delay > deadline:
                raise GlueWaitTimeout(f"Glue job {job_name} run {run_id} still running")
            await sleep(delay)
        raise AssertionError("unreachable")
    finally:
        if not ended:
            await asyncio.shield(asyncio.to_thread(stop_glue_run, glue, job_name, run_id))


def process_arguments(
    lake: S3Lake,
    kind: str,
    raw_keys: list[str],
    request_id: str | None = None,
    flow_run_id: str | None = None,
) -> tuple[dict[str, str], str]:
    """The job arguments for processing these raw keys. The key list goes into the lake as a
    file (job arguments are size-limited); the job writes its manifest to the returned key."""
    request_id = request_id or uuid.uuid4().hex
    list_key = f"{REQUESTS_PREFIX}/{kind}/{request_id}.txt"
    manifest_key = f"{MANIFESTS_PREFIX}/{kind}/{request_id}.json"
    lake.put_bytes(list_key, ("\n".join(raw_keys) + "\n").encode())
    arguments = {
        "--kind": kind,
        "--lake_root": lake.root_uri,
        "--raw_list_key": list_key,
        "--manifest_key": manifest_key,
        "--sse": lake.settings.sse,
    }
    if lake.settings.kms_key_id:
        arguments["--kms_key_id"] = lake.settings.kms_key_id
    if flow_run_id:
        arguments[FLOW_RUN_ARGUMENT] = flow_run_id
    return arguments, manifest_key


def read_manifest(lake: S3Lake, manifest_key: str) -> ProcessResult:
    """The job's manifest as the ProcessResult the DuckDB engine returns."""
    manifest = json.loads(lake.get_bytes(manifest_key))
    return ProcessResult(
        kind=manifest["kind"],
        rows=int(manifest["rows"]),
        processed_keys=list(manifest["processed_keys"]),
        dts=set(manifest["dts"]),
    )


def process_batches_glue(
    glue: Any,
    lake: S3Lake,
    job_name: str,
    kind: str,
    raw_keys: list[str],
    wait: WaitPolicy,
    flow_run_id: str | None = None,
) -> ProcessResult:
    """tasks.process.duckdb_engine.process_batches on Glue: same keys, same schema, same result."""
    if not raw_keys:
        return ProcessResult(kind=kind)
    arguments, manifest_key = process_arguments(lake, kind, raw_keys, flow_run_id=flow_run_id)
    run_glue_job(glue, job_name, arguments, wait)
    return read_manifest(lake, manifest_key)


def stop_runs_of_flow_run(
    glue: Any, job_name: str, flow_run_id: str, max_pages: int = 5
) -> list[str]:
    """Stop every still-active run of the job that this flow run started (tagged with
    FLOW_RUN_ARGUMENT). For the flow's cancellation and crash hooks, which run after the flow's
    process is gone (a SIGKILL after the grace period, a lost worker), where run_glue_job's
    `finally` never ran. GetJobRuns lists newest first: a few pages reach a flow run's own."""
    run_ids: list[str] = []
    pages = glue.get_paginator("get_job_runs").paginate(
        JobName=job_name, PaginationConfig={"MaxItems": 200 * max_pages, "PageSize": 200}
    )
    for page in pages:
        for run in page.get("JobRuns", []):
            arguments = run.get("Arguments") or {}
            if (
                run.get("JobRunState") in ACTIVE_STATES
                and arguments.get(FLOW_RUN_ARGUMENT) == flow_run_id
            ):
                run_ids.append(run["Id"])
    stop_glue_runs(glue, job_name, run_ids)
    return run_ids


def _retry_unless_glue_said_no(_task: Any, _run: Any, state: Any) -> bool:
    """Retry network trouble, not a run Glue itself failed (its own MaxRetries covers that),
    nor our own wait timeout: that run was slow for WaitPolicy.timeout (hours) already, and
    starting it again would only wait as long once more."""
    error = state.result(raise_on_failure=False)
    return not isinstance(error, GlueJobFailed | GlueWaitTimeout)


@task(
    name="deploy-glue-job",
    retries=3,
    retry_delay_seconds=exponential_backoff(backoff_factor=5),
    cache_policy=NO_CACHE,
)
def deploy_glue_job_task(credentials: AwsCredentials, lake: S3Lake, spec: GlueJobSpec) -> str:
    return deploy_glue_job(glue_client(credentials), lake, spec)


@task(
    name="process-glue",
    retries=2,
    retry_delay_seconds=exponential_backoff(backoff_factor=30),
    retry_condition_fn=_retry_unless_glue_said_no,
    cache_policy=NO_CACHE,
)
def process_glue_task(
    credentials: AwsCredentials,
    lake: S3Lake,
    job_name: str,
    kind: str,
    raw_keys: list[str],
    wait: WaitPolicy = WaitPolicy(),
) -> ProcessResult:
    """A retry reruns the whole batch list: safe, the processed keys are deterministic. Each
    run carries the flow run's id, so the flow's cancellation hook can find and stop it."""
    from prefect.runtime import flow_run

    flow_run_id = flow_run.get_id()
    return process_batches_glue(
        glue_client(credentials),
        lake,
        job_name,
        kind,
        raw_keys,
        wait,
        str(flow_run_id) if flow_run_id else None,
    )
