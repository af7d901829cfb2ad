"""Roles on this machine's PostgreSQL, for real: the analyst reads but cannot write, the loader
loads through the warehouse block, the state role cannot read the marts. Roles are
cluster-wide, so each test uses its own names and drops them afterwards."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from conftest import PG_ADMIN_DSN
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from blocks.warehouse import PostgresWarehouse
from tasks.roles import Roles, apply_postgres_roles, apply_redshift_roles, main, render
from tasks.state import RunRecord, open_postgres_state


def _as(dsn: str, user: str) -> str:
    """The same database, connecting as `user` without the admin's password (the test roles
    have none: this machine's server, and CI's, trust 127.0.0.1)."""
    parts = conninfo_to_dict(dsn)
    parts.pop("password", None)
    return make_conninfo(**{**parts, "user": user})


@pytest.fixture
def roles(pg_dsn: str) -> Iterator[Roles]:
    suffix = uuid.uuid4().hex[:8]
    names = Roles(
        loader=f"t_loader_{suffix}",
        analyst=f"t_analyst_{suffix}",
        state=f"t_state_{suffix}",
        schema="reddit",
        state_schema="reddit_state",
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


def test_the_state_role_keeps_its_own_tables_and_cannot_read_the_marts(
    pg_dsn: str, applied: Roles
) -> None:
    store = open_postgres_state(_as(pg_dsn, applied.state))
    try:  # an assertion failing with the store open would block the fixture's cleanup
        store.start_run(RunRecord("run-1", "api"))
        assert [r["run_id"] for r in store.recent_runs()] == ["run-1"]
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            store._execute("select * from reddit.posts")
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
