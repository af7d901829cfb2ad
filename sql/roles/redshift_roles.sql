-- Roles of the reddit pipeline on a Redshift warehouse (tasks/ops/roles.py fills the placeholders
-- in braces with validated identifiers, creates the roles {loader} and {analyst} when svv_roles lacks
-- them (Redshift has no DO blocks and no CREATE ROLE IF NOT EXISTS), then runs these
-- statements one by one). Every statement is a grant: running it again changes nothing.
--
--   {loader}       role granted to {loader_user}, the RedshiftWarehouse block's user: creates
--                  and writes the tables of {schema}.
--   {analyst}      role for people: SELECT on the marts, now and later (default privileges on
--                  tables {loader_user} creates in {schema}).
-- Redshift holds no state store: the state's role is PostgreSQL only (postgres_roles.sql).

create schema if not exists {schema};
grant role {loader} to {loader_user};
grant usage, create on schema {schema} to role {loader};
grant usage on schema {schema} to role {analyst};
alter default privileges for user {loader_user} in schema {schema}
    grant select on tables to role {analyst};
