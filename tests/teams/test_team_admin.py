"""A team admin's pages: credentials, members, deleting a snapshot."""

from __future__ import annotations

import pytest

from importer.audit.models import AuditAction, AuditEvent
from importer.outscale.accounts import api_client
from importer.teams.models import Membership, Role, Team, TeamInvitation
from sandbox.signing import Account
from tests.support.factories import make_team, make_user

pytestmark = pytest.mark.django_db

SECOND_ACCOUNT = Account(
    access_key="SECONDTEAMKEY0000042",
    secret_key="second-team-secret-key-000000000000000000",
    account_id="210987654321",
)


@pytest.fixture
def admin(client):
    user = make_user("team-admin", team=make_team("ops"), role=Role.ADMIN)
    client.force_login(user)
    return user


def test_it_stores_credentials_encrypted_and_never_shows_the_secret(
    client, admin, api_on_sandbox
) -> None:
    if SECOND_ACCOUNT.access_key not in {account.access_key for account in api_on_sandbox.accounts}:
        api_on_sandbox.add_account(SECOND_ACCOUNT)
    response = client.post(
        "/team/credentials/",
        {
            "region": "eu-west-2",
            "endpoint": api_on_sandbox.api_url,
            "access_key": SECOND_ACCOUNT.access_key,
            "secret_key": SECOND_ACCOUNT.secret_key,
        },
    )
    assert response.status_code == 302
    team = Team.objects.get(name="ops")
    assert not team.uses_environment_credentials and team.access_key_hint == "0042"
    stored = repr(Team.objects.filter(pk=team.pk).values().get())
    assert SECOND_ACCOUNT.secret_key not in stored and SECOND_ACCOUNT.access_key not in stored
    page = client.get("/team/credentials/").content.decode()
    assert "0042" in page and SECOND_ACCOUNT.secret_key not in page
    assert SECOND_ACCOUNT.access_key not in page
    entry = AuditEvent.objects.get(action=AuditAction.CREDENTIALS_CHANGED)
    assert SECOND_ACCOUNT.secret_key not in repr(entry.details)
    # The team's client now signs with the new account: it sees that account's snapshots only.
    assert api_client(team).read_snapshots() == []


def test_it_refuses_credentials_that_cannot_be_right(client, admin) -> None:
    response = client.post(
        "/team/credentials/",
        {
            "region": "mars-1",
            "endpoint": "ftp://x",
            "access_key": "AK with space",
            "secret_key": "a b",
        },
    )
    assert response.status_code == 422
    page = response.content.decode()
    assert "letters and digits only" in page and "no spaces" in page
    assert Team.objects.get(name="ops").uses_environment_credentials


def test_it_adds_changes_and_removes_members_with_an_audit_trail(client, admin) -> None:
    bob = make_user("bob", team=make_team("elsewhere"))
    assert client.post("/team/members/", {"username": "bob", "role": "auditor"}).status_code == 302
    # Bob joins once he accepts the invitation.
    invitation = TeamInvitation.objects.get(user=bob, team__name="ops")
    client.force_login(bob)
    client.post(f"/invitations/{invitation.pk}/accept")
    client.force_login(admin)
    membership = Membership.objects.get(user=bob, team__name="ops")
    assert membership.role == Role.AUDITOR
    client.post(f"/team/members/{membership.pk}/role", {"role": "operator"})
    membership.refresh_from_db()
    assert membership.role == Role.OPERATOR
    client.post(f"/team/members/{membership.pk}/remove")
    assert not Membership.objects.filter(pk=membership.pk).exists()
    changes = AuditEvent.objects.filter(action=AuditAction.MEMBERSHIP_CHANGED, target="bob")
    assert [entry.details["role"] for entry in changes.order_by("id")] == [
        "auditor",
        "operator",
        None,
    ]
    unknown = client.post("/team/members/", {"username": "nobody", "role": "operator"})
    assert unknown.status_code == 422 and "No active user" in unknown.content.decode()


def test_it_deletes_a_snapshot_of_the_team_and_404s_on_another_accounts(
    client, admin, api_on_sandbox
) -> None:
    created = api_on_sandbox.call(
        "CreateSnapshot",
        {
            "FileLocation": api_on_sandbox.presign(),
            "SnapshotSize": 10 * 1024**3,
            "ClientToken": "del-1",
        },
    ).json()["Snapshot"]["SnapshotId"]
    if SECOND_ACCOUNT.access_key not in {account.access_key for account in api_on_sandbox.accounts}:
        api_on_sandbox.add_account(SECOND_ACCOUNT)
    theirs = api_on_sandbox.call(
        "CreateSnapshot",
        {
            "FileLocation": api_on_sandbox.presign(),
            "SnapshotSize": 10 * 1024**3,
            "ClientToken": "del-2",
        },
        account=SECOND_ACCOUNT,
    ).json()["Snapshot"]["SnapshotId"]
    assert client.post(f"/snapshots/{theirs}/delete").status_code == 404
    assert client.post(f"/snapshots/{created}/delete").status_code == 302
    state = api_on_sandbox.state()["snapshots"]
    assert [s["SnapshotId"] for s in state[SECOND_ACCOUNT.account_id]] == [theirs]
    assert AuditEvent.objects.filter(action="snapshot_deleted", target=created).exists()
