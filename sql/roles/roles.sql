-- Least privilege for carsys-ingest: two roles per database. Run once, as a superuser or a role with CREATEROLE,
-- connected to the application's database (psql "postgresql://admin@db/carsys" -f sql/roles/roles.sql).
--
--   carsys_owner    owns the schema: `carsys-ingest migrate` / `init` (and MIGRATE_ON_START=true) run as this role.
--   carsys_runtime  the worker's replicas (MIGRATE_ON_START=false) and the operator commands `dlq list/show/replay`,
--                   `erase`, `skip`: SELECT/INSERT/UPDATE/DELETE on the tables, temporary tables, nothing else.
--                   It cannot create, alter or drop anything in the schema; PostgreSQL refuses it (42501).
--
-- What the runtime role's work needs, and where it comes from (worker/runtime/store.py, tables.py, worker/ops/):
--   - DML on every table, incl. SELECT ... FOR UPDATE (erase) and INSERT ... ON CONFLICT DO UPDATE (the upserts):
--     the table grants below, and the default privileges for the tables later migrations add.
--   - CREATE TEMP TABLE + COPY into it (the batch writer above COPY_MIN_ROWS rows): TEMPORARY on the database. A
--     temporary table belongs to the session that made it, so COPY and TRUNCATE on it need nothing more.
--   - pg_try_advisory_xact_lock / pg_try_advisory_lock (pruning, one replay at a time): executable by PUBLIC.
--   - SELECT on schema_migrations: the start-up check that the schema is current (MIGRATE_ON_START=false).
--
-- Passwords are not in this file: set them apart (psql's \password carsys_runtime), and hand the DSNs to the
-- worker through DATABASE_URL_FILE. Role names are the documented ones; rename consistently if you must.

DO $$
BEGIN
    -- Roles are per cluster, grants per database: the file can run again for a second database.
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'carsys_owner') THEN
        CREATE ROLE carsys_owner LOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'carsys_runtime') THEN
        CREATE ROLE carsys_runtime LOGIN;
    END IF;
    -- Nobody but these two (and superusers) connects; only they may create temporary tables.
    EXECUTE format('REVOKE ALL ON DATABASE %I FROM PUBLIC', current_database());
    EXECUTE format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO carsys_owner, carsys_runtime', current_database());
END
$$;

-- PostgreSQL < 15 lets every role create objects in `public`: take that away first.
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE, CREATE ON SCHEMA public TO carsys_owner;
GRANT USAGE ON SCHEMA public TO carsys_runtime;

-- Tables that exist already (when the roles are added to a migrated database) ...
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO carsys_runtime;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO carsys_runtime;
-- ... and every table and sequence carsys_owner creates from now on (each new migration file).
ALTER DEFAULT PRIVILEGES FOR ROLE carsys_owner IN SCHEMA public
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO carsys_runtime;
ALTER DEFAULT PRIVILEGES FOR ROLE carsys_owner IN SCHEMA public
    GRANT USAGE, SELECT ON SEQUENCES TO carsys_runtime;
