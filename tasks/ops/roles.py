"""Apply the warehouse and state store roles (sql/roles/*.sql), idempotently, as an admin.

    python -m tasks.ops.roles --dsn postgresql://admin@host/db?sslmode=verify-full \
        [--schema reddit] [--state-schema reddit_state] [--grant-analyst-to alice ...]
    python -m tasks.ops.roles --dsn redshift://admin@cluster:5439/dev --loader-user etl

The admin DSN's scheme says which warehouse: `redshift://` applies redshift_roles.sql (the
loader role is granted to --loader-user, the RedshiftWarehouse block's user), anything else
postgres_roles.sql. The password may be left out of the DSN: PGPASSWORD (PostgreSQL) or
REDSHIFT_PASSWORD (Redshift) is read instead.

The pipeline connects as the loader (the warehouse block's user) and as the state role (the
state DSN's user), so a bug or a leaked credential of one reaches only its own tables; people
read the marts through the analyst role, which cannot write. The SQL lives in files so a DBA can
read and run it by hand; here only identifiers are filled in, after validation (they are
spliced into DDL, which takes no bind parameters).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from tasks import settings

SQL_DIR = settings.SQL_DIR / "roles"
MARTS = ("posts", "comments", "subreddit_daily")
_IDENTIFIER = set("abcdefghijklmnopqrstuvwxyz0123456789_")


def _identifier(value: str) -> str:
    if not value or not set(value) <= _IDENTIFIER or value[0].isdigit() or len(value) > 63:
        raise ValueError(f"expected a lower-case SQL identifier, got {value!r}")
    return value


@dataclass(frozen=True)
class Roles:
    """Role and schema names; defaults are what docs/operations.md describes."""

    loader: str = "reddit_loader"
    analyst: str = "reddit_analyst"
    state: str = "reddit_state"
    schema: str = settings.WAREHOUSE_SCHEMA
    state_schema: str = settings.STATE_SCHEMA
    marts: tuple[str, ...] = field(default=MARTS)

    def __post_init__(self) -> None:
        for name in (self.loader, self.analyst, self.state, self.schema, self.state_schema):
            _identifier(name)
        for mart in self.marts:
            _identifier(mart)
        if self.schema == self.state_schema:
            raise ValueError("the state schema must differ from the warehouse schema")


def render(file: str, roles: Roles, quoted: dict[str, str] | None = None, **extra: str) -> str:
    """The SQL file with its {placeholders} filled in: `extra` values must be plain
    identifiers; `quoted` ones are already quoted by the driver (a database name may hold any
    character)."""
    values = {
        "loader": roles.loader,
        "analyst": roles.analyst,
        "state": roles.state,
        "schema": roles.schema,
        "state_schema": roles.state_schema,
        "marts": ", ".join(f"'{m}'" for m in roles.marts),
        **{k: _identifier(v) for k, v in extra.items()},
        **(quoted or {}),
    }
    return (SQL_DIR / file).read_text().format(**values)


def apply_postgres_roles(connection: Any, roles: Roles, analysts: tuple[str, ...] = ()) -> None:
    """Run postgres_roles.sql in one transaction on an admin psycopg connection (a superuser,
    or RDS's master user), then grant the analyst role to the given users."""
    from psycopg import sql

    database = connection.execute("select current_database()").fetchone()[0]
    quoted = {"database": sql.Identifier(database).as_string(connection)}
    script = render("postgres_roles.sql", roles, quoted)
    with connection.transaction():
        connection.execute(script)  # psycopg 3 runs several statements when given no params
        for user in analysts:
            connection.execute(f"grant {roles.analyst} to {_identifier(user)}")


def _redshift_role_exists(cursor: Any, role: str) -> bool:
    cursor.execute("select 1 from svv_roles where role_name = %s", (role,))
    return cursor.fetchone() is not None


def apply_redshift_roles(
    connection: Any, roles: Roles, loader_user: str, analysts: tuple[str, ...] = ()
) -> None:
    """Create the Redshift roles when missing, run redshift_roles.sql, and grant on the marts
    that exist (a GRANT on a missing table fails, and Redshift has no DO block to test it)."""
    cursor = connection.cursor()
    for role in (roles.loader, roles.analyst):
        if not _redshift_role_exists(cursor, role):
            cursor.execute(f"create role {role}")
    script = render("redshift_roles.sql", roles, loader_user=loader_user)
    for statement in _statements(script):
        cursor.execute(statement)
    for mart in roles.marts:
        cursor.execute(
            "select 1 from svv_tables where table_schema = %s and table_name = %s",
            (roles.schema, mart),
        )
        if cursor.fetchone() is not None:
            cursor.execute(f"grant select on {roles.schema}.{mart} to role {roles.analyst}")
            cursor.execute(f"grant all on {roles.schema}.{mart} to role {roles.loader}")
    for user in analysts:
        cursor.execute(f"grant role {roles.analyst} to {_identifier(user)}")
    connection.commit()


def _statements(script: str) -> list[str]:
    """Split a file of plain statements (no DO blocks, no semicolons in strings)."""
    lines = [line for line in script.splitlines() if not line.lstrip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


def roles_file(dsn: str) -> str:
    """Which file an admin DSN gets: Redshift's for `redshift://`, else PostgreSQL's."""
    return "redshift_roles.sql" if dsn.startswith("redshift://") else "postgres_roles.sql"


def connect_redshift_admin(dsn: str) -> Any:
    """redshift_connector from `redshift://user[:password]@host[:port]/database`, TLS on."""
    import redshift_connector

    parts = urlsplit(dsn)
    if not (parts.hostname and parts.username):
        raise ValueError("a Redshift admin DSN looks like redshift://admin@host:5439/dev")
    password = unquote(parts.password) if parts.password else os.environ.get("REDSHIFT_PASSWORD")
    return redshift_connector.connect(
        host=parts.hostname,
        port=parts.port or 5439,
        database=parts.path.lstrip("/") or "dev",
        user=unquote(parts.username),
        password=password,
        ssl=True,
    )


def apply_roles(
    dsn: str,
    roles: Roles,
    analysts: tuple[str, ...] = (),
    loader_user: str | None = None,
    connect_redshift: Callable[[str], Any] = connect_redshift_admin,
) -> str:
    """Apply the file the admin DSN calls for; returns its name."""
    file = roles_file(dsn)
    if file == "redshift_roles.sql":
        if not loader_user:
            raise ValueError(
                "Redshift roles need the loader user (the RedshiftWarehouse block's user): "
                "pass --loader-user or set REDDIT_PIPELINE_REDSHIFT_LOADER_USER"
            )
        connection = connect_redshift(dsn)
        try:
            apply_redshift_roles(connection, roles, loader_user, analysts)
        finally:
            connection.close()
        return file
    import psycopg

    with psycopg.connect(dsn, connect_timeout=10) as connection:
        apply_postgres_roles(connection, roles, analysts)
    return file


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tasks.ops.roles",
        description="Create or update the loader, analyst and state roles on PostgreSQL, or "
        "the loader and analyst roles on Redshift (a redshift:// DSN).",
    )
    parser.add_argument(
        "--dsn",
        required=True,
        help="an administrator's DSN: postgresql://... (with sslmode) or redshift://...",
    )
    parser.add_argument(
        "--loader-user", help="Redshift: the user the loader role is granted to (the block's)"
    )
    parser.add_argument("--schema", default=Roles.schema)
    parser.add_argument("--state-schema", default=Roles.state_schema)
    parser.add_argument("--loader", default=Roles.loader)
    parser.add_argument("--analyst", default=Roles.analyst)
    parser.add_argument("--state", default=Roles.state)
    parser.add_argument("--grant-analyst-to", action="append", default=[])
    args = parser.parse_args(argv)
    import psycopg

    try:
        roles = Roles(args.loader, args.analyst, args.state, args.schema, args.state_schema)
        file = apply_roles(args.dsn, roles, tuple(args.grant_analyst_to), args.loader_user)
    except (ValueError, psycopg.Error, ConnectionError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{file}: roles {roles.loader}, {roles.analyst}, {roles.state} on {roles.schema}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
