"""The S3 lake against a moto server: the LocalLake contract, encryption on every write,
multipart uploads, and pyarrow reading the lake through the same credentials and endpoint."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from aws_fixtures import CREDENTIALS, REGION, moto_server  # noqa: F401
from prefect_aws import AwsCredentials, S3Bucket
from prefect_aws.client_parameters import AwsClientParameters

from tasks.lake.local import LocalLake
from tasks.lake.s3 import MIB, S3Lake, S3LakeSettings


@pytest.fixture
def s3(moto_server: str) -> object:  # noqa: F811
    return boto3.client("s3", endpoint_url=moto_server, region_name=REGION, **CREDENTIALS)


@pytest.fixture
def bucket(s3: object) -> Iterator[str]:
    """A fresh bucket per test, emptied and removed afterwards."""
    name = f"lake-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    yield name
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=name):
        for item in page.get("Contents", []):
            s3.delete_object(Bucket=name, Key=item["Key"])
    s3.delete_bucket(Bucket=name)


def make_lake(endpoint: str, bucket: str, prefix: str = "team/lake", **settings: object) -> S3Lake:
    return S3Lake.from_params(
        bucket,
        prefix,
        endpoint_url=endpoint,
        region_name=REGION,
        credentials=CREDENTIALS,
        settings=S3LakeSettings(**settings),
    )


def test_round_trip_matches_the_local_lake(moto_server: str, bucket: str, tmp_path: Path) -> None:  # noqa: F811
    lake = make_lake(moto_server, bucket)
    local = LocalLake(tmp_path / "lake")
    keys = [
        "raw/reddit/posts/subreddit=python/dt=2024-03-01/b1.ndjson.gz",
        "raw/reddit/posts/subreddit=python/dt=2024-03-02/b1.ndjson.gz",
        "raw/reddit/posts2/other.ndjson.gz",
        "processed/reddit/posts/dt=2024-03-01/b1.parquet",
    ]
    for index, key in enumerate(keys):
        lake.put_bytes(key, f"data {index}".encode())
        local.put_bytes(key, f"data {index}".encode())

    for prefix in ["raw/reddit/posts", "raw/reddit/posts/", "raw", "", "nothing", keys[0]]:
        assert lake.list_keys(prefix) == local.list_keys(prefix), prefix
    for prefix in ["raw/reddit/posts", "raw/reddit/", "raw/reddit/posts/subreddit=python", "no"]:
        assert lake.list_folders(prefix) == local.list_folders(prefix), prefix
    assert lake.list_folders("raw/reddit/posts/") == ["raw/reddit/posts/subreddit=python/"]
    assert lake.get_bytes(keys[1]) == b"data 1"
    assert lake.local_path(keys[0]) is None
    assert lake.describe(keys[0]) == f"s3://{bucket}/team/lake/{keys[0]}"
    with pytest.raises(FileNotFoundError):
        lake.get_bytes("raw/missing.ndjson.gz")

    assert lake.delete_prefix("raw/reddit/posts") == 2
    assert lake.list_keys("raw") == ["raw/reddit/posts2/other.ndjson.gz"]
    # the prefix inside the bucket is really there
    listed = boto3.client(
        "s3", endpoint_url=moto_server, region_name=REGION, **CREDENTIALS
    ).list_objects_v2(Bucket=bucket)
    assert all(item["Key"].startswith("team/lake/") for item in listed["Contents"])


def test_every_write_is_encrypted_with_sse_s3(
    moto_server: str,  # noqa: F811
    bucket: str,
    s3: object,
    tmp_path: Path,
) -> None:
    lake = make_lake(moto_server, bucket)
    lake.put_bytes("a/small.bin", b"x")
    source = tmp_path / "file.bin"
    source.write_bytes(b"y" * 10)
    lake.put_file("a/file.bin", source)
    assert not source.exists()  # put_file moves, like LocalLake
    for key in ["a/small.bin", "a/file.bin"]:
        head = s3.head_object(Bucket=bucket, Key=f"team/lake/{key}")
        assert head["ServerSideEncryption"] == "AES256"


def test_large_file_goes_up_in_parts_with_kms_encryption(
    moto_server: str,  # noqa: F811
    bucket: str,
    s3: object,
    tmp_path: Path,
) -> None:
    key_id = "arn:aws:kms:us-east-1:123456789012:key/11111111-2222-3333-4444-555555555555"
    lake = make_lake(
        moto_server,
        bucket,
        sse="aws:kms",
        kms_key_id=key_id,
        multipart_threshold=5 * MIB,
        multipart_chunksize=5 * MIB,
    )
    source = tmp_path / "big.bin"
    payload = bytes(range(256)) * (11 * MIB // 256)
    source.write_bytes(payload)
    lake.put_file("big/big.bin", source)

    head = s3.head_object(Bucket=bucket, Key="team/lake/big/big.bin")
    assert head["ETag"].strip('"').endswith("-3")  # 11 MiB in 5 MiB parts
    assert head["ServerSideEncryption"] == "aws:kms"
    assert head["SSEKMSKeyId"] == key_id
    assert lake.get_bytes("big/big.bin") == payload


def test_kms_without_a_key_is_refused_at_construction(moto_server: str, bucket: str) -> None:  # noqa: F811
    with pytest.raises(ValueError, match="kms_key_id"):
        make_lake(moto_server, bucket, sse="aws:kms")


def test_pyarrow_reads_parquet_from_the_lake(moto_server: str, bucket: str, tmp_path: Path) -> None:  # noqa: F811
    lake = make_lake(moto_server, bucket)
    table = pa.table({"id": ["a", "b"], "score": pa.array([1, None], pa.int64())})
    local = tmp_path / "part.parquet"
    pq.write_table(table, local)
    lake.put_file("processed/reddit/posts/dt=2024-03-01/b1.parquet", local)

    filesystem, base = lake.arrow_filesystem()
    assert base == f"{bucket}/team/lake"
    back = pq.read_table(
        f"{base}/processed/reddit/posts/dt=2024-03-01/b1.parquet", filesystem=filesystem
    )
    assert back.equals(table)
    dataset = pq.ParquetDataset(f"{base}/processed/reddit/posts", filesystem=filesystem)
    assert dataset.read().num_rows == 2


def test_from_block_uses_the_blocks_credentials_endpoint_and_folder(
    moto_server: str,  # noqa: F811
    bucket: str,
    s3: object,
) -> None:
    block = S3Bucket(
        bucket_name=bucket,
        bucket_folder="from-block",
        credentials=AwsCredentials(
            **CREDENTIALS,
            region_name=REGION,
            aws_client_parameters=AwsClientParameters(endpoint_url=moto_server),
        ),
    )
    lake = S3Lake.from_block(block)
    lake.put_bytes("k/v.txt", b"hello")
    assert s3.get_object(Bucket=bucket, Key="from-block/k/v.txt")["Body"].read() == b"hello"
    assert lake.root_uri == f"s3://{bucket}/from-block"
    filesystem, base = lake.arrow_filesystem()
    with filesystem.open_input_stream(f"{base}/k/v.txt") as stream:
        assert stream.read() == b"hello"
