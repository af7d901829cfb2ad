"""The lake in an S3 bucket: the same methods and keys as tasks.lake.LocalLake, so every stage
runs unchanged on AWS (or MinIO) with a prefect-aws S3Bucket block in place of a folder.

Every write carries the server-side encryption setting (SSE-S3 or SSE-KMS), so objects are
encrypted even where the bucket's default encryption is missing or different; large objects go
up in parallel multipart uploads (boto3's managed transfer). An S3 PUT is atomic, so readers see
the old object or the new one, as with LocalLake's rename.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlparse

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

if TYPE_CHECKING:
    import pyarrow.fs
    from prefect_aws import S3Bucket

MIB = 1024 * 1024


@dataclass(frozen=True)
class S3LakeSettings:
    """How the lake writes. Defaults: SSE-S3, multipart from 64 MiB in 16 MiB parts (S3 needs
    parts of at least 5 MiB; 10,000 parts at most, so 16 MiB parts reach 156 GiB)."""

    sse: Literal["AES256", "aws:kms", "none"] = "AES256"
    kms_key_id: str | None = None
    multipart_threshold: int = 64 * MIB
    multipart_chunksize: int = 16 * MIB
    max_concurrency: int = 8

    def extra_args(self) -> dict[str, str]:
        """The encryption headers of every PUT, multipart upload and copy."""
        if self.sse == "none":
            return {}
        if self.sse == "aws:kms":
            if not self.kms_key_id:
                raise ValueError("sse='aws:kms' needs kms_key_id (a key id, ARN or alias)")
            return {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": self.kms_key_id}
        return {"ServerSideEncryption": self.sse}

    def transfer_config(self) -> TransferConfig:
        return TransferConfig(
            multipart_threshold=self.multipart_threshold,
            multipart_chunksize=self.multipart_chunksize,
            max_concurrency=self.max_concurrency,
        )


class S3Lake:
    """A lake under s3://{bucket}/{prefix}/. Build it from an S3Bucket block (`from_block`) in
    flows, or from a boto3 session and an endpoint in tests (`from_params`)."""

    def __init__(
        self,
        session: boto3.Session,
        bucket: str,
        prefix: str = "",
        client_params: dict[str, Any] | None = None,
        settings: S3LakeSettings | None = None,
    ) -> None:
        self.session = session
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.client_params = dict(client_params or {})
        self.settings = settings or S3LakeSettings()
        self.settings.extra_args()  # a bad encryption setting fails here, not at the first write
        self.client = session.client("s3", **self.client_params)

    @classmethod
    def from_block(cls, block: S3Bucket, settings: S3LakeSettings | None = None) -> S3Lake:
        """The bucket, folder, credentials and client parameters (endpoint_url for MinIO or a
        local S3, region, verify) of a prefect-aws S3Bucket block."""
        credentials = block.credentials
        params = credentials.aws_client_parameters.get_params_override()
        region = getattr(credentials, "region_name", None)
        if region:
            params["region_name"] = region
        return cls(
            credentials.get_boto3_session(),
            block.bucket_name,
            block.bucket_folder or "",
            params,
            settings,
        )

    @classmethod
    def from_params(
        cls,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region_name: str | None = None,
        credentials: dict[str, str] | None = None,
        settings: S3LakeSettings | None = None,
    ) -> S3Lake:
        """Plain boto3 parameters; `credentials` holds aws_access_key_id, aws_secret_access_key
        and optionally aws_session_token."""
        session = boto3.Session(region_name=region_name, **(credentials or {}))
        params: dict[str, Any] = {}
        if endpoint_url:
            params["endpoint_url"] = endpoint_url
        if region_name:
            params["region_name"] = region_name
        return cls(session, bucket, prefix, params, settings)

    # ------------------------------------------------------------------ the Lake protocol

    def _key(self, key: str) -> str:
        if key.startswith("/") or ".." in key.split("/"):
            raise ValueError(f"lake key must be relative and stay inside the lake: {key!r}")
        return f"{self.prefix}/{key}" if self.prefix else key

    def put_bytes(self, key: str, data: bytes) -> None:
        self.client.upload_fileobj(
            io.BytesIO(data),
            self.bucket,
            self._key(key),
            ExtraArgs=self.settings.extra_args(),
            Config=self.settings.transfer_config(),
        )

    def put_file(self, key: str, path: Path) -> None:
        """Uploads, then removes the local file: LocalLake moves it, and callers rely only on
        the file being in the lake afterwards."""
        self.client.upload_file(
            str(path),
            self.bucket,
            self._key(key),
            ExtraArgs=self.settings.extra_args(),
            Config=self.settings.transfer_config(),
        )
        Path(path).unlink(missing_ok=True)

    def get_bytes(self, key: str) -> bytes:
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise FileNotFoundError(self.describe(key)) from error
            raise
        return response["Body"].read()

    def list_keys(self, prefix: str) -> list[str]:
        """Like LocalLake: the key itself if it is an object, else every key below it as a
        folder (raw/reddit/posts does not match raw/reddit/posts2/...)."""
        full = self._key(prefix.rstrip("/")) if prefix else self.prefix
        folder = f"{full}/" if full else ""
        strip = len(self.prefix) + 1 if self.prefix else 0
        keys = []
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=full
        )
        for page in pages:
            for item in page.get("Contents", []):
                name = item["Key"]
                if (name == full or name.startswith(folder)) and not name.endswith("/"):
                    keys.append(name[strip:])
        return sorted(keys)

    def list_folders(self, prefix: str) -> list[str]:
        full = self._key(prefix.rstrip("/")) if prefix else self.prefix
        folder = f"{full}/" if full else ""
        strip = len(self.prefix) + 1 if self.prefix else 0
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=folder, Delimiter="/"
        )
        return sorted(
            common["Prefix"][strip:] for page in pages for common in page.get("CommonPrefixes", [])
        )

    def delete_prefix(self, prefix: str) -> int:
        keys = self.list_keys(prefix)
        for start in range(0, len(keys), 1000):  # DeleteObjects takes 1000 keys at most
            batch = [{"Key": self._key(k)} for k in keys[start : start + 1000]]
            response = self.client.delete_objects(
                Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True}
            )
            if response.get("Errors"):
                first = response["Errors"][0]
                raise OSError(
                    f"S3 refused to delete {len(response['Errors'])} object(s) under "
                    f"{self.describe(prefix)}: {first.get('Key')}: {first.get('Message')}"
                )
        return len(keys)

    def local_path(self, key: str) -> None:
        return None

    def describe(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"

    # ------------------------------------------------------------------------ beyond it

    @property
    def root_uri(self) -> str:
        """s3://bucket/prefix: the lake root other engines (Glue, Athena) are given."""
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    def arrow_filesystem(self) -> tuple[pyarrow.fs.S3FileSystem, str]:
        """A pyarrow S3FileSystem with this lake's credentials, region and endpoint, and the
        base path (bucket/prefix) that lake keys are relative to:

            fs, base = lake.arrow_filesystem()
            pyarrow.parquet.read_table(f"{base}/{key}", filesystem=fs)

        Credentials are frozen at this call: temporary ones (an assumed role) expire with
        their session. Writes through it carry no SSE header; the bucket's default
        encryption applies (docs/aws.md sets it)."""
        import pyarrow.fs

        options: dict[str, Any] = {}
        credentials = self.session.get_credentials()
        if credentials is not None:
            frozen = credentials.get_frozen_credentials()
            options.update(
                access_key=frozen.access_key,
                secret_key=frozen.secret_key,
                session_token=frozen.token,
            )
        region = self.client_params.get("region_name") or self.client.meta.region_name
        if region:
            options["region"] = region
        endpoint = self.client_params.get("endpoint_url")
        if endpoint:
            parsed = urlparse(endpoint)
            options["endpoint_override"] = parsed.netloc or parsed.path
            options["scheme"] = parsed.scheme or "https"
        filesystem = pyarrow.fs.S3FileSystem(**options)
        base = f"{self.bucket}/{self.prefix}" if self.prefix else self.bucket
        return filesystem, base
