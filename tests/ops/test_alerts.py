"""Alerts for real: automations on the session's Prefect server (its triggers and actions
services run in the ephemeral server too) notify a small HTTP receiver on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from helpers import Receiver
from prefect import flow

from tasks.ops.alerts import (
    FLOW_NAME,
    QUALITY_FAILED_AUTOMATION,
    RUN_FAILED_AUTOMATION,
    AlertConfig,
    ensure_alerts,
    main,
)
from tasks.quality.contracts import CheckReport, CheckRow, publish_check_results


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
