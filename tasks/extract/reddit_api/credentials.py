"""Who we are to Reddit: OAuth client credentials and a user agent Reddit will not throttle."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from tasks.extract.reddit_api.settings import ENV_VARS

# Reddit's API rules: "<platform>:<app ID>:<version string> (by /u/<reddit username>)".
USER_AGENT_PATTERN = re.compile(r"^[^:\s]+:[^:\s]+:[^:\s]+ \(by /u/[A-Za-z0-9_-]{3,20}\)$")
# Reddit drastically limits default or copied user agents; refuse them before the first request.
PLACEHOLDER_MARKERS = (
    "python-requests",
    "python-urllib",
    "changeme",
    "change_me",
    "example",
    "your_username",
    "yourusername",
    "<",
)
USER_AGENT_HINT = (
    "'<platform>:<app id>:<version> (by /u/<name>)', e.g. 'linux:redditpipe:0.1.0 (by /u/jane_doe)'"
)


def check_user_agent(user_agent: str) -> str:
    """Refuse an empty, default or malformed user agent: Reddit throttles or bans those."""
    value = user_agent.strip()
    if not value:
        raise ValueError(f"the Reddit user agent is empty; set one of the form {USER_AGENT_HINT}")
    lowered = value.lower()
    if lowered in {"praw", "asyncpraw"} or any(m in lowered for m in PLACEHOLDER_MARKERS):
        raise ValueError(
            f"the Reddit user agent {value!r} is a default or placeholder; Reddit throttles those. "
            f"Use your own, of the form {USER_AGENT_HINT}"
        )
    if not USER_AGENT_PATTERN.match(value):
        raise ValueError(
            f"the Reddit user agent {value!r} is not of the form Reddit requires: {USER_AGENT_HINT}"
        )
    return value


class RedditAuth(BaseModel):
    """Credentials as the extract code uses them, whichever place they were read from."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    client_id: str = Field(min_length=1, description="OAuth client id of the Reddit app.")
    client_secret: SecretStr = Field(description="OAuth client secret of the Reddit app.")
    user_agent: str = Field(description="'<platform>:<app id>:<version> (by /u/<name>)'.")
    username: str | None = Field(None, description="Reddit account, for 'script' apps only.")
    password: SecretStr | None = Field(None, description="Its password, for 'script' apps only.")
    source: str = Field(
        "RedditAuth",
        description="Where these came from, named in error messages so the fix is obvious.",
    )

    @field_validator("user_agent")
    @classmethod
    def _check_user_agent(cls, value: str) -> str:
        return check_user_agent(value)

    @model_validator(mode="after")
    def _username_needs_password(self) -> RedditAuth:
        if bool(self.username) != bool(self.password and self.password.get_secret_value()):
            raise ValueError(
                f"{self.source}: username and password go together (script apps); set both or "
                "neither"
            )
        return self


def credentials_from_env(environ: Mapping[str, str] | None = None) -> RedditAuth | None:
    """Read REDDIT_* variables; None when none is set, so the caller can fall back to a block."""
    env = os.environ if environ is None else environ
    values = {field: env.get(var, "").strip() for field, var in ENV_VARS.items()}
    if not any(values.values()):
        return None
    for field in ("client_id", "client_secret", "user_agent"):
        if not values[field]:
            raise ValueError(
                f"{ENV_VARS[field]} is not set; the Reddit API needs REDDIT_CLIENT_ID, "
                "REDDIT_CLIENT_SECRET and REDDIT_USER_AGENT (or a RedditCredentials block)"
            )
    names = ", ".join(var for field, var in ENV_VARS.items() if values[field])
    try:
        return RedditAuth(
            client_id=values["client_id"],
            client_secret=SecretStr(values["client_secret"]),
            user_agent=values["user_agent"],
            username=values["username"] or None,
            password=SecretStr(values["password"]) if values["password"] else None,
            source=f"environment variables ({names})",
        )
    except ValidationError as exc:
        raise ValueError(one_line(exc, ENV_VARS)) from None


def one_line(error: ValidationError, names: Mapping[str, str]) -> str:
    """A pydantic error as one line naming what the user sets (REDDIT_USER_AGENT, a block's
    field) rather than the model's field; pydantic's own takes four lines and names
    `user_agent`. Inputs are left out: they may be secrets."""
    parts = []
    for item in error.errors():
        field = str(item["loc"][0]) if item["loc"] else ""
        message = str(item["msg"]).removeprefix("Value error, ")
        parts.append(f"{names.get(field, field)}: {message}" if field else message)
    return "; ".join(parts)
