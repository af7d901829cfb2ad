"""Turn on versioning and lifecycle rules for the lake bucket, idempotently:

    python -m tasks.lake.setup --bucket B [--prefix P] [--processed-days 30] [--quarantine-days 90]

- raw/ is kept for ever: it is the only thing every other layer can be rebuilt from
  (tasks.run.rebuild), so no rule touches it.
- processed/ and quarantine/ expire after a number of days: processed files are re-made from raw
  on demand, quarantine files are for people to read for a while (their counts stay in the
  state store). processed/ must outlive the refresh window (--refresh-days, the longest
  refresh_max_age of the deployments) by a margin: every run remodels the days it touches
  from their processed files, and a missing one has to be reprocessed from raw first
  (tasks.process.complete_days), which a routine refresh should never need.
- backups/ (the state store's, tasks.state.backup) expire after --backups-days (0 keeps them).
- Versioning keeps an overwritten or deleted object as a noncurrent version, which is what
  makes a bad rerun or a mistaken delete recoverable; noncurrent versions expire after
  --noncurrent-days so the bucket does not grow without bound, and incomplete multipart
  uploads (a crashed large upload) are aborted after a week.

put_bucket_lifecycle_configuration replaces the whole configuration, so rules this module does
not own (other IDs) are read first and kept.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.exceptions import ClientError

from tasks import settings

RULE_PREFIX = "reddit-pipeline-"
PROCESSED_MARGIN_DAYS = settings.PROCESSED_MARGIN_DAYS
DEFAULT_REFRESH_DAYS = 7  # prefect.yaml's daily-refresh: refresh_max_age P7D


def check_processed_retention(processed_days: int, refresh_days: int) -> None:
    """Refuse a processed/ retention the routine runs would outrun (0 keeps for ever)."""
    least = max(refresh_days, 0) + PROCESSED_MARGIN_DAYS
    if 0 < processed_days < least:
        raise ValueError(
            f"--processed-days {processed_days} is shorter than the refresh window "
            f"({refresh_days} days) plus a margin of {PROCESSED_MARGIN_DAYS}: refreshed days "
            f"would have to be reprocessed from raw on every run; use at least {least}, or 0 "
            "to keep processed files"
        )


@dataclass(frozen=True)
class RetentionPolicy:
    """Days before objects expire; 0 means never."""

    processed_days: int = 30
    quarantine_days: int = 90
    backups_days: int = 90
    noncurrent_days: int = 30
    abort_multipart_days: int = 7
    refresh_days: int = DEFAULT_REFRESH_DAYS

    def __post_init__(self) -> None:
        check_processed_retention(self.processed_days, self.refresh_days)


def _expire(rule_id: str, prefix: str, days: int) -> dict[str, Any]:
    return {
        "ID": f"{RULE_PREFIX}{rule_id}",
        "Filter": {"Prefix": prefix},
        "Status": "Enabled",
        "Expiration": {"Days": days},
    }


def lifecycle_rules(policy: RetentionPolicy, prefix: str = "") -> list[dict[str, Any]]:
    """The rules for a lake under `prefix` (an S3Bucket block's bucket_folder)."""
    base = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
    rules = []
    for name, folder, days in (
        ("processed", "processed/", policy.processed_days),
        ("quarantine", "quarantine/", policy.quarantine_days),
        ("backups", "backups/", policy.backups_days),
    ):
        if days > 0:
            rules.append(_expire(f"expire-{name}", base + folder, days))
    housekeeping: dict[str, Any] = {
        "ID": f"{RULE_PREFIX}noncurrent-and-uploads",
        "Filter": {"Prefix": base},
        "Status": "Enabled",
        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": policy.abort_multipart_days},
    }
    if policy.noncurrent_days > 0:
        housekeeping["NoncurrentVersionExpiration"] = {"NoncurrentDays": policy.noncurrent_days}
    rules.append(housekeeping)
    return rules


def _other_rules(client: Any, bucket: str) -> list[dict[str, Any]]:
    try:
        rules = client.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") == "NoSuchLifecycleConfiguration":
            return []
        raise
    return [r for r in rules if not str(r.get("ID", "")).startswith(RULE_PREFIX)]


def setup_lake_bucket(
    client: Any, bucket: str, policy: RetentionPolicy, prefix: str = ""
) -> list[dict[str, Any]]:
    """Enable versioning and write the lifecycle rules (ours replaced, others kept). Returns
    the rules now on the bucket."""
    client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    rules = _other_rules(client, bucket) + lifecycle_rules(policy, prefix)
    client.put_bucket_lifecycle_configuration(
        Bucket=bucket, LifecycleConfiguration={"Rules": rules}
    )
    return rules


def main(argv: list[str] | None = None, client: Any = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tasks.lake.setup",
        description="Enable S3 versioning and the lake's lifecycle rules (raw kept; processed, "
        "quarantine and backups expire; noncurrent versions expire).",
    )
    parser.add_argument("--bucket", required=True)
    parser.add_argument("--prefix", default="", help="the lake's folder in the bucket")
    parser.add_argument("--processed-days", type=int, default=30)
    parser.add_argument(
        "--refresh-days",
        type=int,
        default=DEFAULT_REFRESH_DAYS,
        help="the longest refresh_max_age of the deployments, in days (daily-refresh: 7)",
    )
    parser.add_argument("--quarantine-days", type=int, default=90)
    parser.add_argument("--backups-days", type=int, default=90, help="0 keeps backups")
    parser.add_argument("--noncurrent-days", type=int, default=30)
    parser.add_argument("--endpoint-url", help="a non-AWS S3 (MinIO, a test server)")
    parser.add_argument("--region")
    args = parser.parse_args(argv)
    days = (args.processed_days, args.quarantine_days, args.backups_days, args.noncurrent_days)
    if min(days) < 0:
        parser.error("days must be 0 (never) or more")
    try:
        policy = RetentionPolicy(*days, refresh_days=args.refresh_days)
    except ValueError as exc:
        parser.exit(2, f"error: {exc}\n")
    if client is None:
        client = boto3.client("s3", endpoint_url=args.endpoint_url, region_name=args.region)
    try:
        rules = setup_lake_bucket(client, args.bucket, policy, args.prefix)
    except ClientError as error:
        print(f"error: s3://{args.bucket}: {error}", file=sys.stderr)
        return 1
    print(f"s3://{args.bucket}: versioning Enabled")
    for rule in rules:
        print(f"  rule {rule['ID']}: prefix {rule['Filter'].get('Prefix', '')!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
