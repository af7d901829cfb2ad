"""Reddit OAuth credentials as a Prefect block, so deployments never carry secrets inline."""

from __future__ import annotations

from prefect.blocks.core import Block
from pydantic import Field, SecretStr, field_validator

from tasks.extract.reddit_api import RedditAuth, check_user_agent


class RedditCredentials(Block):
    """Client id and secret of a Reddit app, its user agent, and for script apps an account."""

    _block_type_name = "Reddit Credentials"
    _description = (
        "OAuth credentials of a Reddit app (https://www.reddit.com/prefs/apps) for the "
        "reddit_pipeline API source."
    )

    client_id: str = Field(description="The app's client id (under its name on the apps page).")
    client_secret: SecretStr = Field(description="The app's secret.")
    user_agent: str = Field(
        description="'<platform>:<app id>:<version> (by /u/<name>)'; Reddit throttles defaults."
    )
    username: str | None = Field(None, description="Reddit account, for 'script' apps only.")
    password: SecretStr | None = Field(None, description="The account's password (script apps).")

    @field_validator("user_agent")
    @classmethod
    def _check_user_agent(cls, value: str) -> str:
        return check_user_agent(value)

    def to_auth(self) -> RedditAuth:
        """The plain model the extract code takes; errors will name this block."""
        name = getattr(self, "_block_document_name", None) or "(unsaved)"
        return RedditAuth(
            client_id=self.client_id,
            client_secret=self.client_secret,
            user_agent=self.user_agent,
            username=self.username,
            password=self.password,
            source=f"Prefect block RedditCredentials '{name}'",
        )
