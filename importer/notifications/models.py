from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone

from importer.teams.models import Team


class NotifyKind(models.TextChoices):
    IMPORT = "import", "Import"
    EXPORT = "export", "Export"
    COPY = "copy", "Copy"


class NotificationRequest(models.Model):
    """A user asked to be told when one import, export or copy ends."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notification_requests"
    )
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=10, choices=NotifyKind.choices)
    object_id = models.UUIDField()
    by_email = models.BooleanField(default=True)
    by_webhook = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)
    notified_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["user", "kind", "object_id"], name="notification_user_object_unique"
            )
        ]
        indexes = [models.Index(fields=["notified_at", "kind"], name="notification_pending_idx")]

    def __str__(self) -> str:
        return f"tell {self.user_id} when {self.kind} {self.object_id} ends"


class TeamWebhook(models.Model):
    """Where a team's notifications are POSTed, signed with an HMAC of a secret kept encrypted."""

    team = models.OneToOneField(Team, on_delete=models.CASCADE, related_name="webhook")
    # The URL may carry a token of its own (chat services put one in the path): it is kept
    # encrypted, and only its redacted form is shown and audited.
    url_encrypted = models.TextField()
    url_redacted = models.CharField(max_length=300)
    secret_encrypted = models.TextField()
    active = models.BooleanField(default=True)
    updated_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"webhook of {self.team_id}"


class DeliveryState(models.TextChoices):
    PENDING = "pending", "Pending"
    DELIVERED = "delivered", "Delivered"
    FAILED = "failed", "Failed"


class WebhookDelivery(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    webhook = models.ForeignKey(TeamWebhook, on_delete=models.CASCADE, related_name="deliveries")
    event = models.CharField(max_length=40)
    payload = models.JSONField()
    state = models.CharField(
        max_length=10, choices=DeliveryState.choices, default=DeliveryState.PENDING
    )
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    last_status = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["state", "next_attempt_at"], name="delivery_due_idx")]

    def __str__(self) -> str:
        return f"{self.event} delivery {self.pk} ({self.state})"
