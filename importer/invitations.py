"""Invitations to join a team: a team admin invites an existing user, who accepts or declines.

Nobody becomes a member of a team without saying yes: the membership is created only when the
invited user accepts. Imported at the end of `importer.models`, so that Django finds the model in
the `importer` app.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from importer.models import Role, Team

INVITATION_LIFETIME = timedelta(days=14)


def invitation_expiry() -> datetime:
    """When an invitation sent now stops being valid (the model's default; migrations name it)."""
    return timezone.now() + INVITATION_LIFETIME


class InvitationState(models.TextChoices):
    PENDING = "pending", "Pending"
    ACCEPTED = "accepted", "Accepted"
    DECLINED = "declined", "Declined"
    REVOKED = "revoked", "Revoked"
    # A pending invitation past its expiry is closed as expired when the user is invited again.
    EXPIRED = "expired", "Expired"


class TeamInvitationQuerySet(models.QuerySet["TeamInvitation"]):
    def open(self, *, now: datetime | None = None) -> TeamInvitationQuerySet:
        """Pending and not yet expired: what the invited user may still accept."""
        return self.filter(state=InvitationState.PENDING, expires_at__gt=now or timezone.now())

    def open_for(self, user_id: int | None) -> TeamInvitationQuerySet:
        """What the user may still answer, oldest first, for the dashboard and Invitations."""
        if user_id is None:
            return self.none()
        return (
            self.open()
            .filter(user_id=user_id)
            .select_related("team", "invited_by")
            .order_by("created_at", "id")
        )


class TeamInvitation(models.Model):
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="invitations")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="team_invitations"
    )
    role = models.CharField(max_length=10, choices=Role.choices)
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    state = models.CharField(
        max_length=10, choices=InvitationState.choices, default=InvitationState.PENDING
    )
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(default=invitation_expiry)
    answered_at = models.DateTimeField(
        null=True, blank=True, help_text="When it was accepted, declined, revoked or expired"
    )

    objects = TeamInvitationQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            # One open question per user and team: a second invitation would only confuse.
            models.UniqueConstraint(
                fields=["team", "user"],
                condition=Q(state="pending"),
                name="invitation_one_pending_per_team_user",
            )
        ]
        indexes = [models.Index(fields=["user", "state"], name="invitation_user_state_idx")]

    def __str__(self) -> str:
        return f"{self.user} to {self.team} as {self.role} ({self.state})"

    @property
    def is_expired(self) -> bool:
        return self.state == InvitationState.PENDING and self.expires_at <= timezone.now()

    @property
    def is_open(self) -> bool:
        return self.state == InvitationState.PENDING and not self.is_expired
