"""Every URL pattern, as anonymous, operator, admin and auditor, with GET and POST."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from importer.batches.models import ImportBatch
from importer.bulk.models import BulkAction
from importer.imports.models import JobState
from importer.lifecycle.models import DerivedJob, DerivedKind
from importer.teams.models import Membership, Role, TeamInvitation
from importer.transfers.models import CopyChain, ExportTask
from tests.support.factories import make_job, make_team, make_user

pytestmark = pytest.mark.django_db

ANONYMOUS = "anonymous"
ROLES = (Role.OPERATOR, Role.AUDITOR, Role.ADMIN)  # admin last: it may delete the sample objects
EVERYONE = (*ROLES,)
IMPORTERS = (Role.OPERATOR, Role.ADMIN)
READERS = (Role.ADMIN, Role.AUDITOR)
ADMINS = (Role.ADMIN,)
PUBLIC = "public"
# Only a bearer token opens it, whatever the role; unset in the tests, so 404 for everyone.
TOKEN_ONLY = "token only"
# url name -> {method: who may use it}. A method missing here must answer 405 (or 403/redirect
# for someone who may not use the URL at all). Every URL pattern must be listed.
TABLE: dict[str, dict[str, tuple[str, ...] | str]] = {
    "login": {"GET": PUBLIC, "POST": PUBLIC},
    "logout": {"POST": PUBLIC},
    "healthz": {"GET": PUBLIC},
    "metrics": {"GET": TOKEN_ONLY},
    "dashboard": {"GET": EVERYONE},
    "imports_poll": {"GET": EVERYONE},
    "import_detail": {"GET": EVERYONE},
    "import_new": {"GET": IMPORTERS, "POST": IMPORTERS},
    "import_inspect": {"POST": IMPORTERS},
    "import_retry": {"GET": IMPORTERS, "POST": IMPORTERS},
    "history": {"GET": READERS},
    "history_csv": {"GET": READERS},
    "audit_log": {"GET": READERS},
    "audit_log_csv": {"GET": READERS},
    "team_members": {"GET": ADMINS, "POST": ADMINS},
    "member_role": {"POST": ADMINS},
    "member_remove": {"POST": ADMINS},
    "team_credentials": {"GET": ADMINS, "POST": ADMINS},
    "team_queue": {"POST": ADMINS},
    "team_switch": {"POST": EVERYONE},
    "team_choose": {"GET": EVERYONE},
    "invitations": {"GET": EVERYONE},
    "invitation_accept": {"POST": EVERYONE},
    "invitation_decline": {"POST": EVERYONE},
    "invitation_revoke": {"POST": ADMINS},
    "snapshot_delete": {"POST": ADMINS},
    "export_new": {"GET": IMPORTERS, "POST": IMPORTERS},
    "copy_new": {"GET": IMPORTERS, "POST": IMPORTERS},
    "transfers_poll": {"GET": EVERYONE},
    "export_detail": {"GET": EVERYONE},
    "export_cancel": {"POST": IMPORTERS},
    "export_share": {"POST": IMPORTERS},
    "copy_detail": {"GET": EVERYONE},
    "notify_request": {"POST": IMPORTERS},
    "transfer_settings": {"GET": ADMINS, "POST": ADMINS},
    "snapshot_detail": {"GET": EVERYONE},
    "snapshot_made_poll": {"GET": EVERYONE},
    "derived_detail": {"GET": EVERYONE},
    "volume_new": {"GET": IMPORTERS, "POST": IMPORTERS},
    "image_new": {"GET": IMPORTERS, "POST": IMPORTERS},
    "snapshot_copy_new": {"GET": IMPORTERS, "POST": IMPORTERS},
    "permissions_edit": {"GET": IMPORTERS, "POST": IMPORTERS},
    "tags_edit": {"GET": IMPORTERS, "POST": IMPORTERS},
    "bulk_export": {"GET": IMPORTERS, "POST": IMPORTERS},
    "bulk_copy": {"GET": IMPORTERS, "POST": IMPORTERS},
    "bulk_tags": {"GET": IMPORTERS, "POST": IMPORTERS},
    "bulk_delete": {"GET": ADMINS, "POST": ADMINS},
    "bulk_detail": {"GET": EVERYONE},
    "batch_new": {"GET": IMPORTERS, "POST": IMPORTERS},
    "batch_create": {"POST": IMPORTERS},
    "batch_detail": {"GET": EVERYONE},
    "batch_csv": {"GET": EVERYONE},
    "batch_retry": {"GET": IMPORTERS, "POST": IMPORTERS},
    "batch_retry_confirm": {"POST": IMPORTERS},
}
LIFECYCLE_ON_A_SNAPSHOT = (
    "snapshot_detail",
    "volume_new",
    "image_new",
    "snapshot_copy_new",
    "permissions_edit",
    "tags_edit",
)
ALLOWED = {200, 204, 286, 302, 422}
# The sample object of these is not the caller's own (another account's snapshot, another
# user's invitation): a user who may use the URL gets 404 for it.
NOT_THEIRS = {
    "snapshot_delete",
    "invitation_accept",
    "invitation_decline",
    *LIFECYCLE_ON_A_SNAPSHOT,
}


def url_names(patterns=None) -> Iterator[URLPattern]:
    for pattern in patterns if patterns is not None else get_resolver().url_patterns:
        if isinstance(pattern, URLResolver):
            yield from url_names(pattern.url_patterns)
        else:
            yield pattern


@pytest.fixture
def cast():
    team = make_team("ops")
    users = {role: make_user(f"{role}-user", team=team, role=role) for role in ROLES}
    job = make_job(users[Role.OPERATOR])
    failed = make_job(users[Role.OPERATOR], name="failed one")
    failed.mark_failed(code="4045", type="InvalidParameterValue", details="too small")
    extra = make_user("someone-else", team=team, role=Role.OPERATOR)
    membership = Membership.objects.get(user=extra)
    invited = User.objects.create_user("invited-user", password="a-long-test-password")
    invitation = TeamInvitation.objects.create(team=team, user=invited, role=Role.OPERATOR)
    export = ExportTask.objects.create(
        team=team, snapshot_id="snap-00000000", bucket="b-u-c", requested_by=users[Role.OPERATOR]
    )
    copy_export = ExportTask.objects.create(
        team=team, snapshot_id="snap-00000000", bucket="b-u-c", requested_by=users[Role.OPERATOR]
    )
    chain = CopyChain.objects.create(
        source_team=team,
        target_team=make_team("elsewhere"),
        snapshot_id="snap-00000000",
        name="copy",
        requested_by=users[Role.OPERATOR],
        export=copy_export,
    )
    kwargs = {
        "export_new": {"snapshot_id": "snap-00000000"},
        "copy_new": {"snapshot_id": "snap-00000000"},
        "export_detail": {"export_id": export.pk},
        "export_cancel": {"export_id": export.pk},
        "export_share": {"export_id": export.pk},
        "copy_detail": {"copy_id": chain.pk},
        "notify_request": {"kind": "export", "object_id": export.pk},
        "import_detail": {"job_id": job.pk},
        "import_retry": {"job_id": failed.pk},
        "member_role": {"membership_id": membership.pk},
        "member_remove": {"membership_id": membership.pk},
        "snapshot_delete": {"snapshot_id": "snap-00000000"},
        "invitation_accept": {"invitation_id": invitation.pk},
        "invitation_decline": {"invitation_id": invitation.pk},
        "invitation_revoke": {"invitation_id": invitation.pk},
    }
    derived = DerivedJob.objects.create(
        team=team,
        requested_by=users[Role.OPERATOR],
        source_snapshot_id="snap-00000000",
        kind=DerivedKind.COPY,
        parameters={"name": "copy", "description": ""},
    )
    kwargs["derived_detail"] = {"job_id": derived.pk}
    bulk = BulkAction.objects.create(team=team, created_by=users[Role.OPERATOR], kind="tags")
    kwargs["bulk_detail"] = {"bulk_id": bulk.pk}
    batch = ImportBatch.objects.create(team=team, created_by=users[Role.OPERATOR])
    for name in ("batch_detail", "batch_csv", "batch_retry", "batch_retry_confirm"):
        kwargs[name] = {"batch_id": batch.pk}
    for name in (*LIFECYCLE_ON_A_SNAPSHOT, "snapshot_made_poll"):
        kwargs[name] = {"snapshot_id": "snap-00000000"}
    data = {"team_switch": {"team": str(team.pk)}, "member_role": {"role": Role.AUDITOR}}
    return {"users": users, "kwargs": kwargs, "data": data, "team": team}


def test_it_lists_every_url_pattern_in_the_permission_table() -> None:
    names = {pattern.name for pattern in url_names()}
    assert names == set(TABLE), f"unlisted: {names - set(TABLE)}, gone: {set(TABLE) - names}"


def expected(name: str, method: str, who: str) -> set[int]:
    allowed = TABLE[name].get(method)
    if TABLE[name].get("GET") == TOKEN_ONLY:
        return {404} if method == "GET" else {405}
    public = TABLE[name].get("GET") == PUBLIC or TABLE[name].get("POST") == PUBLIC
    if who == ANONYMOUS and not public:
        return {302}  # to the login page
    if allowed is None:
        return {405} if (who != ANONYMOUS and _may_use(name, who)) or public else {403, 405}
    if allowed == PUBLIC or who in allowed:
        return ALLOWED | ({404} if name in NOT_THEIRS else set())
    return {403}


def _may_use(name: str, who: str) -> bool:
    return any(roles == PUBLIC or who in roles for roles in TABLE[name].values())


@pytest.mark.parametrize("who", [ANONYMOUS, *ROLES])
def test_it_answers_each_url_as_the_table_says(cast, who, api_on_sandbox) -> None:
    failures = []
    for pattern in url_names():
        name = pattern.name
        path = reverse(name, kwargs=cast["kwargs"].get(name, {}))
        for method in ("GET", "POST"):
            client = Client()
            if who != ANONYMOUS:
                client.force_login(cast["users"][who])
            if method == "GET":
                response = client.get(path)
            else:
                response = client.post(path, cast["data"].get(name, {}))
            allowed = expected(name, method, who)
            if response.status_code not in allowed:
                failures.append(
                    f"{method} {path} as {who}: {response.status_code}, wanted {sorted(allowed)}"
                )
            if (
                who == ANONYMOUS
                and response.status_code == 302
                and 302 in allowed
                and name not in ("login", "logout")
            ):
                assert response["Location"].startswith("/login/"), (method, path)
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("who", ROLES)
def test_it_enforces_csrf_on_every_post(cast, who) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(cast["users"][who])
    for pattern in url_names():
        if "POST" not in TABLE[pattern.name] or pattern.name == "login":
            continue
        path = reverse(pattern.name, kwargs=cast["kwargs"].get(pattern.name, {}))
        response = client.post(path, cast["data"].get(pattern.name, {}))
        assert response.status_code == 403, (
            f"POST {path} without a CSRF token: {response.status_code}"
        )


def test_it_hides_each_teams_jobs_from_the_other_team_both_ways(client) -> None:
    red, blue = make_team("red"), make_team("blue")
    red_user = make_user("red-op", team=red)
    blue_user = make_user("blue-admin", team=blue, role=Role.ADMIN)
    red_job = make_job(red_user, name="red secret")
    blue_job = make_job(blue_user, name="blue secret")
    blue_job.mark_failed(code="1", type="X", details="y")
    for user, own, other in ((red_user, red_job, blue_job), (blue_user, blue_job, red_job)):
        client.force_login(user)
        assert client.get(f"/imports/{own.pk}").status_code == 200
        assert client.get(f"/imports/{other.pk}").status_code == 404
        assert client.get(f"/imports/{other.pk}/retry").status_code in (403, 404)
        page = client.get("/").content.decode()
        assert own.name in page and other.name not in page
        assert client.post("/team/switch", {"team": str(other.team_id)}).status_code == 404
    client.force_login(blue_user)
    history = client.get("/history/").content.decode()
    assert "blue secret" in history and "red secret" not in history


def test_it_shows_no_import_button_to_an_auditor(client) -> None:
    client.force_login(make_user("auditor1", role=Role.AUDITOR))
    page = client.get("/").content.decode()
    assert "Import Snapshot" not in page
    assert client.post("/imports/new", {}).status_code == 403


def test_it_forgets_nothing_of_the_jobs_state_for_a_retry(client) -> None:
    operator = make_user("op1")
    job = make_job(operator, name="to retry", snapshot_size=5 * 1024**3)
    job.mark_failed(code="4045", type="InvalidParameterValue", details="URL expired")
    client.force_login(operator)
    page = client.get(f"/imports/{job.pk}/retry").content.decode()
    assert 'value="to retry"' in page and str(5 * 1024**3) in page
    assert job.state == JobState.ERROR
