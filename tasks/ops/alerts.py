"""Alerts as code: Prefect automations that notify people when a reddit-pipeline run fails or
crashes, and when a data contract fails (`reddit_pipeline.quality.failed`, emitted by
tasks.quality.contracts.publish_check_results).

Automations live on the Prefect server, not in the flow: a crashed process cannot send its own
alert, but the server sees the Crashed state and the events. `ensure_alerts` creates them, or
updates them in place by name, so running the bootstrap twice leaves one of each.

    python -m tasks.ops.alerts --webhook-url https://example.com/hook
    python -m tasks.ops.alerts --slack-webhook-url https://hooks.slack.com/services/...
    python -m tasks.ops.alerts --email-to ops@example.com --sendgrid-api-key ... --email-from ...
    python -m tasks.ops.alerts --block-document-id <uuid of any saved notification block>
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any
from uuid import UUID

from pydantic import BaseModel, Field, SecretStr

from tasks.quality import QUALITY_FAILED_EVENT

# The flow's registered name (flows/main.py), which deployments reference too.
FLOW_NAME = "reddit-pipeline"
RUN_FAILED_AUTOMATION = "reddit-pipeline: run failed or crashed"
QUALITY_FAILED_AUTOMATION = "reddit-pipeline: data contract failed"

RUN_FAILED_SUBJECT = "reddit-pipeline run {{ flow_run.name }} {{ flow_run.state.name }}"
RUN_FAILED_BODY = (
    "Flow run {{ flow.name }}/{{ flow_run.name }} ({{ flow_run.id }}) entered "
    "{{ flow_run.state.name }}.\n{{ flow_run.state.message }}"
)
QUALITY_SUBJECT = "reddit-pipeline data contract failed: {{ event.payload.dataset }}"
QUALITY_BODY = (
    "Data contract checks failed on {{ event.payload.dataset }} "
    "(run {{ event.payload.run_id }}); the load was stopped.\n{{ event.payload.summary }}"
)


class AlertConfig(BaseModel):
    """Where notifications go. Give exactly one destination: a plain webhook URL (JSON
    `{"subject", "text"}` POSTed to it), a Slack incoming webhook, an email through SendGrid,
    or the id of a notification block already saved on the server."""

    webhook_url: str | None = Field(None, description="Any HTTP endpoint; JSON POST.")
    slack_webhook_url: SecretStr | None = Field(None, description="Slack incoming webhook.")
    email_to: list[str] = Field(default_factory=list, description="Email recipients.")
    email_from: str | None = Field(None, description="Sender address (SendGrid).")
    sendgrid_api_key: SecretStr | None = Field(None, description="SendGrid API key.")
    block_document_id: UUID | None = Field(None, description="A saved notification block.")
    block_name: str = Field("reddit-pipeline-alerts", description="Name to save the block as.")
    flow_name: str = Field(FLOW_NAME, description="The flow whose runs are watched.")


def notification_block(config: AlertConfig) -> Any:
    """The notification block the config describes (not saved yet)."""
    from prefect.blocks.notifications import (
        CustomWebhookNotificationBlock,
        SendgridEmail,
        SlackWebhook,
    )

    chosen = [
        name
        for name, value in (
            ("webhook_url", config.webhook_url),
            ("slack_webhook_url", config.slack_webhook_url),
            ("email_to", config.email_to),
        )
        if value
    ]
    if len(chosen) != 1:
        raise ValueError(
            "give exactly one alert destination (webhook_url, slack_webhook_url, email_to or "
            f"block_document_id); got {chosen or 'none'}"
        )
    if config.webhook_url:
        return CustomWebhookNotificationBlock(
            name=config.block_name,
            url=config.webhook_url,
            json_data={"subject": "{{subject}}", "text": "{{body}}", "source": "{{name}}"},
        )
    if config.slack_webhook_url:
        return SlackWebhook(url=config.slack_webhook_url)
    if not (config.sendgrid_api_key and config.email_from):
        raise ValueError("email alerts need sendgrid_api_key and email_from")
    return SendgridEmail(
        api_key=config.sendgrid_api_key,
        sender_email=config.email_from,
        to_emails=config.email_to,
    )


def save_notification_block(config: AlertConfig) -> UUID:
    """Save (or overwrite) the block under config.block_name; its id for the actions."""
    if config.block_document_id:
        return config.block_document_id
    return notification_block(config).save(config.block_name, overwrite=True)


def event_notification(
    name: str,
    description: str,
    event: str,
    resource: str,
    block_document_id: UUID,
    subject: str,
    body: str,
) -> Any:
    """An automation that sends one notification for each `event` on a matching resource."""
    from prefect.automations import Automation, EventTrigger, Posture, SendNotification

    return Automation(
        name=name,
        description=description,
        trigger=EventTrigger(
            expect={event},
            match={"prefect.resource.id": resource},
            posture=Posture.Reactive,
            threshold=1,
            within=timedelta(0),
        ),
        actions=[SendNotification(block_document_id=block_document_id, subject=subject, body=body)],
    )


def alert_automations(block_document_id: UUID, flow_name: str = FLOW_NAME) -> list[Any]:
    """The automations, as values: one for a failed or crashed run, one for a failed
    contract."""
    from prefect.automations import Automation, EventTrigger, Posture, SendNotification

    run_failed = Automation(
        name=RUN_FAILED_AUTOMATION,
        description=f"Notify when a {flow_name} flow run fails or crashes.",
        trigger=EventTrigger(
            expect={"prefect.flow-run.Failed", "prefect.flow-run.Crashed"},
            match={"prefect.resource.id": "prefect.flow-run.*"},
            match_related={"prefect.resource.role": "flow", "prefect.resource.name": flow_name},
            posture=Posture.Reactive,
            threshold=1,
            within=timedelta(0),
        ),
        actions=[
            SendNotification(
                block_document_id=block_document_id,
                subject=RUN_FAILED_SUBJECT,
                body=RUN_FAILED_BODY,
            )
        ],
    )
    quality_failed = event_notification(
        QUALITY_FAILED_AUTOMATION,
        "Notify when a data contract check stops the load.",
        QUALITY_FAILED_EVENT,
        "reddit_pipeline.dataset.*",
        block_document_id,
        QUALITY_SUBJECT,
        QUALITY_BODY,
    )
    return [run_failed, quality_failed]


def ensure_alerts(target: AlertConfig | UUID | str) -> dict[str, UUID]:
    """Create the automations, or update the ones of the same name. `target` is a config, or
    the id of a notification block already saved. Returns automation name -> id."""
    block_id, flow_name = notification_target(target)
    return upsert_automations(alert_automations(block_id, flow_name))


def notification_target(target: AlertConfig | UUID | str) -> tuple[UUID, str]:
    """The notification block's id (saving the config's block first) and the flow watched."""
    if isinstance(target, AlertConfig):
        return save_notification_block(target), target.flow_name
    return UUID(str(target)), FLOW_NAME


def upsert_automations(automations: list[Any]) -> dict[str, UUID]:
    """Create each automation, or update the one of the same name in place (extra copies left
    by an older, non-idempotent bootstrap are deleted), so a second bootstrap leaves one of
    each. Returns automation name -> id."""
    from prefect.client.orchestration import get_client

    ids: dict[str, UUID] = {}
    with get_client(sync_client=True) as client:
        for automation in automations:
            existing = client.read_automations_by_name(automation.name)
            if existing:
                automation.id = existing[0].id
                automation.update()
                for extra in existing[1:]:
                    client.delete_automation(extra.id)
            else:
                automation.create()
            assert automation.id is not None
            ids[automation.name] = automation.id
    return ids


def destination_arguments(parser: argparse.ArgumentParser, email: bool = True) -> None:
    """Where the automations notify, one of: a webhook, Slack, email, a saved block."""
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--webhook-url", help="POST JSON {subject, text} to this URL")
    if email:
        where.add_argument("--slack-webhook-url", help="a Slack incoming webhook URL")
        where.add_argument("--email-to", action="append", help="email recipient (repeat)")
    where.add_argument("--block-document-id", type=UUID, help="a saved notification block")


def print_automations(ensure: Callable[[], Mapping[str, Any]]) -> int:
    """The commands' common end: each automation made or updated, one a line, or the one
    line of what was wrong with the settings (exit 2)."""
    try:
        ids = ensure()
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for name, automation_id in ids.items():
        print(f"{automation_id}  {name}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tasks.ops.alerts",
        description="Create or update the reddit-pipeline alert automations on the Prefect "
        "server in PREFECT_API_URL.",
    )
    destination_arguments(parser)
    parser.add_argument("--email-from", help="sender address for --email-to")
    parser.add_argument("--sendgrid-api-key", help="SendGrid API key for --email-to")
    parser.add_argument("--block-name", default="reddit-pipeline-alerts")
    parser.add_argument("--flow-name", default=FLOW_NAME)
    args = parser.parse_args(argv)
    return print_automations(
        lambda: ensure_alerts(
            AlertConfig(
                webhook_url=args.webhook_url,
                slack_webhook_url=args.slack_webhook_url,
                email_to=args.email_to or [],
                email_from=args.email_from,
                sendgrid_api_key=args.sendgrid_api_key,
                block_document_id=args.block_document_id,
                block_name=args.block_name,
                flow_name=args.flow_name,
            )
        )
    )


if __name__ == "__main__":
    sys.exit(main())
