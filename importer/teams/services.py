from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.utils import timezone

from importer.audit.chain import record
from importer.audit.models import AuditAction
from importer.core.crypto import encrypt_text
from importer.outscale.endpoints import oos_endpoint_check
from importer.teams.models import (
    INVITATION_LIFETIME,
    InvitationState,
    Membership,
    Role,
    Team,
    TeamInvitation,
)


class InvitationNotFound(Exception):
    """No such invitation for this user or team: answered with 404, saying nothing more."""


class InvitationRefused(Exception):
    """The request cannot be done; the message says why and what to do instead."""


def invitable_user(identifier: str) -> User | None:
    """The active user with this user name, or else with this email address (when only one has it).

    Only team admins call this, to invite: telling them "no such user" is what they need.
    """
    identifier = identifier.strip()
    if not identifier:
        return None
    user = User.objects.filter(username=identifier, is_active=True).first()
    if user is not None or "@" not in identifier:
        return user
    by_email = list(User.objects.filter(email__iexact=identifier, is_active=True)[:2])
    return by_email[0] if len(by_email) == 1 else None


def invitation_send(
    *, team: Team, actor: User, user: User, role: str, ip: str | None
) -> TeamInvitation:
    """Invites `user` to the team as `role`; raises InvitationRefused when that makes no sense."""
    name = user.get_username()
    now = timezone.now()
    with transaction.atomic():
        member = Membership.objects.filter(team=team, user=user).first()
        if member is not None:
            raise InvitationRefused(
                f"{name} is already a member of {team.name} ({Role(member.role).label}); "
                "change their role in the list of members instead."
            )
        # An expired invitation no longer counts: close it so that a new one can be sent.
        TeamInvitation.objects.filter(
            team=team, user=user, state=InvitationState.PENDING, expires_at__lte=now
        ).update(state=InvitationState.EXPIRED, answered_at=now)
        pending = TeamInvitation.objects.filter(
            team=team, user=user, state=InvitationState.PENDING
        ).first()
        if pending is not None:
            raise InvitationRefused(
                f"{name} already has a pending invitation to {team.name} (as "
                f"{Role(pending.role).label}, valid until {pending.expires_at:%Y-%m-%d}); "
                "revoke it below first to invite them with another role."
            )
        try:
            with transaction.atomic():
                invitation = TeamInvitation.objects.create(
                    team=team,
                    user=user,
                    role=role,
                    invited_by=actor,
                    created_at=now,
                    expires_at=now + INVITATION_LIFETIME,
                )
        except IntegrityError:
            raise InvitationRefused(
                f"{name} was invited to {team.name} a moment ago by another admin; reload the "
                "page to see the invitation."
            ) from None
        record(
            action=AuditAction.INVITATION_SENT,
            actor=actor,
            team=team,
            target=name,
            ip=ip,
            details={
                "invitation": invitation.pk,
                "role": role,
                "expires_at": invitation.expires_at,
            },
        )
    return invitation


def _expired(invitation: TeamInvitation) -> InvitationRefused:
    team = invitation.team.name
    return InvitationRefused(
        f"This invitation to {team} expired on {invitation.expires_at:%Y-%m-%d}; ask a team "
        f"admin of {team} to invite you again."
    )


def _still_pending(invitation: TeamInvitation | None) -> TeamInvitation:
    if invitation is None:
        raise InvitationNotFound
    if invitation.state != InvitationState.PENDING:
        raise InvitationRefused(
            f"This invitation to {invitation.team.name} was already "
            f"{invitation.get_state_display().lower()}."
        )
    return invitation


# What the audit log says when an invitation is closed as each state.
_CLOSED_AS = {
    InvitationState.ACCEPTED: AuditAction.INVITATION_ACCEPTED,
    InvitationState.DECLINED: AuditAction.INVITATION_DECLINED,
    InvitationState.REVOKED: AuditAction.INVITATION_REVOKED,
}


def _close(
    invitation: TeamInvitation, state: InvitationState, *, actor: User, ip: str | None, **more: Any
) -> dict[str, Any]:
    """Closes the pending invitation as `state` and audits it; returns the entry's details.

    The entry's target is the invited user, whoever answers (they, or an admin revoking).
    """
    target = invitation.user.get_username()
    TeamInvitation.objects.filter(pk=invitation.pk).update(state=state, answered_at=timezone.now())
    invitation.state = state
    details = {"invitation": invitation.pk, "role": invitation.role, **more}
    action = _CLOSED_AS[state]
    record(action=action, actor=actor, team=invitation.team, target=target, ip=ip, details=details)
    return details


def invitation_revoke(
    *, team: Team, actor: User, invitation_id: int, ip: str | None
) -> TeamInvitation:
    """Withdraws a pending invitation of the team (expired ones included)."""
    with transaction.atomic():
        invitation = _still_pending(_locked_invitation(pk=invitation_id, team=team))
        _close(invitation, InvitationState.REVOKED, actor=actor, ip=ip)
    return invitation


def _locked_invitation(**lookup: Any) -> TeamInvitation | None:
    """The invitation row, locked until the transaction ends (one answer wins a race)."""
    return (
        TeamInvitation.objects.select_for_update(of=("self",))
        .select_related("team", "user", "invited_by")
        .filter(**lookup)
        .first()
    )


def _open_invitation_of(user: User, invitation_id: int) -> TeamInvitation:
    found = _locked_invitation(pk=invitation_id, user=user)
    if found is not None and (found.state == InvitationState.EXPIRED or found.is_expired):
        raise _expired(found)
    return _still_pending(found)


def invitation_accept(*, user: User, invitation_id: int, ip: str | None) -> Membership:
    """The invited user says yes: the membership starts now, with the invitation's role."""
    with transaction.atomic():
        invitation = _open_invitation_of(user, invitation_id)
        membership, created = Membership.objects.get_or_create(
            team=invitation.team,
            user=user,
            defaults={"role": invitation.role, "created_at": timezone.now()},
        )
        inviter = invitation.invited_by
        details = _close(
            invitation,
            InvitationState.ACCEPTED,
            actor=user,
            ip=ip,
            invited_by=inviter.get_username() if inviter else None,
        )
        if created:
            _membership_changed(
                team=invitation.team,
                actor=user,
                user=user,
                role=invitation.role,
                previous=None,
                ip=ip,
                invitation=details["invitation"],
                invited_by=details["invited_by"],
            )
    return membership


def invitation_decline(*, user: User, invitation_id: int, ip: str | None) -> TeamInvitation:
    with transaction.atomic():
        invitation = _still_pending(_locked_invitation(pk=invitation_id, user=user))
        _close(invitation, InvitationState.DECLINED, actor=user, ip=ip)
    return invitation


def current_team_set(*, user: User, team_id: int) -> bool:
    """Remembers the team the user works in. False when the user is not in that team."""
    with transaction.atomic():
        # Locking the user's memberships serialises two switches racing from two tabs.
        mine = list(Membership.objects.select_for_update().filter(user=user).order_by("pk"))
        if team_id not in {membership.team_id for membership in mine}:
            return False
        Membership.objects.filter(user=user, is_current=True).exclude(team_id=team_id).update(
            is_current=False
        )
        Membership.objects.filter(user=user, team_id=team_id).update(is_current=True)
    return True


def team_credentials_set(
    *,
    team: Team,
    actor: User,
    region: str,
    endpoint: str,
    access_key: str,
    secret_key: str,
    ip: str | None,
) -> None:
    with transaction.atomic():
        Team.objects.filter(pk=team.pk).update(
            region=region,
            endpoint=endpoint,
            uses_environment_credentials=False,
            access_key_encrypted=encrypt_text(access_key),
            secret_key_encrypted=encrypt_text(secret_key),
            access_key_hint=access_key[-4:],
            credentials_updated_at=timezone.now(),
        )
        record(
            action=AuditAction.CREDENTIALS_CHANGED,
            actor=actor,
            team=team,
            target=team.name,
            ip=ip,
            details={
                "region": region,
                "endpoint": endpoint,
                "access_key_ends_with": access_key[-4:],
            },
        )
    team.refresh_from_db()


def import_queue_set(*, team: Team, actor: User, limit: int, ip: str | None) -> None:
    """How many of the team's imports may be in flight at once (the form checked its bounds);
    waiting imports take the new slots on the next poll cycle."""
    with transaction.atomic():
        before = Team.objects.select_for_update(no_key=True).get(pk=team.pk).imports_in_flight_limit
        Team.objects.filter(pk=team.pk).update(imports_in_flight_limit=limit)
        record(
            action=AuditAction.QUEUE_CHANGED,
            actor=actor,
            team=team,
            target=team.name,
            ip=ip,
            details={"imports_in_flight_limit": limit, "before": before},
        )
    team.imports_in_flight_limit = limit


def oos_endpoint_set(*, team: Team, endpoint: str) -> None:
    """The team's OOS endpoint (empty: the Region's), checked by the outbound guard as saved.

    Not audited here: the transfer settings page saves it with the webhook, and
    `notifications.services.webhook_set` writes the one entry for both. Raises DestinationRefused.
    """
    if endpoint:
        oos_endpoint_check(endpoint)
    Team.objects.filter(pk=team.pk).update(oos_endpoint=endpoint)
    team.oos_endpoint = endpoint


def _membership_changed(
    *,
    team: Team,
    actor: User,
    user: User,
    role: str | None,
    previous: str | None,
    ip: str | None,
    **more: Any,
) -> None:
    """Audits a member's role in the team; None means not a member (before joining, once gone)."""
    action, target = AuditAction.MEMBERSHIP_CHANGED, user.get_username()
    details = {"role": role, "previous_role": previous, **more}
    record(action=action, actor=actor, team=team, target=target, ip=ip, details=details)


def membership_set(*, team: Team, actor: User, user: User, role: str, ip: str | None) -> bool:
    """Changes the role of a member of the team. False when nothing changed.

    Nobody is added here: a new member joins by accepting an invitation
    (`team_services.invitation_accept`), never without saying yes.
    """
    with transaction.atomic():
        mine = Membership.objects.select_for_update().filter(team=team, user=user)
        membership = mine.order_by("pk").first()  # no join: lock this row only
        if membership is None or membership.role == role:
            return False
        previous = membership.role
        Membership.objects.filter(pk=membership.pk).update(role=role)
        _membership_changed(team=team, actor=actor, user=user, role=role, previous=previous, ip=ip)
    return True


def membership_remove(*, team: Team, actor: User, membership: Membership, ip: str | None) -> None:
    with transaction.atomic():
        membership.delete()
        _membership_changed(
            team=team, actor=actor, user=membership.user, role=None, previous=membership.role, ip=ip
        )
