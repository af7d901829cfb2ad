"""The lake bucket setup against a moto S3 server with the real boto3: versioning on, lifecycle
rules as configured, other rules kept, and a second run changes nothing."""

from __future__ import annotations

import uuid
from typing import Any

import boto3
import pytest
from aws_fixtures import CREDENTIALS, REGION, moto_server  # noqa: F401 (fixture)

from tasks.lake.setup import RetentionPolicy, main, setup_lake_bucket


@pytest.fixture
def s3(moto_server: str) -> Any:  # noqa: F811
    return boto3.client("s3", endpoint_url=moto_server, region_name=REGION, **CREDENTIALS)


@pytest.fixture
def bucket(s3: Any) -> str:
    name = f"lake-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=name)
    return name


def _rules(s3: Any, bucket: str) -> dict[str, dict[str, Any]]:
    rules = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    return {rule["ID"]: rule for rule in rules}


def test_the_command_enables_versioning_and_expires_processed_and_quarantine(
    s3: Any,
    bucket: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(
        ["--bucket", bucket, "--processed-days", "14", "--quarantine-days", "60"],
        client=s3,
    )

    assert code == 0
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    rules = _rules(s3, bucket)
    assert rules["reddit-pipeline-expire-processed"]["Filter"] == {"Prefix": "processed/"}
    assert rules["reddit-pipeline-expire-processed"]["Expiration"] == {"Days": 14}
    assert rules["reddit-pipeline-expire-quarantine"]["Filter"] == {"Prefix": "quarantine/"}
    assert rules["reddit-pipeline-expire-quarantine"]["Expiration"] == {"Days": 60}
    assert rules["reddit-pipeline-expire-backups"]["Expiration"] == {"Days": 90}
    housekeeping = rules["reddit-pipeline-noncurrent-and-uploads"]
    assert housekeeping["NoncurrentVersionExpiration"]["NoncurrentDays"] == 30
    assert housekeeping["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 7}
    assert all(rule["Status"] == "Enabled" for rule in rules.values())
    # raw/ is kept: no rule expires anything under it.
    expiring = [r["Filter"]["Prefix"] for r in rules.values() if "Expiration" in r]
    assert not any(prefix.startswith("raw") or prefix == "" for prefix in expiring)
    assert "versioning Enabled" in capsys.readouterr().out


def test_a_second_run_keeps_foreign_rules_and_leaves_one_of_ours(s3: Any, bucket: str) -> None:
    foreign = {
        "ID": "team-logs",
        "Filter": {"Prefix": "logs/"},
        "Status": "Enabled",
        "Expiration": {"Days": 7},
    }
    s3.put_bucket_lifecycle_configuration(
        Bucket=bucket, LifecycleConfiguration={"Rules": [foreign]}
    )

    setup_lake_bucket(s3, bucket, RetentionPolicy(processed_days=15), prefix="prod")
    setup_lake_bucket(s3, bucket, RetentionPolicy(processed_days=20), prefix="prod")

    rules = _rules(s3, bucket)
    assert sorted(rules) == [
        "reddit-pipeline-expire-backups",
        "reddit-pipeline-expire-processed",
        "reddit-pipeline-expire-quarantine",
        "reddit-pipeline-noncurrent-and-uploads",
        "team-logs",
    ]
    assert rules["team-logs"]["Expiration"] == {"Days": 7}
    assert rules["reddit-pipeline-expire-processed"]["Filter"] == {"Prefix": "prod/processed/"}
    assert rules["reddit-pipeline-expire-processed"]["Expiration"] == {"Days": 20}
    assert rules["reddit-pipeline-noncurrent-and-uploads"]["Filter"] == {"Prefix": "prod/"}


def test_zero_days_keeps_a_folder_and_versions_protect_an_overwrite(s3: Any, bucket: str) -> None:
    setup_lake_bucket(s3, bucket, RetentionPolicy(backups_days=0))
    s3.put_object(Bucket=bucket, Key="raw/reddit/posts/x.ndjson.gz", Body=b"first")
    s3.put_object(Bucket=bucket, Key="raw/reddit/posts/x.ndjson.gz", Body=b"second")

    assert "reddit-pipeline-expire-backups" not in _rules(s3, bucket)
    versions = s3.list_object_versions(Bucket=bucket, Prefix="raw/")["Versions"]
    assert len(versions) == 2  # the overwritten batch is still there, as a noncurrent version


def test_the_command_reports_a_missing_bucket(s3: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--bucket", "no-such-bucket"], client=s3) == 1
    assert "s3://no-such-bucket" in capsys.readouterr().err


def test_a_processed_retention_shorter_than_the_refresh_window_is_refused(
    s3: Any, bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--bucket", bucket, "--processed-days", "3"], client=s3)

    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert "--processed-days 3 is shorter than the refresh window (7 days)" in error
    assert "at least 14" in error
    # Nothing was written: no lifecycle configuration, versioning untouched.
    assert "Status" not in s3.get_bucket_versioning(Bucket=bucket)
    with pytest.raises(ValueError, match="at least 37"):
        RetentionPolicy(processed_days=30, refresh_days=30)
    assert main(["--bucket", bucket, "--processed-days", "14"], client=s3) == 0
    assert (
        main(["--bucket", bucket, "--processed-days", "0", "--refresh-days", "30"], client=s3) == 0
    )
