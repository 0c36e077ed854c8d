"""The audit trail: an append-only log of who did what, when and from where.

Every entry carries ``hash = HMAC-SHA256(audit key, prev_hash + canonical JSON of its contents)``,
the previous entry's hash being ``prev_hash`` (64 zeros for the first one), so an entry edited or
deleted directly in the database breaks the chain, and without the key (``PORTAL_AUDIT_KEY``,
never in the database) nobody can re-chain the entries after it. :func:`verify_chain` (the
``audit_verify`` command) says where the chain breaks and, given a head recorded earlier
(:class:`ChainHead`), whether the newest entries were dropped. Entries written before there was
an audit key keep their plain SHA-256 hash (``algorithm`` says which) and still verify.

The application cannot change or delete an entry: the model and its QuerySet refuse, and on
PostgreSQL triggers refuse ``UPDATE``, ``DELETE`` and ``TRUNCATE`` as well.

Entries are written by :func:`record` only. Details are redacted before they are hashed and
stored: no pre-signed URL signature, password, secret key or token reaches the table.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC
from typing import TYPE_CHECKING, Any, NoReturn

from django.apps.registry import Apps
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
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
    "POSTGRES_NO_TRUNCATE_REVERSE_SQL",
    "POSTGRES_NO_TRUNCATE_SQL",
    "AuditAction",
    "AuditEvent",
    "AuditKeys",
    "AuditLogIsAppendOnly",
    "ChainHead",
    "ChainReport",
    "HashAlgorithm",
    "audit_key_id",
    "audit_keys",
    "client_ip",
    "entry_hash",
    "lock_chain",
    "migration_operations",
    "no_truncate_migration_operations",
    "normalised_ip",
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
# Hex digits of a key's fingerprint kept in `key_id`: enough to tell a handful of keys apart.
KEY_ID_LENGTH = 12


class AuditLogIsAppendOnly(Exception):
    """Raised when code tries to change, delete or bulk-write audit entries."""


class UnverifiableEntry(Exception):
    """An entry whose hash cannot be recomputed here (unknown algorithm or key); says why."""


class HashAlgorithm(models.TextChoices):
    # Entries written before the audit key existed: chained, but anyone can recompute them.
    SHA256 = "sha256", "SHA-256 (before the audit key)"
    HMAC_SHA256 = "hmac-sha256", "HMAC-SHA256 under the audit key"


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
    INVITATION_SENT = "invitation_sent", "Invitation sent"
    INVITATION_REVOKED = "invitation_revoked", "Invitation revoked"
    INVITATION_ACCEPTED = "invitation_accepted", "Invitation accepted"
    INVITATION_DECLINED = "invitation_declined", "Invitation declined"


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
    algorithm = models.CharField(
        max_length=16, choices=HashAlgorithm.choices, default=HashAlgorithm.HMAC_SHA256
    )
    # The fingerprint of the key that signed the entry (audit_key_id), never the key itself.
    key_id = models.CharField(max_length=16, blank=True, default="")

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

    def computed_hash(self, keys: AuditKeys | None = None) -> str:
        """The hash this entry's stored contents and `prev_hash` call for.

        Raises UnverifiableEntry when the entry names an algorithm or a key not known here.
        """
        if self.algorithm == HashAlgorithm.SHA256:
            return entry_hash(self.prev_hash, _hashed_fields(self))
        if self.algorithm != HashAlgorithm.HMAC_SHA256:
            raise UnverifiableEntry(f"its algorithm {self.algorithm!r} is unknown")
        key = (keys or audit_keys()).by_id.get(self.key_id)
        if key is None:
            raise UnverifiableEntry(
                f"it is signed with the audit key {self.key_id!r}, which is not in "
                "PORTAL_AUDIT_KEY (add the key that signed it back, after the current one)"
            )
        fields = {**_hashed_fields(self), "algorithm": self.algorithm, "key_id": self.key_id}
        return entry_hash(self.prev_hash, fields, key=key)


# --- The audit key --------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditKeys:
    """The keys of PORTAL_AUDIT_KEY by fingerprint: the first one signs, every one verifies."""

    signing_id: str
    by_id: Mapping[str, bytes]


def audit_key_id(key: str) -> str:
    """A key's fingerprint: names the key in an entry and cannot be turned back into it."""
    return hashlib.sha256(b"portal-audit-key-id:" + key.encode()).hexdigest()[:KEY_ID_LENGTH]


def audit_keys() -> AuditKeys:
    keys = [key for key in getattr(settings, "PORTAL_AUDIT_KEYS", []) if key]
    if not keys:
        raise ImproperlyConfigured("PORTAL_AUDIT_KEY must be set: the audit log is signed with it")
    by_id: dict[str, bytes] = {}
    for key in keys:
        by_id.setdefault(audit_key_id(key), key.encode())
    return AuditKeys(signing_id=audit_key_id(keys[0]), by_id=by_id)


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


def normalised_ip(raw: str | None) -> str | None:
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


def entry_hash(prev_hash: str, fields: Mapping[str, Any], *, key: bytes | None = None) -> str:
    """HMAC-SHA256 hex under `key` (plain SHA-256 without one) of `prev_hash` and `fields`."""
    canonical = json.dumps(
        fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    )
    message = (prev_hash + canonical).encode("ascii")
    if key is None:
        return hashlib.sha256(message).hexdigest()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


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
        ip=normalised_ip(ip),
        details=redact_details(dict(details or {})),
    )
    keys = audit_keys()
    entry.algorithm = HashAlgorithm.HMAC_SHA256
    entry.key_id = keys.signing_id
    with transaction.atomic():
        lock_chain()
        last = AuditEvent.objects.order_by("-id").values_list("hash", flat=True).first()
        # Stamped under the lock, so entries are in time order as well as in chain order.
        entry.at = timezone.now()
        entry.prev_hash = last or GENESIS_HASH
        entry.hash = entry.computed_hash(keys)
        entry.save()
    return entry


def lock_chain() -> None:
    """Makes this transaction the only writer of the chain until it ends (re-entrant)."""
    # SQLite needs nothing here: its transactions are IMMEDIATE (see settings), so the writer
    # holding the database lock is the only one reading the tail.
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [CHAIN_LOCK_KEY])


def client_ip(request: HttpRequest) -> str | None:
    """The client's address, as the audit log and the login lock-out (django-axes) both see it.

    REMOTE_ADDR; behind the TLS proxy (PORTAL_BEHIND_TLS_PROXY), the X-Forwarded-For entry that
    the outermost of the PORTAL_PROXY_COUNT proxies appended. Each proxy appends the address it
    was reached from, so the entries left of that one are whatever the client sent, and are
    ignored. None when there is no usable address.
    """
    remote = normalised_ip(request.META.get("REMOTE_ADDR"))
    if not getattr(settings, "PORTAL_BEHIND_TLS_PROXY", False):
        return remote
    forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    forwarded = [part for part in forwarded if part]
    if not forwarded:
        return remote
    proxies = max(1, int(getattr(settings, "PORTAL_PROXY_COUNT", 1)))
    # Fewer entries than proxies: the request skipped the outer ones, and every entry there was
    # written by a proxy, so the left-most is the nearest thing to the client.
    written_by_outermost = forwarded[-proxies] if len(forwarded) >= proxies else forwarded[0]
    return normalised_ip(written_by_outermost) or remote


# --- Verifying ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChainHead:
    """Where the chain ended when it was checked: record it elsewhere, check against it later.

    The chain binds every entry to all before it, so if the log still holds `count` entries and
    the last of those has `last_hash`, none of them was dropped or changed since.
    """

    count: int
    last_hash: str
    last_id: int | None = None

    def __post_init__(self) -> None:
        if self.count < 0:
            raise ValueError(f"a head's entry count cannot be negative, not {self.count}")
        if len(self.last_hash) != 64 or any(c not in "0123456789abcdef" for c in self.last_hash):
            raise ValueError(f"a head's hash is 64 lower-case hex digits, not {self.last_hash!r}")
        if self.count == 0 and self.last_hash != GENESIS_HASH:
            raise ValueError("a head of 0 entries has the hash of 64 zeros")

    def to_json(self) -> str:
        return json.dumps(
            {"count": self.count, "last_id": self.last_id, "last_hash": self.last_hash}
        )

    @classmethod
    def from_json(cls, text: str) -> ChainHead:
        """Reads what `to_json` wrote; raises ValueError saying what is wrong."""
        try:
            data = json.loads(text)
            count, last_hash = data["count"], data["last_hash"]
        except (ValueError, TypeError, KeyError):
            raise ValueError(
                'not a head: expected {"count": N, "last_hash": "..."} as printed by '
                "audit_verify --head"
            ) from None
        last_id = data.get("last_id")
        if not isinstance(count, int) or not isinstance(last_hash, str):
            raise ValueError("not a head: count must be a number and last_hash a string")
        return cls(
            count=count, last_hash=last_hash, last_id=last_id if isinstance(last_id, int) else None
        )


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    checked: int
    broken_at_id: int | None = None
    reason: str = ""
    # The head the check ended on (meaningful when ok), and how many entries predate the key.
    last_hash: str = GENESIS_HASH
    last_id: int | None = None
    unsigned: int = 0

    @property
    def head(self) -> ChainHead:
        return ChainHead(count=self.checked, last_hash=self.last_hash, last_id=self.last_id)


def verify_chain(*, batch_size: int = 2000, expected_head: ChainHead | None = None) -> ChainReport:
    """Walks the chain in id order and reports the first entry that breaks it.

    An edited entry no longer matches its own hash; a deleted, reordered or inserted entry
    leaves the next one pointing at a hash that is not its predecessor's. Plain SHA-256 entries
    are accepted only before the first signed one: after it, one is a forgery. With
    `expected_head`, the log must still hold that head: fewer entries means the newest were
    dropped, another hash at its position means the entries up to it were replaced.
    """
    keys = audit_keys()
    checked = unsigned = 0
    previous_hash, previous_id = GENESIS_HASH, None
    signed_seen = False

    def broken(entry_id: int | None, reason: str) -> ChainReport:
        return ChainReport(
            ok=False, checked=checked, broken_at_id=entry_id, reason=reason, unsigned=unsigned
        )

    for entry in _entries_in_chain_order(batch_size):
        checked += 1
        if entry.prev_hash != previous_hash:
            before = f"entry #{previous_id}" if previous_id is not None else "the start of the log"
            return broken(
                entry.id,
                f"it does not follow {before} (an entry between them was deleted, "
                "or entries were inserted or reordered)",
            )
        is_unsigned = entry.algorithm == HashAlgorithm.SHA256
        if is_unsigned and signed_seen:
            return broken(
                entry.id,
                "it has a plain SHA-256 hash after entries signed with the audit key "
                "(only entries from before the key may: this one was forged or downgraded)",
            )
        try:
            expected = entry.computed_hash(keys)
        except UnverifiableEntry as error:
            return broken(entry.id, str(error))
        if expected != entry.hash:
            return broken(entry.id, "its contents do not match its hash (the entry was edited)")
        if is_unsigned:
            unsigned += 1
        else:
            signed_seen = True
        if (
            expected_head is not None
            and checked == expected_head.count
            and entry.hash != expected_head.last_hash
        ):
            return broken(
                entry.id,
                f"it is entry {checked} of the log, where the recorded head is, but its hash "
                "is not the recorded one (entries up to the head were replaced)",
            )
        previous_hash, previous_id = entry.hash, entry.id
    if expected_head is not None and checked < expected_head.count:
        return broken(
            None,
            f"the log holds {checked} entries but the head recorded earlier had "
            f"{expected_head.count}: the newest {expected_head.count - checked} were dropped",
        )
    return ChainReport(
        ok=True, checked=checked, last_hash=previous_hash, last_id=previous_id, unsigned=unsigned
    )


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
# Row triggers do not fire on TRUNCATE: the statement trigger below (migration 0009) refuses it.

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
