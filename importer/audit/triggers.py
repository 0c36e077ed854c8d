from __future__ import annotations

from collections.abc import Callable

from django.apps.registry import Apps
from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor

POSTGRES_APPEND_ONLY_SQL = """
CREATE OR REPLACE FUNCTION importer_auditevent_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'importer_auditevent is append-only: % refused', TG_OP
        USING HINT = 'Audit entries cannot be changed or deleted.';
END;
$$;
CREATE TRIGGER importer_auditevent_append_only
    BEFORE UPDATE OR DELETE ON importer_auditevent
    FOR EACH ROW EXECUTE FUNCTION importer_auditevent_append_only();
"""


POSTGRES_APPEND_ONLY_REVERSE_SQL = """
DROP TRIGGER IF EXISTS importer_auditevent_append_only ON importer_auditevent;
DROP FUNCTION IF EXISTS importer_auditevent_append_only();
"""


# A superuser may still empty the table: it can switch any trigger off anyway (ALTER TABLE ...
# DISABLE TRIGGER, session_replication_role), so refusing it would protect nothing, and the test
# suite's flush between tests and a deliberate purge by the database's administrator need it.
POSTGRES_NO_TRUNCATE_SQL = """
CREATE OR REPLACE FUNCTION importer_auditevent_no_truncate() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION 'importer_auditevent is append-only: TRUNCATE refused'
        USING HINT = 'Audit entries cannot be removed.';
END;
$$;
CREATE TRIGGER importer_auditevent_no_truncate
    BEFORE TRUNCATE ON importer_auditevent
    FOR EACH STATEMENT EXECUTE FUNCTION importer_auditevent_no_truncate();
"""


POSTGRES_NO_TRUNCATE_REVERSE_SQL = """
DROP TRIGGER IF EXISTS importer_auditevent_no_truncate ON importer_auditevent;
DROP FUNCTION IF EXISTS importer_auditevent_no_truncate();
"""


def _on_postgresql_only(sql: str) -> Callable[[Apps, BaseDatabaseSchemaEditor], None]:
    def run(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
        # SQLite has no such triggers; the model guards are the only ones there.
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(sql, params=None)

    return run


def _postgresql_trigger(sql: str, reverse_sql: str) -> list[migrations.operations.base.Operation]:
    return [
        migrations.RunPython(
            _on_postgresql_only(sql), _on_postgresql_only(reverse_sql), elidable=False
        )
    ]


def migration_operations() -> list[migrations.operations.base.Operation]:
    """The migration operations that install the append-only trigger (PostgreSQL only)."""
    return _postgresql_trigger(POSTGRES_APPEND_ONLY_SQL, POSTGRES_APPEND_ONLY_REVERSE_SQL)


def no_truncate_migration_operations() -> list[migrations.operations.base.Operation]:
    """The migration operations that install the TRUNCATE-refusing trigger (PostgreSQL only)."""
    return _postgresql_trigger(POSTGRES_NO_TRUNCATE_SQL, POSTGRES_NO_TRUNCATE_REVERSE_SQL)
