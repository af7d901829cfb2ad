"""Glue through boto3 against a moto server: deploy (create, then update), runs that succeed
and fail with Glue's own message, and a run stopped when the wait is interrupted."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import boto3
import pytest
from aws_fixtures import (  # noqa: F401
    CREDENTIALS,
    REGION,
    fail_glue_run,
    glue_gaps,
    moto_server,
    set_transition,
)

from tasks.lake.s3 import S3Lake
from tasks.process.glue import (
    FLOW_RUN_ARGUMENT,
    SCRIPT_KEY,
    SCRIPT_PATH,
    GlueJobFailed,
    GlueJobSpec,
    GlueWaitTimeout,
    WaitPolicy,
    arun_glue_job,
    deploy_glue_job,
    process_arguments,
    process_glue_task,
    read_manifest,
    run_glue_job,
    start_glue_run,
)

FAST = WaitPolicy(initial=0.01, maximum=0.05, timeout=30)
ROLE = "arn:aws:iam::123456789012:role/reddit-glue"


@pytest.fixture
def glue(moto_server: str, glue_gaps: None) -> object:  # noqa: F811
    return boto3.client("glue", endpoint_url=moto_server, region_name=REGION, **CREDENTIALS)


@pytest.fixture
def lake(moto_server: str) -> S3Lake:  # noqa: F811
    bucket = f"lake-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=moto_server, region_name=REGION, **CREDENTIALS).create_bucket(
        Bucket=bucket
    )
    return S3Lake.from_params(
        bucket, "lake", endpoint_url=moto_server, region_name=REGION, credentials=CREDENTIALS
    )


@pytest.fixture
def job(glue: object, lake: S3Lake) -> str:
    name = f"process-reddit-{uuid.uuid4().hex[:8]}"
    deploy_glue_job(glue, lake, GlueJobSpec(name=name, role_arn=ROLE))
    return name


@pytest.fixture
def runs_advance_per_poll(moto_server: str) -> Iterator[None]:  # noqa: F811
    """Every second GetJobRun moves a run one state on: STARTING, RUNNING, RUNNING, SUCCEEDED."""
    set_transition(moto_server, "glue::job_run", {"progression": "manual", "times": 2})
    yield
    set_transition(moto_server, "glue::job_run", None)


@pytest.fixture
def runs_never_finish(moto_server: str) -> Iterator[None]:  # noqa: F811
    set_transition(moto_server, "glue::job_run", {"progression": "manual", "times": 10**6})
    yield
    set_transition(moto_server, "glue::job_run", None)


def test_deploy_creates_then_updates_the_job(glue: object, lake: S3Lake) -> None:
    spec = GlueJobSpec(name="process-reddit", role_arn=ROLE, default_arguments={"--extra": "1"})
    assert deploy_glue_job(glue, lake, spec) == "created"
    job = glue.get_job(JobName="process-reddit")["Job"]
    assert job["GlueVersion"] == "5.0"
    assert job["WorkerType"] == "G.1X"
    assert job["NumberOfWorkers"] == 2
    assert job["Command"]["ScriptLocation"] == lake.describe(SCRIPT_KEY)
    assert job["DefaultArguments"]["--extra"] == "1"
    assert lake.get_bytes(SCRIPT_KEY) == SCRIPT_PATH.read_bytes()

    bigger = GlueJobSpec(
        name="process-reddit", role_arn=ROLE, worker_type="G.2X", number_of_workers=5
    )
    assert deploy_glue_job(glue, lake, bigger) == "updated"
    job = glue.get_job(JobName="process-reddit")["Job"]
    assert (job["WorkerType"], job["NumberOfWorkers"]) == ("G.2X", 5)
    assert "--extra" not in job["DefaultArguments"]


def test_run_polls_through_starting_and_running_to_succeeded(
    glue: object, job: str, runs_advance_per_poll: None
) -> None:
    delays: list[float] = []
    run = run_glue_job(glue, job, {"--kind": "posts"}, FAST, sleep=delays.append)
    assert run["JobRunState"] == "SUCCEEDED"
    assert run["Arguments"]["--kind"] == "posts"
    assert len(delays) == 3  # seen STARTING, RUNNING, RUNNING
    assert delays == sorted(delays)  # backing off


@pytest.mark.parametrize("state", ["FAILED", "TIMEOUT", "ERROR"])
def test_failed_run_raises_with_glues_error_message(
    glue: object, job: str, runs_never_finish: None, state: str
) -> None:
    def fail_on_first_poll(_delay: float) -> None:
        run_id = glue.get_job_runs(JobName=job)["JobRuns"][0]["Id"]
        fail_glue_run(job, run_id, "AnalysisException: Path does not exist: s3://lake/raw", state)

    with pytest.raises(
        GlueJobFailed, match=f"{state}: AnalysisException: Path does not exist"
    ) as info:
        run_glue_job(glue, job, {}, FAST, sleep=fail_on_first_poll)
    assert info.value.state == state
    # a failed run is over: nothing to stop
    assert glue.get_job_run(JobName=job, RunId=info.value.run_id)["JobRun"]["JobRunState"] == state


def test_interrupted_wait_stops_the_run(glue: object, job: str, runs_never_finish: None) -> None:
    def interrupt(_delay: float) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_glue_job(glue, job, {}, FAST, sleep=interrupt)
    (run,) = glue.get_job_runs(JobName=job)["JobRuns"]
    assert run["JobRunState"] == "STOPPED"


def test_prefects_termination_signal_stops_the_run(
    glue: object, job: str, runs_never_finish: None
) -> None:
    """What Prefect raises in the flow's main thread when a cancellation reaches it (SIGTERM)."""
    from prefect.exceptions import TerminationSignal

    def terminate(_delay: float) -> None:
        raise TerminationSignal(signal=15)

    with pytest.raises(TerminationSignal):
        run_glue_job(glue, job, {}, FAST, sleep=terminate)
    (run,) = glue.get_job_runs(JobName=job)["JobRuns"]
    assert run["JobRunState"] == "STOPPED"


def test_wait_timeout_stops_the_run(glue: object, job: str, runs_never_finish: None) -> None:
    with pytest.raises(GlueWaitTimeout):
        run_glue_job(glue, job, {}, WaitPolicy(initial=0.01, maximum=0.01, timeout=0.05))
    (run,) = glue.get_job_runs(JobName=job)["JobRuns"]
    assert run["JobRunState"] == "STOPPED"


def test_cancelled_async_wait_stops_the_run(
    glue: object, job: str, runs_never_finish: None
) -> None:
    async def main() -> None:
        waiting = asyncio.create_task(arun_glue_job(glue, job, {}, FAST))
        while not glue.get_job_runs(JobName=job)["JobRuns"]:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting

    asyncio.run(main())
    (run,) = glue.get_job_runs(JobName=job)["JobRuns"]
    assert run["JobRunState"] == "STOPPED"


def test_process_arguments_and_manifest_round_trip(lake: S3Lake) -> None:
    keys = ["raw/reddit/posts/subreddit=a/dt=2024-03-01/b1.ndjson.gz"]
    arguments, manifest_key = process_arguments(lake, "posts", keys, request_id="r1")
    assert arguments["--lake_root"] == lake.root_uri
    assert lake.get_bytes(arguments["--raw_list_key"]).decode().split() == keys
    lake.put_bytes(
        manifest_key,
        b'{"kind": "posts", "rows": 3, "processed_keys": ["p/k.parquet"], "dts": ["2024-03-01"]}',
    )
    result = read_manifest(lake, manifest_key)
    assert (result.rows, result.processed_keys, result.dts) == (3, ["p/k.parquet"], {"2024-03-01"})


def _pipeline_flow_run(flow_run_id: uuid.UUID, job: str) -> object:
    """The flow run as Prefect's runner reads it back from the API for its hooks: the config
    parameter is plain JSON."""
    from prefect.client.schemas.objects import FlowRun
    from prefect.states import Cancelling

    from tasks.config import PipelineConfig

    config = PipelineConfig(
        lake="s3", s3_bucket_block="lake", process_engine="glue", glue_job_name=job
    )
    return FlowRun(
        id=flow_run_id,
        flow_id=uuid.uuid4(),
        name="cancelled-run",
        parameters={"config": config.model_dump(mode="json")},
        state=Cancelling(),
    )


@pytest.mark.parametrize("hooks", ["on_cancellation_hooks", "on_crashed_hooks"])
def test_the_flows_cancellation_hook_stops_only_its_own_glue_runs(
    glue: object,
    job: str,
    lake: S3Lake,
    runs_never_finish: None,
    moto_server: str,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    hooks: str,
) -> None:
    from prefect.states import Cancelled, Crashed

    from flows.main import reddit_pipeline

    # The hook builds its client from the default AWS chain, as on a worker with a task role.
    for name, value in {
        "AWS_ENDPOINT_URL": moto_server,
        "AWS_ACCESS_KEY_ID": CREDENTIALS["aws_access_key_id"],
        "AWS_SECRET_ACCESS_KEY": CREDENTIALS["aws_secret_access_key"],
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    ours, other = uuid.uuid4(), uuid.uuid4()
    mine = [
        start_glue_run(glue, job, process_arguments(lake, kind, ["k"], flow_run_id=str(ours))[0])
        for kind in ("posts", "comments")
    ]
    theirs = start_glue_run(
        glue, job, process_arguments(lake, "posts", ["k"], flow_run_id=str(other))[0]
    )
    untagged = start_glue_run(glue, job, {"--kind": "posts"})
    assert glue.get_job_run(JobName=job, RunId=mine[0])["JobRun"]["Arguments"][
        FLOW_RUN_ARGUMENT
    ] == str(ours)

    registered = getattr(reddit_pipeline, hooks)
    assert registered, f"reddit_pipeline has no {hooks}"
    state = Cancelled() if hooks == "on_cancellation_hooks" else Crashed()
    for hook in registered:
        hook(reddit_pipeline, _pipeline_flow_run(ours, job), state)

    def state_of(run_id: str) -> str:
        return glue.get_job_run(JobName=job, RunId=run_id)["JobRun"]["JobRunState"]

    assert [state_of(r) for r in mine] == ["STOPPED", "STOPPED"]
    assert state_of(theirs) != "STOPPED"
    assert state_of(untagged) != "STOPPED"


def test_a_wait_timeout_or_a_glue_failure_is_not_retried_network_trouble_is() -> None:
    from prefect.states import Failed

    should_retry = process_glue_task.retry_condition_fn
    assert process_glue_task.retries >= 1
    assert not should_retry(None, None, Failed(data=GlueWaitTimeout("slow")))
    assert not should_retry(None, None, Failed(data=GlueJobFailed("j", "r", "FAILED", "boom")))
    assert should_retry(None, None, Failed(data=ConnectionError("reset by peer")))
