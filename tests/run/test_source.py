"""Which source a run reads, from its config and the environment."""

from __future__ import annotations

from pathlib import Path

import pytest
from fake_reddit import USER_AGENT

from tasks.config import PipelineConfig
from tasks.run import resolve_source

CREDENTIALS = {
    "REDDIT_CLIENT_ID": "an-id",
    "REDDIT_CLIENT_SECRET": "a-secret",
    "REDDIT_USER_AGENT": USER_AGENT,
}


@pytest.fixture
def no_credentials(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in (*CREDENTIALS, "REDDIT_USERNAME", "REDDIT_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_auto_reads_the_sample_without_credentials(no_credentials: pytest.MonkeyPatch) -> None:
    source = resolve_source(PipelineConfig(subreddits=["python"]))
    assert (source.name, source.auth) == ("sample", None)
    assert "no Reddit credentials configured" in source.reason


def test_auto_reads_the_api_with_credentials_and_subreddits(
    no_credentials: pytest.MonkeyPatch,
) -> None:
    for name, value in CREDENTIALS.items():
        no_credentials.setenv(name, value)
    source = resolve_source(PipelineConfig(subreddits=["python"]))
    assert source.name == "api" and source.auth is not None
    assert source.auth.client_secret.get_secret_value() == "a-secret"
    assert "a-secret" not in source.reason and "environment variables" in source.reason
    without = resolve_source(PipelineConfig())
    assert without.name == "sample" and "no --subreddit given" in without.reason


def test_the_api_source_without_credentials_says_what_to_set(
    no_credentials: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(ValueError, match="REDDIT_CLIENT_ID, REDDIT_CLIENT_SECRET"):
        resolve_source(PipelineConfig(source="api", subreddits=["python"]))


def test_half_the_credentials_name_the_missing_variable(
    no_credentials: pytest.MonkeyPatch,
) -> None:
    no_credentials.setenv("REDDIT_CLIENT_ID", "an-id")
    with pytest.raises(ValueError, match="REDDIT_CLIENT_SECRET is not set"):
        resolve_source(PipelineConfig(subreddits=["python"]))


def test_a_named_source_is_taken_as_given(
    no_credentials: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name, value in CREDENTIALS.items():
        no_credentials.setenv(name, value)
    assert resolve_source(PipelineConfig(source="sample", subreddits=["python"])).name == "sample"
