"""Roles on this machine's PostgreSQL, for real: the analyst reads but cannot write, the loader
loads through the warehouse block, the state role cannot read the marts. Roles are
cluster-wide, so each test uses its own names and drops them afterwards."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from helpers import PG_ADMIN_DSN
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from blocks.warehouse import PostgresWarehouse, RedshiftWarehouse
from flows.bootstrap import ensure_roles
from tasks.lake.local import LocalLake
from tasks.load.postgres import load_postgres_task
from tasks.ops.roles import (
    Roles,
    _statements,
    apply_postgres_roles,
    apply_redshift_roles,
    main,
    render,
    roles_file,
)
from tasks.state.store import RunRecord, open_postgres_state


def _as(dsn: str, user: str) -> str:
    """The same database, connecting as `user` without the admin's password (the test roles
    have none: this machine's server, and CI's, trust 127.0.0.1)."""
    parts = conninfo_to_dict(dsn)
    parts.pop("password", None)
    return make_conninfo(**{**parts, "user": user})


@pytest.fixture
def roles(pg_dsn: str) -> Iterator[Roles]:
    suffix = uuid.uuid4().hex[:8]
    # Own role names (roles are cluster-wide); the default schemas, which the blocks share.
    names = Roles(
        loader=f"t_loader_{suffix}", analyst=f"t_analyst_{suffix}", state=f"t_state_{suffix}"
    )
    yield names
    users = [names.loader, names.analyst, names.state, f"t_alice_{suffix}"]
    with psycopg.connect(pg_dsn, autocommit=True) as connection:
        for user in users:
            if connection.execute("select 1 from pg_roles where rolname = %s", (user,)).fetchone():
                connection.execute(f"drop owned by {user} cascade")
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
        for user in users:
            admin.execute(f"drop role if exists {user}")


@pytest.fixture
def applied(pg_dsn: str, roles: Roles) -> Roles:
    """Roles applied twice (idempotent), after a mart already existed, owned by the admin."""
    with psycopg.connect(pg_dsn) as admin:
        admin.execute("create schema reddit")
        admin.execute("create table reddit.posts (id text primary key, score int)")
        admin.execute("insert into reddit.posts values ('a', 1)")
        admin.commit()
        apply_postgres_roles(admin, roles)
        apply_postgres_roles(admin, roles)
    return roles


def test_the_analyst_reads_the_marts_but_cannot_write(pg_dsn: str, applied: Roles) -> None:
    with psycopg.connect(pg_dsn) as connection:
        connection.execute(f"set role {applied.analyst}")
        assert connection.execute("select id, score from reddit.posts").fetchall() == [("a", 1)]
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            connection.execute("insert into reddit.posts values ('b', 2)")
        connection.rollback()
        connection.execute(f"set role {applied.analyst}")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            connection.execute("create table reddit.mine (x int)")


def test_the_loader_loads_through_the_block_and_new_marts_are_readable_by_the_analyst(
    pg_dsn: str, applied: Roles
) -> None:
    block = PostgresWarehouse.from_dsn(_as(pg_dsn, applied.loader), schema=applied.schema)
    with block.connect() as connection:
        connection.execute("insert into posts values ('b', 2)")
        connection.execute("update posts set score = 10 where id = 'a'")
        connection.execute("alter table posts add column title text")
        connection.execute("create table subreddit_daily (subreddit text, n int)")
        connection.execute("insert into subreddit_daily values ('python', 3)")
        connection.commit()

    with psycopg.connect(pg_dsn) as connection:
        connection.execute(f"set role {applied.analyst}")
        assert connection.execute("select n from reddit.subreddit_daily").fetchall() == [(3,)]
        assert connection.execute("select count(*) from reddit.posts").fetchone() == (2,)


def test_the_loader_loads_the_sample_with_a_block_left_at_its_default_schema(
    pg_dsn: str, roles: Roles, tmp_path: Path
) -> None:
    from helpers import build_sample_curated

    with psycopg.connect(pg_dsn) as admin:  # a new database: the roles before any load
        apply_postgres_roles(admin, roles)
    lake = LocalLake(tmp_path / "lake")
    keys = build_sample_curated(lake)
    # The block as the docs make it: the loader's DSN, no schema given.
    block = PostgresWarehouse.from_dsn(_as(pg_dsn, roles.loader))
    assert block.db_schema == roles.schema == Roles().schema
    assert RedshiftWarehouse.model_fields["db_schema"].default == Roles().schema

    result = load_postgres_task.fn(block, lake, keys)

    assert result.inserted_totals()["posts"] == 600
    with psycopg.connect(pg_dsn) as connection:
        connection.execute(f"set role {roles.analyst}")
        counts = connection.execute(
            f"select (select count(*) from {roles.schema}.posts), "
            f"(select count(*) from {roles.schema}.comments)"
        ).fetchone()
        assert counts == (600, 3000)
        owner = connection.execute(
            "select tableowner from pg_tables where schemaname = %s and tablename = 'posts'",
            (roles.schema,),
        ).fetchone()
        assert owner == (roles.loader,)


def test_the_state_role_keeps_its_own_tables_and_cannot_read_the_marts(
    pg_dsn: str, applied: Roles
) -> None:
    store = open_postgres_state(_as(pg_dsn, applied.state))
    try:  # an assertion failing with the store open would block the fixture's cleanup
        store.start_run(RunRecord("run-1", "api"))
        assert [r["run_id"] for r in store.recent_runs()] == ["run-1"]
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            store.execute("select * from reddit.posts")
    finally:
        store.close()

    with psycopg.connect(pg_dsn) as admin:
        schema = admin.execute(
            "select table_schema from information_schema.tables where table_name = 'watermarks'"
        ).fetchone()
        assert schema == ("reddit_state",)
        admin.execute(f"set role {applied.analyst}")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            admin.execute("select * from reddit_state.pipeline_runs")

    with (
        psycopg.connect(_as(pg_dsn, applied.loader)) as loader,
        pytest.raises(psycopg.errors.InsufficientPrivilege),
    ):
        loader.execute("select * from reddit_state.watermarks")


def test_the_cli_grants_the_analyst_role_to_a_person(pg_dsn: str, roles: Roles) -> None:
    person = roles.loader.replace("t_loader_", "t_alice_")
    with psycopg.connect(pg_dsn, autocommit=True) as admin:
        admin.execute(f"create role {person} login")
    args = ["--dsn", pg_dsn, "--loader", roles.loader, "--analyst", roles.analyst]
    args += ["--state", roles.state, "--schema", roles.schema, "--grant-analyst-to", person]

    assert main(args) == 0

    with psycopg.connect(_as(pg_dsn, person)) as connection:
        member = connection.execute(
            "select pg_has_role(current_user, %s, 'member')", (roles.analyst,)
        ).fetchone()
        assert member == (True,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            connection.execute("create table reddit.x (y int)")


def test_names_are_validated_before_any_sql_is_rendered() -> None:
    with pytest.raises(ValueError, match="identifier"):
        Roles(loader="loader; drop table posts")
    with pytest.raises(ValueError, match="differ"):
        Roles(schema="same", state_schema="same")


class _RedshiftCursor:
    """Records statements; svv_roles and svv_tables know only what the test says."""

    def __init__(self, roles: set[str], tables: set[str]) -> None:
        self.roles, self.tables, self.statements = roles, tables, []
        self._row: tuple[int] | None = None

    def execute(self, statement: str, params: tuple[str, ...] = ()) -> None:
        self.statements.append(statement)
        if "svv_roles" in statement:
            self._row = (1,) if params[0] in self.roles else None
        elif "svv_tables" in statement:
            self._row = (1,) if params[1] in self.tables else None

    def fetchone(self) -> tuple[int] | None:
        return self._row


class _RedshiftConnection:
    def __init__(self, cursor: _RedshiftCursor) -> None:
        self._cursor, self.committed = cursor, False

    def cursor(self) -> _RedshiftCursor:
        return self._cursor

    def commit(self) -> None:
        self.committed = True

    def close(self) -> None:
        self.closed = True


def test_redshift_roles_create_only_missing_roles_and_grant_on_existing_marts() -> None:
    roles = Roles()
    cursor = _RedshiftCursor(roles={roles.loader}, tables={"posts"})
    connection = _RedshiftConnection(cursor)

    apply_redshift_roles(connection, roles, loader_user="etl")

    executed = [s for s in cursor.statements if "svv_" not in s]
    assert executed[0] == f"create role {roles.analyst}"
    assert f"create role {roles.loader}" not in executed
    assert f"grant role {roles.loader} to etl" in executed
    assert (
        "alter default privileges for user etl in schema reddit\n"
        f"    grant select on tables to role {roles.analyst}"
    ) in executed
    assert f"grant select on reddit.posts to role {roles.analyst}" in executed
    assert not any("reddit.comments" in s for s in executed)
    assert connection.committed
    assert "{" not in render("redshift_roles.sql", roles, loader_user="etl")


def test_redshift_statements_are_redshift_sql_one_per_statement() -> None:
    """sqlglot's redshift dialect parses CREATE SCHEMA and GRANT ... TO ROLE fully; GRANT ROLE,
    CREATE ROLE and ALTER DEFAULT PRIVILEGES it keeps as opaque commands, so those are held to
    Redshift's documented forms here."""
    import sqlglot
    from sqlglot import exp

    roles = Roles()
    cursor = _RedshiftCursor(roles=set(), tables=set(roles.marts))
    apply_redshift_roles(_RedshiftConnection(cursor), roles, loader_user="etl")
    executed = [s for s in cursor.statements if "svv_" not in s]
    assert len(_statements(render("redshift_roles.sql", roles, loader_user="etl"))) == 5

    opaque = ("grant role ", "create role ", "alter default privileges for user etl in schema ")
    for statement in executed:
        (parsed,) = sqlglot.parse(statement, read="redshift")
        if isinstance(parsed, exp.Command):
            assert statement.startswith(opaque), statement
        else:
            assert isinstance(parsed, exp.Create | exp.Grant), statement
            round_trip = parsed.sql(dialect="redshift")
            assert round_trip.lower() == " ".join(statement.split()).lower()
    assert sum(s.startswith("grant select on reddit.") for s in executed) == 3


def test_the_bootstrap_applies_the_file_of_the_admin_dsns_warehouse() -> None:
    assert roles_file("postgresql://admin@db/reddit") == "postgres_roles.sql"
    assert roles_file("host=db user=admin") == "postgres_roles.sql"
    assert roles_file("redshift://admin@cluster:5439/dev") == "redshift_roles.sql"
    cursor = _RedshiftCursor(roles=set(), tables=set())
    connection = _RedshiftConnection(cursor)
    dsns: list[str] = []

    def connect(dsn: str) -> _RedshiftConnection:
        dsns.append(dsn)
        return connection

    env = {
        "REDDIT_PIPELINE_ADMIN_DSN": "redshift://admin@cluster:5439/dev",
        "REDDIT_PIPELINE_REDSHIFT_LOADER_USER": "etl",
        "REDDIT_PIPELINE_WAREHOUSE_SCHEMA": "marts",
    }
    assert ensure_roles(env, connect).startswith("redshift_roles.sql")
    assert dsns == [env["REDDIT_PIPELINE_ADMIN_DSN"]]
    assert "grant usage, create on schema marts to role reddit_loader" in cursor.statements
    assert "grant role reddit_loader to etl" in cursor.statements
    assert connection.committed and connection.closed

    without_user = {k: v for k, v in env.items() if "LOADER" not in k}
    with pytest.raises(ValueError, match="REDDIT_PIPELINE_REDSHIFT_LOADER_USER"):
        ensure_roles(without_user, connect)
    assert ensure_roles({}).startswith("skipped")
