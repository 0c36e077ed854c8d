from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

# The most a team admin may let in flight at once: beyond it the API throttles anyway.
MAX_IMPORTS_IN_FLIGHT = 50


class Team(models.Model):
    """A team owns one OUTSCALE account: its Region, API endpoint and credentials.

    Credentials are either the `OSC_*` environment's (the default team) or entered by a team
    admin and stored encrypted; they are never shown back, only the access key's last characters.
    """

    name = models.CharField(max_length=100, unique=True)
    region = models.CharField(max_length=40, default="eu-west-2")
    endpoint = models.CharField(
        max_length=255, blank=True, help_text="Empty: https://api.{region}.outscale.com/api/v1"
    )
    uses_environment_credentials = models.BooleanField(default=False)
    access_key_encrypted = models.TextField(blank=True)
    secret_key_encrypted = models.TextField(blank=True)
    access_key_hint = models.CharField(max_length=8, blank=True)
    credentials_updated_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    oos_endpoint = models.CharField(
        max_length=255, blank=True, help_text="Empty: https://oos.{region}.outscale.com"
    )
    # How many of the team's imports the API may be working on at once: more wait their turn.
    imports_in_flight_limit = models.PositiveSmallIntegerField(
        "imports in flight at once",
        default=5,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_IMPORTS_IN_FLIGHT)],
        help_text="Imports beyond this many wait for a slot, oldest first.",
    )
    # While the API throttles the account, none of its imports is sent before this time.
    api_throttled_until = models.DateTimeField(null=True, blank=True)
    # Throttling answers in a row: each one doubles the whole account's pause.
    api_throttle_streak = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def has_credentials(self) -> bool:
        return self.uses_environment_credentials or bool(self.secret_key_encrypted)


class Role(models.TextChoices):
    OPERATOR = "operator", "Operator"
    ADMIN = "admin", "Team admin"
    AUDITOR = "auditor", "Auditor"


# Who may import and change things in a team; auditors only read.
IMPORTERS = (Role.OPERATOR, Role.ADMIN)


# Who may read the team's import history and audit log.
READERS_OF_HISTORY = (Role.ADMIN, Role.AUDITOR)


class Membership(models.Model):
    """A user's role in a team, from the day they joined it (accepted its invitation)."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=Role.choices)
    # The joining date: what the team's admins may see of the member starts here.
    created_at = models.DateTimeField(
        "joined", default=timezone.now, help_text="When the user joined the team"
    )
    # The team the user chose to work in; remembered across sessions and devices.
    is_current = models.BooleanField(default=False)

    class Meta:
        ordering = ["team__name", "user__username"]
        constraints = [
            models.UniqueConstraint(fields=["user", "team"], name="membership_user_team_unique"),
            models.UniqueConstraint(
                fields=["user"], condition=Q(is_current=True), name="membership_one_current"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.team} as {self.role}"

    @property
    def can_import(self) -> bool:
        return self.role in IMPORTERS


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
