-- Roles of the reddit pipeline on a PostgreSQL warehouse and state store. tasks/ops/roles.py fills
-- the placeholders in braces with validated identifiers and runs this file in one transaction
-- as an administrator. Safe to run again: roles are created only when missing, grants repeat.
--
--   {loader}   LOGIN: the PostgresWarehouse block's user. Owns the tables in {schema} (the load
--              creates them, adds columns and MERGEs), may create that schema.
--   {analyst}  NOLOGIN group role: grant it to people. SELECT on the marts only, now and on
--              every table {loader} creates in {schema} later (default privileges).
--   {state}    LOGIN: the state store's user (REDDIT_PIPELINE_STATE_DSN). Owns {state_schema}
--              and its tables (pipeline_runs, watermarks, check_results); nothing else.
-- Passwords are not set here: `alter role ... password` or IAM authentication (RDS).

do $$
begin
    if not exists (select from pg_roles where rolname = '{loader}') then
        create role {loader} login;
    end if;
    if not exists (select from pg_roles where rolname = '{analyst}') then
        create role {analyst} nologin;
    end if;
    if not exists (select from pg_roles where rolname = '{state}') then
        create role {state} login;
    end if;
end
$$;

-- Nobody but the owners writes: PostgreSQL 15 no longer lets PUBLIC create in `public`, but an
-- upgraded cluster may still; the warehouse schema is closed to PUBLIC either way.
create schema if not exists {schema} authorization {loader};
alter schema {schema} owner to {loader};
revoke create on schema {schema} from public;
-- PostgresWarehouse.connect() runs `create schema if not exists`, which checks the database's
-- CREATE privilege before it checks whether the schema exists.
grant connect, create on database {database} to {loader};
grant connect on database {database} to {analyst}, {state};
alter role {loader} set search_path = {schema};
alter role {analyst} set search_path = {schema};

-- Marts that exist already (loaded before the roles were applied) pass to the loader; the
-- analyst reads them.
do $$
declare
    mart text;
begin
    foreach mart in array array[{marts}] loop
        if exists (
            select from pg_tables where schemaname = '{schema}' and tablename = mart
        ) then
            execute format('alter table %I.%I owner to %I', '{schema}', mart, '{loader}');
            execute format('grant select on %I.%I to %I', '{schema}', mart, '{analyst}');
        end if;
    end loop;
end
$$;

grant usage on schema {schema} to {analyst};
revoke all on schema {schema} from {state};
alter default privileges for role {loader} in schema {schema}
    grant select on tables to {analyst};

-- The state store: its own schema, owned by its role; ensure_schema creates the tables there.
create schema if not exists {state_schema} authorization {state};
alter schema {state_schema} owner to {state};
revoke all on schema {state_schema} from public;
alter role {state} set search_path = {state_schema};

do $$
declare
    state_table text;
begin
    foreach state_table in array array['pipeline_runs', 'watermarks', 'check_results'] loop
        if exists (
            select from pg_tables where schemaname = '{state_schema}' and tablename = state_table
        ) then
            execute format(
                'alter table %I.%I owner to %I', '{state_schema}', state_table, '{state}'
            );
        end if;
    end loop;
end
$$;
