"""The audit trail: an append-only log of who did what, when and from where.

Every entry carries ``hash = sha256(prev_hash + canonical JSON of its contents)``, the previous
entry's hash being ``prev_hash`` (64 zeros for the first one), so an entry edited or deleted
directly in the database breaks the chain, and :func:`verify_chain` (the ``audit_verify``
command) says where. The application cannot change or delete an entry: the model and its
QuerySet refuse, and on PostgreSQL a trigger refuses ``UPDATE`` and ``DELETE`` as well.

Entries are written by :func:`record` only. Details are redacted before they are hashed and
stored: no pre-signed URL signature, password, secret key or token reaches the table.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC
from typing import TYPE_CHECKING, Any, NoReturn

from django.apps.registry import Apps
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, migrations, models, transaction
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.http import HttpRequest
from django.utils import timezone

from importer.presigned import redact_text

if TYPE_CHECKING:
    from django.contrib.auth.base_user import AbstractBaseUser
    from django.contrib.auth.models import AnonymousUser

    from importer.models import Team

__all__ = [
    "GENESIS_HASH",
    "POSTGRES_APPEND_ONLY_REVERSE_SQL",
    "POSTGRES_APPEND_ONLY_SQL",
    "AuditAction",
    "AuditEvent",
    "AuditLogIsAppendOnly",
    "ChainReport",
    "client_ip",
    "entry_hash",
    "migration_operations",
    "record",
    "redact_details",
    "verify_chain",
]

GENESIS_HASH = "0" * 64
REDACTED = "[redacted]"
# Any key containing one of these (lower case, "-" read as "_") has its value replaced whole.
SECRET_KEY_PARTS = (
    "secret",
    "password",
    "passwd",
    "signature",
    "token",
    "authorization",
    "cookie",
    "private_key",
    "api_key",
)
# pg_advisory_xact_lock key held while appending: one writer at a time reads the chain's tail.
# The value is arbitrary; it only has to be the same everywhere ("AUDIT" in ASCII).
CHAIN_LOCK_KEY = 0x4155444954
# A nesting bound for details: deeper structures are summarised, not walked.
MAX_DETAILS_DEPTH = 20

ACTOR_NAME_LENGTH = 150
TEAM_NAME_LENGTH = 100
TARGET_LENGTH = 255


class AuditLogIsAppendOnly(Exception):
    """Raised when code tries to change, delete or bulk-write audit entries."""


class AuditAction(models.TextChoices):
    LOGIN = "login", "Signed in"
    LOGIN_FAILED = "login_failed", "Failed sign-in"
    LOGOUT = "logout", "Signed out"
    IMPORT_SUBMITTED = "import_submitted", "Import submitted"
    JOB_STATE = "job_state", "Import state changed"
    TAG_RESULT = "tag_result", "Snapshot tagging"
    SNAPSHOT_DELETED = "snapshot_deleted", "Snapshot deleted"
    CREDENTIALS_CHANGED = "credentials_changed", "Credentials changed"
    MEMBERSHIP_CHANGED = "membership_changed", "Membership changed"
    CSV_EXPORT = "csv_export", "Audit log exported"
    EXPORT_REQUESTED = "export_requested", "Export requested"
    EXPORT_STATE = "export_state", "Export state changed"
    EXPORT_CANCELLED = "export_cancelled", "Export cancel requested"
    URL_SHARED = "url_shared", "Pre-signed URL created"
    COPY_REQUESTED = "copy_requested", "Copy to another team requested"
    COPY_STATE = "copy_state", "Copy state changed"
    NOTIFICATION_REQUESTED = "notification_requested", "Notification requested"
    NOTIFICATION_SENT = "notification_sent", "Notification sent"
    WEBHOOK_CHANGED = "webhook_changed", "Team transfer settings changed"


def _refuse(what: str) -> NoReturn:
    raise AuditLogIsAppendOnly(f"The audit log is append-only: {what} is not allowed.")


class AuditEventQuerySet(models.QuerySet["AuditEvent"]):
    """Reads only: every method that would change or bulk-write rows refuses."""

    def update(self, *args: Any, **kwargs: Any) -> NoReturn:
        _refuse("update()")

    def _update(self, *args: Any, **kwargs: Any) -> NoReturn:
        _refuse("update()")

    def delete(self, *args: Any, **kwargs: Any) -> NoReturn:
        _refuse("delete()")

    def _raw_delete(self, *args: Any, **kwargs: Any) -> NoReturn:
        _refuse("delete()")

    def bulk_update(self, *args: Any, **kwargs: Any) -> NoReturn:
        _refuse("bulk_update()")

    # bulk_create would skip record(), so the new rows would not be chained.
    def bulk_create(self, *args: Any, **kwargs: Any) -> NoReturn:
        _refuse("bulk_create()")

    def update_or_create(self, *args: Any, **kwargs: Any) -> NoReturn:
        _refuse("update_or_create()")


AuditEventManager = models.Manager.from_queryset(AuditEventQuerySet)


class AuditEvent(models.Model):
    """One audit entry. Write with :func:`record`; never changed or deleted afterwards.

    `actor` and `team` keep their ids even when the user or team is deleted (no database
    constraint, nothing done on delete: a cascade or SET NULL would be a write to the log);
    `actor_name` and `team_name` keep the names they had, for display.
    """

    id = models.BigAutoField(primary_key=True)
    at = models.DateTimeField(default=timezone.now, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    actor_name = models.CharField(max_length=ACTOR_NAME_LENGTH, blank=True)
    team = models.ForeignKey(
        "importer.Team",
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    team_name = models.CharField(max_length=TEAM_NAME_LENGTH, blank=True)
    action = models.CharField(max_length=40, choices=AuditAction.choices)
    target = models.CharField(max_length=TARGET_LENGTH, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    details = models.JSONField(default=dict, blank=True)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64)

    objects = AuditEventManager()

    class Meta:
        app_label = "importer"
        ordering = ["-at", "-id"]
        indexes = [
            models.Index(fields=["team", "-at"], name="audit_team_at_idx"),
            models.Index(fields=["action", "-at"], name="audit_action_at_idx"),
            models.Index(fields=["actor", "-at"], name="audit_actor_at_idx"),
        ]

    def __str__(self) -> str:
        who = self.actor_name or "anonymous"
        return f"#{self.id} {self.at:%Y-%m-%d %H:%M:%S} {who} {self.action} {self.target}".rstrip()

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            _refuse("changing an entry")
        if len(self.hash) != 64 or len(self.prev_hash) != 64:
            raise ValueError("Audit entries are written by importer.audit.record(), not save().")
        if kwargs.get("force_update") or kwargs.get("update_fields") is not None:
            _refuse("changing an entry")
        # Never let save() fall back to an UPDATE of a row that happens to have this id.
        kwargs["force_insert"] = True
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> NoReturn:
        _refuse("deleting an entry")

    def computed_hash(self) -> str:
        """The hash this entry's stored contents and `prev_hash` call for."""
        return entry_hash(self.prev_hash, _hashed_fields(self))


# --- Redaction and hashing ------------------------------------------------------------------


def _clean_text(text: str, limit: int | None = None) -> str:
    # NUL and lone surrogates are refused by PostgreSQL; replace them so the stored value is
    # exactly the value that was hashed.
    text = text.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")
    text = redact_text(text)
    return text[:limit] if limit is not None else text


def _is_secret_key(key: str) -> bool:
    lowered = key.lower().replace("-", "_")
    return any(part in lowered for part in SECRET_KEY_PARTS)


def redact_details(value: Any, *, _depth: int = 0) -> Any:
    """A JSON-ready copy of `value` with secrets removed.

    Strings go through `redact_text` (pre-signed URLs, signature parameters); the values of keys
    that name a secret become "[redacted]". Numbers come out in the form a PostgreSQL `jsonb`
    column gives back (integral floats as integers), so the hash of a stored entry can be
    recomputed from what the database returns.
    """
    if _depth > MAX_DETAILS_DEPTH:
        return "[too deeply nested]"
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return int(value) if value.is_integer() else value
    if isinstance(value, str):
        return _clean_text(value)
    if isinstance(value, Mapping):
        cleaned: dict[str, Any] = {}
        for raw_key, item in value.items():
            key = _clean_text(str(raw_key))
            secret = _is_secret_key(key)
            cleaned[key] = REDACTED if secret else redact_details(item, _depth=_depth + 1)
        return cleaned
    if isinstance(value, list | tuple | set | frozenset):
        return [redact_details(item, _depth=_depth + 1) for item in value]
    try:
        # Dates, times, decimals, UUIDs, lazy strings: the same text Django's JSON uses.
        return _clean_text(str(DjangoJSONEncoder().default(value)))
    except TypeError:
        return _clean_text(str(value))


def _normalised_ip(raw: str | None) -> str | None:
    """The address as PostgreSQL's inet gives it back, or None when it is not an address."""
    if not raw:
        return None
    try:
        address = ipaddress.ip_address(raw.strip().split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def _hashed_fields(entry: AuditEvent) -> dict[str, Any]:
    return {
        "at": entry.at.astimezone(UTC).isoformat(timespec="microseconds"),
        "actor_id": entry.actor_id,
        "actor_name": entry.actor_name,
        "team_id": entry.team_id,
        "team_name": entry.team_name,
        "action": str(entry.action),
        "target": entry.target,
        "ip": entry.ip,
        "details": entry.details,
    }


def entry_hash(prev_hash: str, fields: Mapping[str, Any]) -> str:
    """sha256 hex of `prev_hash` followed by the canonical JSON of `fields`."""
    canonical = json.dumps(
        fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    )
    return hashlib.sha256((prev_hash + canonical).encode("ascii")).hexdigest()


# --- Writing --------------------------------------------------------------------------------


def record(
    *,
    action: AuditAction | str,
    actor: AbstractBaseUser | AnonymousUser | None = None,
    actor_name: str | None = None,
    team: Team | None = None,
    target: str = "",
    ip: str | None = None,
    details: Mapping[str, Any] | None = None,
) -> AuditEvent:
    """Appends one entry to the audit chain and returns it.

    `actor_name` defaults to the actor's user name (give it for a failed sign-in, where there is
    no actor). Runs in its own transaction, or a savepoint of the caller's: the entry is part of
    the caller's work and disappears with it on rollback. Writers are serialised until commit,
    so keep the surrounding transaction short.
    """
    if action not in AuditAction.values:
        raise ValueError(f"Unknown audit action {action!r}; add it to AuditAction first.")
    actor_id = actor.pk if actor is not None and actor.is_authenticated else None
    if actor_name is None:
        actor_name = actor.get_username() if actor is not None and actor_id is not None else ""
    entry = AuditEvent(
        actor_id=actor_id,
        actor_name=_clean_text(actor_name, ACTOR_NAME_LENGTH),
        team_id=team.pk if team is not None else None,
        team_name=_clean_text(team.name, TEAM_NAME_LENGTH) if team is not None else "",
        action=str(action),
        target=_clean_text(str(target), TARGET_LENGTH),
        ip=_normalised_ip(ip),
        details=redact_details(dict(details or {})),
    )
    with transaction.atomic():
        _lock_chain()
        last = AuditEvent.objects.order_by("-id").values_list("hash", flat=True).first()
        # Stamped under the lock, so entries are in time order as well as in chain order.
        entry.at = timezone.now()
        entry.prev_hash = last or GENESIS_HASH
        entry.hash = entry.computed_hash()
        entry.save()
    return entry


def _lock_chain() -> None:
    # SQLite needs nothing here: its transactions are IMMEDIATE (see settings), so the writer
    # holding the database lock is the only one reading the tail.
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [CHAIN_LOCK_KEY])


def client_ip(request: HttpRequest) -> str | None:
    """The client's address: REMOTE_ADDR, or behind the TLS proxy the address it appended."""
    remote = _normalised_ip(request.META.get("REMOTE_ADDR"))
    if not getattr(settings, "PORTAL_BEHIND_TLS_PROXY", False):
        return remote
    # Only the right-most entry was written by our proxy; the ones before it are the client's say.
    forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    forwarded = [part for part in forwarded if part]
    if forwarded:
        return _normalised_ip(forwarded[-1]) or remote
    return remote


# --- Verifying ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    checked: int
    broken_at_id: int | None = None
    reason: str = ""


def verify_chain(*, batch_size: int = 2000) -> ChainReport:
    """Walks the chain in id order and reports the first entry that breaks it.

    An edited entry no longer matches its own hash; a deleted, reordered or inserted entry
    leaves the next one pointing at a hash that is not its predecessor's.
    """
    checked = 0
    previous_hash, previous_id = GENESIS_HASH, None
    for entry in _entries_in_chain_order(batch_size):
        checked += 1
        if entry.prev_hash != previous_hash:
            before = f"entry #{previous_id}" if previous_id is not None else "the start of the log"
            return ChainReport(
                ok=False,
                checked=checked,
                broken_at_id=entry.id,
                reason=(
                    f"it does not follow {before} (an entry between them was deleted, "
                    "or entries were inserted or reordered)"
                ),
            )
        if entry.computed_hash() != entry.hash:
            return ChainReport(
                ok=False,
                checked=checked,
                broken_at_id=entry.id,
                reason="its contents do not match its hash (the entry was edited)",
            )
        previous_hash, previous_id = entry.hash, entry.id
    return ChainReport(ok=True, checked=checked)


def _entries_in_chain_order(batch_size: int) -> Iterator[AuditEvent]:
    return AuditEvent.objects.order_by("id").iterator(chunk_size=batch_size)


# --- PostgreSQL trigger ---------------------------------------------------------------------

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
# Row triggers do not fire on TRUNCATE, which the test database flush relies on.

POSTGRES_APPEND_ONLY_REVERSE_SQL = """
DROP TRIGGER IF EXISTS importer_auditevent_append_only ON importer_auditevent;
DROP FUNCTION IF EXISTS importer_auditevent_append_only();
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
