"""The run configuration refuses combinations that cannot work, before a run starts, with a
message that says what to set."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest
from helpers import OUT_OF_RANGE
from pydantic import ValidationError

from tasks import settings
from tasks.config import ALLOWED_ROOTS_ENV, ConfigOverrides, PipelineConfig


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


IN_RANGE = [
    ("overlap", "PT0S"),
    ("overlap", "P7D"),
    ("refresh_max_age", "PT0S"),
    ("refresh_max_age", "P30D"),
    ("reddit_rate_limit_wait", "PT0.5S"),
    ("reddit_rate_limit_wait", "PT1H"),
    ("freshness_max_age", "01:00:00"),
    ("state_lock_wait", "PT20M"),
    ("chunk_bytes", 2**20),
    ("chunk_bytes", 2**30),
    ("slowdown_factor", 100.0),
    ("slowdown_history", 3),
]


def _schema_errors(parameters: dict) -> list[str]:
    """What the Prefect server answers for these run parameters: the flow's JSON schema,
    validated as `enforce_parameter_schema` has the server do it when a run is created."""
    from prefect.utilities.schema_tools.validation import ValidationError as SchemaError
    from prefect.utilities.schema_tools.validation import validate

    from flows.main import reddit_pipeline

    try:
        validate(parameters, reddit_pipeline.parameters.model_dump(), raise_on_error=True)
    except SchemaError as exc:
        return [str(exc)]
    return []


@pytest.mark.parametrize(("field", "value", "in_schema"), OUT_OF_RANGE)
def test_an_out_of_range_duration_or_size_is_refused_by_the_config_and_the_schema(
    field: str, value: object, in_schema: bool
) -> None:
    with pytest.raises(ValidationError, match=field):
        PipelineConfig.model_validate({field: value})
    with pytest.raises(ValidationError, match=field):
        ConfigOverrides.model_validate({field: value})
    for parameter in ("config", "overrides"):
        assert bool(_schema_errors({parameter: {field: value}})) == in_schema, parameter


@pytest.mark.parametrize(("field", "value"), IN_RANGE)
def test_durations_and_sizes_at_their_bounds_are_accepted_by_the_config_and_the_schema(
    field: str, value: object
) -> None:
    PipelineConfig.model_validate({field: value})
    assert _schema_errors({"config": {field: value}, "overrides": {field: value}}) == []


def test_overrides_change_only_the_fields_they_name() -> None:
    deployment = PipelineConfig.model_validate(
        {
            "source": "api",
            "subreddits": ["python"],
            "reddit_credentials_block": "reddit-credentials",
            "reddit_rate_limit": "reddit-api",
            "refresh_max_age": "PT0S",
        }
    )
    run = deployment.with_overrides(
        ConfigOverrides.model_validate({"subreddits": ["r/Rust", "go"], "overlap": "PT2H"})
    )
    assert run.subreddits == ["go", "rust"]
    assert run.overlap == timedelta(hours=2)
    assert (run.reddit_credentials_block, run.reddit_rate_limit, run.refresh_max_age) == (
        "reddit-credentials",
        "reddit-api",
        timedelta(0),
    )
    assert deployment.with_overrides(None) is deployment


def test_an_override_is_checked_with_the_fields_it_keeps() -> None:
    deployment = PipelineConfig(source="api", subreddits=["python"])
    with pytest.raises(ValidationError, match="source 'api' needs at least one subreddit"):
        deployment.with_overrides(ConfigOverrides(subreddits=[]))


def test_an_unknown_override_is_refused_with_the_names_that_exist() -> None:
    with pytest.raises(ValidationError, match=r"no config field \(subreddit\); the fields are: "):
        ConfigOverrides.model_validate({"subreddit": ["python"]})
    errors = _schema_errors({"overrides": {"subreddit": ["python"]}})
    assert any("'subreddit' is not one of" in e and "'subreddits'" in e for e in errors), errors


@pytest.fixture
def roots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    monkeypatch.setenv(ALLOWED_ROOTS_ENV, f"{allowed}{os.pathsep}data")
    return allowed


@pytest.mark.parametrize("field", ["lake_dir", "warehouse_path", "state_path"])
def test_a_path_outside_the_allowed_roots_is_refused_naming_the_roots(
    roots: Path, tmp_path: Path, field: str
) -> None:
    with pytest.raises(ValidationError, match=f"{field} '{tmp_path}/elsewhere' is outside") as info:
        PipelineConfig.model_validate({field: str(tmp_path / "elsewhere")})
    assert str(roots) in str(info.value) and ALLOWED_ROOTS_ENV in str(info.value)
    # A relative path climbing out of the project, and one through a link, are outside too.
    with pytest.raises(ValidationError, match="is outside"):
        PipelineConfig.model_validate({field: "../../etc/x"})
    (roots / "link").symlink_to(tmp_path)
    with pytest.raises(ValidationError, match="is outside"):
        PipelineConfig.model_validate({field: str(roots / "link" / "x")})
    assert PipelineConfig.model_validate({field: str(roots / "x")})


def test_dump_paths_must_lie_in_the_allowed_roots_and_relative_roots_are_the_projects(
    roots: Path,
) -> None:
    sample = sorted(settings.SAMPLE_DIR.glob("*.zst"))
    assert PipelineConfig(source="dump", dump_paths=sample).dump_paths == sample
    with pytest.raises(ValidationError, match="dump_paths '/etc/passwd' is outside"):
        PipelineConfig(source="dump", dump_paths=[*sample, Path("/etc/passwd")])


def test_the_default_paths_are_allowed_and_no_roots_means_no_restriction(
    roots: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The defaults live in the project's .local, which these roots leave out.
    assert PipelineConfig(source="sample").lake_dir == settings.DEFAULT_LAKE_DIR
    monkeypatch.delenv(ALLOWED_ROOTS_ENV)
    assert PipelineConfig(lake_dir=tmp_path / "anywhere").lake_dir == tmp_path / "anywhere"


def test_maintenance_deletes_nothing_outside_the_allowed_roots(roots: Path, tmp_path: Path) -> None:
    """The maintenance deployment prunes `lake_dir`'s quarantine: a parameter pointing it
    elsewhere is refused before any file is touched."""
    from flows.maintenance import reddit_maintenance

    elsewhere = tmp_path / "elsewhere"
    old = elsewhere / settings.QUARANTINE_PREFIX / "old.ndjson"
    old.parent.mkdir(parents=True)
    old.write_text("{}\n")
    os.utime(old, (0, 0))
    with pytest.raises(ValueError, match=f"lake_dir '{elsewhere}' is outside"):
        reddit_maintenance.fn(
            warehouse_path=roots / "w.duckdb", state_path=roots / "s.duckdb", lake_dir=elsewhere
        )
    assert old.exists()
