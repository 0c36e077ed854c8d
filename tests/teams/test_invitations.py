"""Joining a team takes the user's consent: a team admin invites, the user accepts or declines;
and the team's admins see a member's sign-ins only from the moment they joined."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from importer.audit.chain import verify_chain
from importer.audit.models import AuditEvent
from importer.teams.models import InvitationState, Membership, Role, TeamInvitation
from tests.support.factories import make_team, make_user

pytestmark = pytest.mark.django_db

PASSWORD = "a-long-test-password"


@pytest.fixture
def team():
    return make_team("ops")


@pytest.fixture
def admin(client, team):
    user = make_user("team-admin", team=team, role=Role.ADMIN)
    client.force_login(user)
    return user


@pytest.fixture
def bob():
    return User.objects.create_user("bob", email="Bob@example.com", password=PASSWORD)


def client_of(user: User) -> Client:
    other = Client()
    other.force_login(user)
    return other


def actions_about(username: str) -> list[str]:
    entries = AuditEvent.objects.filter(target=username).order_by("id")
    return list(entries.values_list("action", flat=True))


def invite(client, who: str, role: str = Role.OPERATOR):
    return client.post("/team/members/", {"username": who, "role": role})


def test_it_invites_an_existing_user_who_joins_only_when_accepting(client, admin, bob) -> None:
    assert invite(client, "bob@example.com", Role.AUDITOR).status_code == 302
    # Nothing yet: bob has not said yes.
    assert not Membership.objects.filter(user=bob).exists()
    members_page = client.get("/team/members/").content.decode()
    assert "Pending invitations" in members_page and ">bob<" in members_page
    invitation = TeamInvitation.objects.get(user=bob)
    assert invitation.role == Role.AUDITOR and invitation.invited_by == admin
    assert invitation.expires_at - invitation.created_at == timedelta(days=14)

    bobs = client_of(bob)
    for page in (bobs.get("/invitations/"), bobs.get("/")):
        body = page.content.decode()
        assert "ops" in body and "Auditor" in body and "team-admin" in body and ">Accept<" in body
    before = timezone.now()
    assert bobs.get(f"/invitations/{invitation.pk}/accept").status_code == 405
    accepted = bobs.post(f"/invitations/{invitation.pk}/accept", follow=True)

    membership = Membership.objects.get(user=bob, team__name="ops")
    assert membership.role == Role.AUDITOR and membership.created_at >= before
    assert "You joined ops as Auditor." in accepted.content.decode()
    invitation.refresh_from_db()
    assert invitation.state == InvitationState.ACCEPTED and invitation.answered_at is not None
    assert bobs.get("/audit/").status_code == 200  # an auditor of ops now
    actions = actions_about("bob")
    assert actions == ["invitation_sent", "invitation_accepted", "membership_changed"]
    assert verify_chain().ok


def test_it_lets_the_user_decline_and_the_admin_revoke(client, admin, bob) -> None:
    invite(client, "bob")
    declined = TeamInvitation.objects.get(user=bob)
    bobs = client_of(bob)
    assert bobs.post(f"/invitations/{declined.pk}/decline").status_code == 302
    declined.refresh_from_db()
    assert declined.state == InvitationState.DECLINED
    # A declined invitation cannot be accepted afterwards.
    late = bobs.post(f"/invitations/{declined.pk}/accept", follow=True).content.decode()
    assert "already declined" in late

    invite(client, "bob", Role.ADMIN)
    revoked = TeamInvitation.objects.get(user=bob, state=InvitationState.PENDING)
    assert client.post(f"/team/invitations/{revoked.pk}/revoke").status_code == 302
    revoked.refresh_from_db()
    assert revoked.state == InvitationState.REVOKED
    assert ">Accept<" not in bobs.get("/invitations/").content.decode()
    refused = bobs.post(f"/invitations/{revoked.pk}/accept", follow=True).content.decode()
    assert "already revoked" in refused
    assert not Membership.objects.filter(user=bob).exists()
    actions = actions_about("bob")
    assert actions == [
        "invitation_sent",
        "invitation_declined",
        "invitation_sent",
        "invitation_revoked",
    ]


def test_it_says_clearly_why_an_invitation_cannot_be_sent(client, admin, bob, team) -> None:
    unknown = invite(client, "nobody@example.com")
    assert unknown.status_code == 422
    assert "No active user has this user name or email address" in unknown.content.decode()

    make_user("carol", team=team)
    member = invite(client, "carol")
    assert member.status_code == 422
    assert "carol is already a member of ops (Operator)" in member.content.decode()
    assert Membership.objects.get(user__username="carol").role == Role.OPERATOR

    invite(client, "bob")
    twice = invite(client, "bob", Role.ADMIN)
    assert twice.status_code == 422 and "already has a pending invitation" in twice.content.decode()
    assert TeamInvitation.objects.filter(user=bob).count() == 1

    # Once it has expired, it no longer counts: bob can be invited again.
    TeamInvitation.objects.filter(user=bob).update(expires_at=timezone.now() - timedelta(days=1))
    assert invite(client, "bob", Role.ADMIN).status_code == 302
    states = dict(TeamInvitation.objects.filter(user=bob).values_list("role", "state"))
    assert states == {Role.OPERATOR: InvitationState.EXPIRED, Role.ADMIN: InvitationState.PENDING}


def test_it_refuses_an_expired_invitation_and_anyone_elses(client, admin, bob) -> None:
    invite(client, "bob")
    invitation = TeamInvitation.objects.get(user=bob)
    carol = make_user("carol", team=make_team("elsewhere"))
    assert client_of(carol).post(f"/invitations/{invitation.pk}/accept").status_code == 404
    assert client_of(carol).post(f"/invitations/{invitation.pk}/decline").status_code == 404
    # Only an admin of the inviting team revokes it.
    other_admin = make_user("other-admin", team=make_team("elsewhere"), role=Role.ADMIN)
    assert (
        client_of(other_admin).post(f"/team/invitations/{invitation.pk}/revoke").status_code == 404
    )

    TeamInvitation.objects.filter(pk=invitation.pk).update(
        expires_at=timezone.now() - timedelta(minutes=1)
    )
    bobs = client_of(bob)
    assert ">Accept<" not in bobs.get("/invitations/").content.decode()
    page = bobs.post(f"/invitations/{invitation.pk}/accept", follow=True).content.decode()
    assert "expired" in page and "ask a team admin of ops to invite you again" in page
    assert not Membership.objects.filter(user=bob).exists()
    invitation.refresh_from_db()
    assert invitation.state == InvitationState.PENDING


def sign_in(address: str, user: User) -> Client:
    browser = Client()
    response = browser.post(
        "/login/", {"username": user.username, "password": PASSWORD}, REMOTE_ADDR=address
    )
    assert response.status_code == 302
    return browser


def test_it_shows_admins_a_members_sign_ins_only_from_when_they_joined(client, admin, bob) -> None:
    sign_in("198.51.100.1", bob)  # long before any invitation
    invite(client, "bob")
    bobs = sign_in("198.51.100.2", bob)  # invited, not yet a member
    invitation = TeamInvitation.objects.get(user=bob)
    bobs.post(f"/invitations/{invitation.pk}/accept")
    sign_in("198.51.100.3", bob)  # a member now

    page = client.get("/audit/?actor=bob&action=login").content.decode()
    assert "198.51.100.3" in page
    assert "198.51.100.1" not in page and "198.51.100.2" not in page
    csv = b"".join(client.get("/audit.csv?actor=bob").streaming_content).decode()
    assert "198.51.100.3" in csv
    assert "198.51.100.1" not in csv and "198.51.100.2" not in csv
    # The team's own entries about bob (the invitation) stay visible from their start.
    assert "Invitation sent" in client.get("/audit/?actor=team-admin").content.decode()


def test_it_hides_the_sign_ins_a_member_made_before_joining(client, admin, bob, team) -> None:
    sign_in("198.51.100.7", bob)
    Membership.objects.create(user=bob, team=team, role=Role.OPERATOR)  # joins now
    sign_in("198.51.100.8", bob)
    page = client.get("/audit/?actor=bob").content.decode()
    assert "198.51.100.8" in page and "198.51.100.7" not in page
