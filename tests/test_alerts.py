"""Alerts for real: automations on the session's Prefect server (its triggers and actions
services run in the ephemeral server too) notify a small HTTP receiver on 127.0.0.1."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from prefect import flow

from tasks.alerts import (
    FLOW_NAME,
    QUALITY_FAILED_AUTOMATION,
    RUN_FAILED_AUTOMATION,
    AlertConfig,
    ensure_alerts,
    main,
)
from tasks.check import CheckReport, CheckRow, publish_check_results


class Receiver:
    """Collects the JSON bodies POSTed to it."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        received = self.messages

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                received.append(json.loads(self.rfile.read(length) or b"{}"))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait_for(self, text: str, timeout: float = 90.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for message in self.messages:
                if text in json.dumps(message):
                    return message
            time.sleep(0.5)
        raise AssertionError(f"no notification mentioning {text!r}; got {self.messages}")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


@pytest.fixture
def alerts(prefect_api: str, receiver: Receiver) -> Iterator[dict[str, Any]]:
    """The automations pointed at the receiver; deleted afterwards, so later tests' failing
    flows notify nobody."""
    from prefect.client.orchestration import get_client

    ids = ensure_alerts(AlertConfig(webhook_url=receiver.url, block_name="test-alerts"))
    yield ids
    with get_client(sync_client=True) as client:
        for automation_id in ids.values():
            client.delete_automation(automation_id)


@flow(name=FLOW_NAME)
def failing_pipeline() -> None:
    raise RuntimeError("the warehouse is on fire")


def test_bootstrap_twice_leaves_one_automation_of_each(
    alerts: dict[str, Any], receiver: Receiver
) -> None:
    from prefect.client.orchestration import get_client

    again = ensure_alerts(AlertConfig(webhook_url=receiver.url, block_name="test-alerts"))

    assert again == alerts
    with get_client(sync_client=True) as client:
        for name in (RUN_FAILED_AUTOMATION, QUALITY_FAILED_AUTOMATION):
            assert len(client.read_automations_by_name(name)) == 1


def test_a_failed_run_of_the_pipeline_flow_sends_a_notification(
    alerts: dict[str, Any], receiver: Receiver
) -> None:
    state = failing_pipeline(return_state=True)

    assert state.is_failed()
    message = receiver.wait_for("Failed")
    assert FLOW_NAME in message["subject"]
    assert "the warehouse is on fire" in message["text"]


def test_a_quality_failure_event_sends_a_notification_naming_the_check(
    alerts: dict[str, Any], receiver: Receiver
) -> None:
    report = CheckReport(
        rows=[CheckRow("posts", "id duplicate", "failed", "error", 3)],
    )

    emitted = flow(name="quality-alert-test")(publish_check_results)(report, "run-alert-test")

    assert emitted == ["reddit_pipeline.quality.failed:posts"]
    message = receiver.wait_for("run-alert-test")
    assert "posts" in message["subject"]
    assert "id duplicate failed (figure 3)" in message["text"]


def test_the_cli_needs_exactly_one_destination(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([])
    assert exit_info.value.code == 2
    assert main(["--email-to", "ops@example.com"]) == 2
    assert "sendgrid_api_key" in capsys.readouterr().err
