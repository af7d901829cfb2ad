"""A moto server on 127.0.0.1 for the AWS tests: the real boto3 (and pyarrow's S3 client) talk
to it over HTTP. Import the fixtures into a test module: `from aws_fixtures import moto_server`.

moto 5.2.5 answers S3 fully, but its Glue lacks UpdateJob and BatchStopJobRun, and its job
runs only ever go STARTING -> RUNNING -> SUCCEEDED. `glue_gaps` adds the two calls to moto's
fake Glue (the server side: boto3 is untouched and sends the real requests), and
`fail_glue_run` sets a run FAILED with an ErrorMessage in moto's backend, the way Glue reports a
failed script. Run-state progression is set with moto's documented state manager endpoint
(POST /moto-api/state-manager/set-transition).
"""

from __future__ import annotations

import json
import socket
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

REGION = "us-east-1"
ACCOUNT = "123456789012"
CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def moto_server() -> Iterator[str]:
    """A moto server for the module; yields its endpoint URL. State is reset between modules."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=_free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    try:
        yield url
    finally:
        urllib.request.urlopen(urllib.request.Request(f"{url}/moto-api/reset", method="POST"))
        server.stop()


def moto_lake_block(endpoint: str, bucket: str, block_name: str) -> Any:
    """A bucket on the moto server and the S3Bucket block (folder `lake`) a PipelineConfig names
    with s3_bucket_block; returns a boto3 S3 client on the same server."""
    import boto3
    from prefect_aws import AwsClientParameters, AwsCredentials
    from prefect_aws.s3 import S3Bucket
    from pydantic import SecretStr

    s3 = boto3.client("s3", endpoint_url=endpoint, region_name=REGION, **CREDENTIALS)
    s3.create_bucket(Bucket=bucket)
    credentials = AwsCredentials(
        aws_access_key_id=CREDENTIALS["aws_access_key_id"],
        aws_secret_access_key=SecretStr(CREDENTIALS["aws_secret_access_key"]),
        region_name=REGION,
        aws_client_parameters=AwsClientParameters(endpoint_url=endpoint),
    )
    S3Bucket(bucket_name=bucket, bucket_folder="lake", credentials=credentials).save(
        block_name, overwrite=True
    )
    return s3


def set_transition(endpoint: str, model: str, transition: dict[str, Any] | None) -> None:
    """moto's state manager: how its fake resources move between states (None = default)."""
    path = "set-transition" if transition else "unset-transition"
    body: dict[str, Any] = {"model_name": model}
    if transition:
        body["transition"] = transition
    request = urllib.request.Request(
        f"{endpoint}/moto-api/state-manager/{path}",
        data=json.dumps(body).encode(),
        method="POST",
    )
    urllib.request.urlopen(request)


def _job_run(job_name: str, run_id: str) -> Any:
    from moto.glue.models import glue_backends

    return glue_backends[ACCOUNT][REGION].get_job(job_name).get_job_run(run_id)


def fail_glue_run(job_name: str, run_id: str, message: str, state: str = "FAILED") -> None:
    """End a moto job run FAILED (or TIMEOUT, ERROR) with Glue's ErrorMessage (moto never
    fails one itself)."""
    run = _job_run(job_name, run_id)
    run.status = state
    run.error_message = message


@pytest.fixture(scope="module")
def glue_gaps() -> Iterator[None]:
    """Adds UpdateJob, BatchStopJobRun and JobRun.ErrorMessage to moto's fake Glue."""
    from moto.glue.models import FakeJobRun
    from moto.glue.responses import GlueResponse

    def request(response: GlueResponse) -> dict[str, Any]:
        # Glue speaks JSON 1.1: the body is the request (moto 5.2 dropped its parsed
        # `parameters`, so read the wire format, which every version has).
        return json.loads(response.body or "{}")

    def update_job(self: GlueResponse) -> Any:
        parameters = request(self)
        name = parameters["JobName"]
        job = self.glue_backend.get_job(name)
        fields = {
            "Role": "role",
            "Command": "command",
            "DefaultArguments": "default_arguments",
            "GlueVersion": "glue_version",
            "WorkerType": "worker_type",
            "NumberOfWorkers": "number_of_workers",
            "Timeout": "timeout",
            "MaxRetries": "max_retries",
            "ExecutionProperty": "execution_property",
            "Description": "description",
        }
        for field, attribute in fields.items():
            if field in parameters["JobUpdate"]:
                setattr(job, attribute, parameters["JobUpdate"][field])
        return json.dumps({"JobName": name})

    def batch_stop_job_run(self: GlueResponse) -> Any:
        parameters = request(self)
        name = parameters["JobName"]
        stopped, errors = [], []
        for run_id in parameters["JobRunIds"]:
            run = _job_run(name, run_id)
            if run.status in ("STARTING", "RUNNING", "WAITING"):
                run.status = "STOPPED"
                stopped.append({"JobName": name, "JobRunId": run_id})
            else:
                errors.append(
                    {
                        "JobName": name,
                        "JobRunId": run_id,
                        "ErrorDetail": {"ErrorCode": "InvalidInputException"},
                    }
                )
        return json.dumps({"SuccessfulSubmissions": stopped, "Errors": errors})

    original_as_dict = FakeJobRun.as_dict

    def as_dict(self: FakeJobRun) -> dict[str, Any]:
        result = original_as_dict(self)
        if getattr(self, "error_message", None):
            result["ErrorMessage"] = self.error_message
        return result

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(GlueResponse, "update_job", update_job, raising=False)
        patch.setattr(GlueResponse, "batch_stop_job_run", batch_stop_job_run, raising=False)
        patch.setattr(FakeJobRun, "as_dict", as_dict)
        yield
