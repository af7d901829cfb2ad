"""The run configuration refuses combinations that cannot work, before a run starts, with a
message that says what to set."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tasks.config import PipelineConfig


@pytest.mark.parametrize(
    ("engines", "message"),
    [
        (
            {"model_engine": "athena", "athena_block": "athena"},
            "model_engine 'athena' needs lake 's3'",
        ),
        (
            {"process_engine": "glue", "glue_job_name": "job"},
            "process_engine 'glue' needs lake 's3'",
        ),
    ],
)
def test_a_cloud_engine_with_a_local_lake_is_refused(engines: dict[str, str], message: str) -> None:
    with pytest.raises(ValidationError, match=message) as info:
        PipelineConfig(lake="local", **engines)
    assert "s3_bucket_block" in str(info.value)  # says what to set


def test_athena_without_its_block_is_refused() -> None:
    with pytest.raises(ValidationError, match="needs athena_block, an AthenaEngine block"):
        PipelineConfig(lake="s3", s3_bucket_block="lake", model_engine="athena")


def test_the_cloud_engines_on_the_s3_lake_are_accepted() -> None:
    config = PipelineConfig(
        lake="s3",
        s3_bucket_block="lake",
        process_engine="glue",
        glue_job_name="reddit-process",
        model_engine="athena",
        athena_block="athena",
        warehouse="redshift",
        warehouse_block="redshift",
    )
    assert (config.process_engine, config.model_engine) == ("glue", "athena")
