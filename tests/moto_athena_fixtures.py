"""A moto server for Athena (and the S3 it writes results to) on a free 127.0.0.1 port.

moto's Athena never runs SQL: an execution goes QUEUED -> RUNNING -> SUCCEEDED as it is
described (its state manager, `/moto-api/state-manager/set-transition`, slows that down), results
are whatever was queued at `/moto-api/static/athena/query-results`, and stop_query_execution
cancels. A FAILED state has no API; `fail_execution` sets it on moto's backend, which lives in
this process because ThreadedMotoServer runs in a thread.
"""

from __future__ import annotations

import json
import socket
import urllib.request
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's default account


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def moto_api(endpoint: str, path: str, body: dict[str, Any]) -> None:
    """POST to moto's own API (state manager, canned results)."""
    request = urllib.request.Request(
        f"{endpoint}/moto-api/{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()


def hold_queries(endpoint: str, describes: int) -> None:
    """Each state lasts `describes` get_query_execution calls before moving on."""
    moto_api(
        endpoint,
        "state-manager/set-transition",
        {
            "model_name": "athena::execution",
            "transition": {"progression": "manual", "times": describes},
        },
    )


def queue_results(endpoint: str, results: list[list[list[str]]]) -> None:
    """Rows of the next queries, one list per query started (moto hands them out in order at
    start_query_execution; Athena puts a header row first for a SELECT)."""
    body = {
        "region": REGION,
        "results": [
            {
                "rows": [{"Data": [{"VarCharValue": v} for v in row]} for row in rows],
                "column_info": [],
            }
            for rows in results
        ],
    }
    moto_api(endpoint, "static/athena/query-results", body)


def fail_execution(execution_id: str) -> None:
    from moto.athena.models import athena_backends

    athena_backends[ACCOUNT][REGION].executions[execution_id].status = "FAILED"


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=_free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def athena_client(moto_endpoint: str) -> Iterator[Any]:
    """A real boto3 Athena client on the moto server; moto is reset after each test."""
    client = boto3.client(
        "athena",
        region_name=REGION,
        endpoint_url=moto_endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    try:
        yield client
    finally:
        moto_api(moto_endpoint, "reset", {})
        moto_api(
            moto_endpoint,
            "state-manager/unset-transition",
            {"model_name": "athena::execution"},
        )
