from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn

from django.conf import settings
from django.db import models
from django.utils import timezone

from importer.audit.hashing import AuditKeys, audit_keys, entry_hash, hashed_fields

if TYPE_CHECKING:
    pass


ACTOR_NAME_LENGTH = 150


TEAM_NAME_LENGTH = 100


TARGET_LENGTH = 255


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
    VOLUME_REQUESTED = "volume_requested", "Volume requested"
    IMAGE_REQUESTED = "image_requested", "OMI requested"
    SNAPSHOT_COPY_REQUESTED = "snapshot_copy_requested", "Snapshot copy requested"
    DERIVED_STATE = "derived_state", "Volume, OMI or copy state changed"
    PERMISSIONS_CHANGED = "permissions_changed", "Snapshot permissions changed"
    TAGS_EDITED = "tags_edited", "Snapshot tags edited"
    BATCH_SUBMITTED = "batch_submitted", "Bulk import submitted"
    QUEUE_CHANGED = "queue_changed", "Import queue changed"
    BULK_SUBMITTED = "bulk_submitted", "Bulk action submitted"
    BATCH_RETRIED = "batch_retried", "Failed rows of a bulk import retried"


def _refuse(what: str) -> NoReturn:
    raise AuditLogIsAppendOnly(f"The audit log is append-only: {what} is not allowed.")


def _refusing(what: str) -> Callable[..., NoReturn]:
    """A queryset method that refuses, naming what was refused."""

    def refuse(self: Any, *args: Any, **kwargs: Any) -> NoReturn:
        _refuse(what)

    return refuse


class AuditEventQuerySet(models.QuerySet["AuditEvent"]):
    """Reads only: every method that would change or bulk-write rows refuses."""

    update = _update = _refusing("update()")
    delete = _raw_delete = _refusing("delete()")
    bulk_update = _refusing("bulk_update()")
    # bulk_create would skip record(), so the new rows would not be chained.
    bulk_create = _refusing("bulk_create()")
    update_or_create = _refusing("update_or_create()")


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
        ordering = ["-at", "-id"]
        indexes = [
            # The log's pages walk it from an entry's (at, id); members' sign-ins are team NULL.
            models.Index(fields=["team", "at", "id"], name="audit_team_at_id_idx"),
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
            return entry_hash(self.prev_hash, hashed_fields(self))
        if self.algorithm != HashAlgorithm.HMAC_SHA256:
            raise UnverifiableEntry(f"its algorithm {self.algorithm!r} is unknown")
        key = (keys or audit_keys()).by_id.get(self.key_id)
        if key is None:
            raise UnverifiableEntry(
                f"it is signed with the audit key {self.key_id!r}, which is not in "
                "PORTAL_AUDIT_KEY (add the key that signed it back, after the current one)"
            )
        fields = {**hashed_fields(self), "algorithm": self.algorithm, "key_id": self.key_id}
        return entry_hash(self.prev_hash, fields, key=key)


# Distinct user names kept per tally: enough to see what was tried, bounded whatever is sent.
MAX_NAMES_PER_TALLY = 20


class LoginFailureTally(models.Model):
    """The failed logins from one address in one minute.

    `entry` is the audit entry of the first of them; `count` includes it. The tally is a counter
    beside the chain, not part of it: the chain proves that the first failure happened, not how
    many followed.
    """

    address = models.CharField(max_length=45, blank=True)  # "" when the address is unknown
    minute = models.DateTimeField()
    count = models.PositiveIntegerField(default=1)
    usernames = models.JSONField(default=list, blank=True)
    last_at = models.DateTimeField()
    entry = models.ForeignKey(
        AuditEvent, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+"
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["address", "minute"], name="login_tally_once_a_minute")
        ]

    def __str__(self) -> str:
        return f"{self.count} failed logins from {self.address or 'unknown'} at {self.minute:%H:%M}"
