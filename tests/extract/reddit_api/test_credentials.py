"""Credentials: user agent rules, environment variables, the Prefect block, no leaked secrets."""

from __future__ import annotations

import pytest
from pydantic import SecretStr, ValidationError

from blocks.reddit import RedditCredentials
from tasks.extract.reddit_api import RedditAuth, check_user_agent, credentials_from_env

GOOD_UA = "linux:reddit-pipeline:0.1.0 (by /u/jane_doe)"
SECRET = "sUp3r-s3cret-value"


@pytest.mark.parametrize(
    "user_agent",
    [
        "",
        "   ",
        "python-requests/2.31",
        "praw",
        "changeme",
        "android:com.example.myredditapp:v1.2.3 (by /u/kemitche)",
        "<platform>:<app id>:<version> (by /u/<name>)",
        "my scraper",
        "linux:app:1.0",
        "linux:app:1.0 by jane_doe",
    ],
)
def test_default_empty_or_malformed_user_agent_is_refused(user_agent: str) -> None:
    with pytest.raises(ValueError, match="user agent"):
        check_user_agent(user_agent)


def test_user_agent_of_reddits_form_is_accepted() -> None:
    assert check_user_agent(GOOD_UA) == GOOD_UA


def test_credentials_from_env_returns_none_when_nothing_is_set() -> None:
    assert credentials_from_env({}) is None


def test_credentials_from_env_reads_every_variable() -> None:
    auth = credentials_from_env(
        {
            "REDDIT_CLIENT_ID": "abc",
            "REDDIT_CLIENT_SECRET": SECRET,
            "REDDIT_USER_AGENT": GOOD_UA,
            "REDDIT_USERNAME": "jane_doe",
            "REDDIT_PASSWORD": "pw",
        }
    )
    assert auth is not None
    assert auth.client_secret.get_secret_value() == SECRET
    assert auth.username == "jane_doe"
    assert "REDDIT_CLIENT_ID" in auth.source


def test_credentials_from_env_names_the_missing_variable() -> None:
    with pytest.raises(ValueError, match="REDDIT_CLIENT_SECRET"):
        credentials_from_env({"REDDIT_CLIENT_ID": "abc", "REDDIT_USER_AGENT": GOOD_UA})


def test_username_without_password_is_refused() -> None:
    with pytest.raises(ValidationError, match="username and password go together"):
        RedditAuth(
            client_id="abc", client_secret=SecretStr(SECRET), user_agent=GOOD_UA, username="jane"
        )


def test_secrets_never_show_in_repr_or_validation_errors() -> None:
    auth = RedditAuth(
        client_id="abc",
        client_secret=SecretStr(SECRET),
        user_agent=GOOD_UA,
        username="jane",
        password=SecretStr(SECRET + "pw"),
    )
    assert SECRET not in repr(auth) and SECRET not in str(auth)
    with pytest.raises(ValidationError) as caught:
        RedditAuth(client_id="abc", client_secret=SecretStr(SECRET), user_agent="praw")
    assert SECRET not in str(caught.value)


def test_block_converts_to_auth_that_names_the_block() -> None:
    block = RedditCredentials(client_id="abc", client_secret=SECRET, user_agent=GOOD_UA)
    auth = block.to_auth()
    assert auth.client_secret.get_secret_value() == SECRET
    assert "RedditCredentials" in auth.source
    assert SECRET not in repr(block)


def test_block_refuses_a_placeholder_user_agent() -> None:
    with pytest.raises(ValidationError, match="placeholder"):
        RedditCredentials(client_id="abc", client_secret=SECRET, user_agent="changeme")


def test_a_placeholder_user_agent_in_the_environment_is_one_line_naming_the_variable() -> None:
    env = {"REDDIT_CLIENT_ID": "abc", "REDDIT_CLIENT_SECRET": SECRET, "REDDIT_USER_AGENT": "x"}
    for user_agent in ("changeme", "python-requests/2.31"):
        with pytest.raises(ValueError) as caught:
            credentials_from_env({**env, "REDDIT_USER_AGENT": user_agent})
        message = str(caught.value)
        assert message.startswith("REDDIT_USER_AGENT: the Reddit user agent")
        assert "\n" not in message and SECRET not in message


def test_a_saved_block_with_a_placeholder_user_agent_is_one_line_naming_its_field(
    prefect_api: str,
) -> None:
    from prefect.client.orchestration import get_client

    from tasks.config import PipelineConfig
    from tasks.run.source import load_auth

    block = RedditCredentials(client_id="abc", client_secret=SECRET, user_agent=GOOD_UA)
    block.save("reddit-placeholder-ua", overwrite=True)

    async def set_placeholder() -> None:
        async with get_client() as client:
            document = await client.read_block_document_by_name(
                "reddit-placeholder-ua", "reddit-credentials"
            )
            document.data["user_agent"] = "changeme"
            await client.update_block_document(document.id, document)

    import asyncio

    asyncio.run(set_placeholder())
    with pytest.raises(ValueError) as caught:
        load_auth(PipelineConfig(reddit_credentials_block="reddit-placeholder-ua"))
    message = str(caught.value)
    assert message.startswith("RedditCredentials block 'reddit-placeholder-ua': field user_agent")
    assert "\n" not in message and SECRET not in message
