"""Turning a PipelineConfig into what a run uses: the local defaults, the check engine's
choice, and the settings that fail before anything is extracted."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import PG_ADMIN_DSN
from pydantic import SecretStr

from tasks import settings
from tasks.config import PipelineConfig
from tasks.lake import LocalLake
from tasks.quality import CheckSourceError
from tasks.run import build_engines, open_state
from tasks.run.engines import build_check_engine, destination_of, resolve_check_engine


def local_config(tmp_path: Path, **fields: object) -> PipelineConfig:
    return PipelineConfig(
        lake_dir=tmp_path / "lake",
        warehouse_path=tmp_path / "warehouse.duckdb",
        state_path=tmp_path / "state.duckdb",
        **fields,
    )


def test_the_local_defaults_are_a_folder_duckdb_and_checks_over_the_lake(tmp_path: Path) -> None:
    engines = build_engines(local_config(tmp_path))
    assert isinstance(engines.lake, LocalLake)
    assert engines.process_while_staging
    assert engines.check is not None and engines.check.name == "duckdb"
    assert engines.description["process"] == engines.description["model"] == "duckdb"
    # Resolved: `warehouse.duckdb` reached from two folders is two warehouses.
    assert engines.destination == f"duckdb:{(tmp_path / 'warehouse.duckdb').resolve()}"
    assert engines.held("posts", ["t3_abc"]) == set()  # no file yet: holds nothing, makes none
    assert not (tmp_path / "warehouse.duckdb").exists()


def test_auto_checks_where_the_models_ran(tmp_path: Path) -> None:
    assert resolve_check_engine(local_config(tmp_path)) == "duckdb"
    cloud = {"lake": "s3", "s3_bucket_block": "lake", "model_engine": "athena", "athena_block": "a"}
    assert resolve_check_engine(PipelineConfig(**cloud)) == "athena"
    assert resolve_check_engine(PipelineConfig(**cloud, check_engine="duckdb")) == "duckdb"


def test_a_postgres_check_engine_refuses_the_warehouses_own_schema(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(settings.WAREHOUSE_SCHEMA_ENV, raising=False)
    config = local_config(
        tmp_path,
        check_engine="postgres",
        warehouse_dsn=SecretStr(PG_ADMIN_DSN),
        check_schema=settings.WAREHOUSE_SCHEMA,
    )
    with pytest.raises(CheckSourceError, match="warehouse's own schema"):
        build_check_engine(config, LocalLake(tmp_path / "lake"))


def test_a_postgres_check_engine_without_a_warehouse_says_what_to_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REDDIT_PIPELINE_WAREHOUSE_DSN", raising=False)
    with pytest.raises(ValueError, match=r"warehouse_block .* or warehouse_dsn"):
        build_check_engine(local_config(tmp_path, check_engine="postgres"), LocalLake(tmp_path))


def test_a_destination_names_where_never_who(tmp_path: Path) -> None:
    assert destination_of("postgres", "db.example", 5432, "reddit", "marts") == (
        "postgres:db.example:5432/reddit/marts"
    )


def test_without_a_state_dsn_the_state_is_the_local_duckdb_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REDDIT_PIPELINE_STATE_DSN", raising=False)
    store = open_state(local_config(tmp_path))
    try:
        store.ensure_schema()
        assert store.watermark_rows() == []
    finally:
        store.close()
    assert (tmp_path / "state.duckdb").exists()
