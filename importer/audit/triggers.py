from __future__ import annotations

from typing import TYPE_CHECKING

from django.apps.registry import Apps
from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor

if TYPE_CHECKING:
    pass


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


def _execute_on_postgresql(schema_editor: BaseDatabaseSchemaEditor, sql: str) -> None:
    # SQLite has no such triggers; the model guards are the only ones there.
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(sql, params=None)


def install_append_only_trigger(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    _execute_on_postgresql(schema_editor, POSTGRES_APPEND_ONLY_SQL)


def remove_append_only_trigger(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    _execute_on_postgresql(schema_editor, POSTGRES_APPEND_ONLY_REVERSE_SQL)


def migration_operations() -> list[migrations.operations.base.Operation]:
    """The migration operations that install the append-only trigger (PostgreSQL only)."""
    return [
        migrations.RunPython(
            install_append_only_trigger, remove_append_only_trigger, elidable=False
        )
    ]


def install_no_truncate_trigger(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    _execute_on_postgresql(schema_editor, POSTGRES_NO_TRUNCATE_SQL)


def remove_no_truncate_trigger(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    _execute_on_postgresql(schema_editor, POSTGRES_NO_TRUNCATE_REVERSE_SQL)


def no_truncate_migration_operations() -> list[migrations.operations.base.Operation]:
    """The migration operations that install the TRUNCATE-refusing trigger (PostgreSQL only)."""
    return [
        migrations.RunPython(
            install_no_truncate_trigger, remove_no_truncate_trigger, elidable=False
        )
    ]
