"""A snapshot's page and its action dialogs, as each role sees them, over the sandbox."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from importer.audit.models import AuditAction, AuditEvent
from importer.lifecycle import services
from importer.lifecycle.models import DerivedJob, DerivedKind
from importer.teams.models import Role, Team
from sandbox.run import Sandbox
from tests.support.factories import make_team, make_user
from tests.transfers.test_exports import completed_snapshot

pytestmark = pytest.mark.django_db

ACTIONS = ["volume_new", "image_new", "permissions_edit", "snapshot_copy_new", "tags_edit"]
TITLES = {
    "volume_new": "CREATE VOLUME",
    "image_new": "CREATE OMI",
    "permissions_edit": "UPDATE SNAPSHOT PERMISSIONS",
    "snapshot_copy_new": "COPY SNAPSHOT",
    "tags_edit": "EDIT TAGS",
}


def signed_in(client: Client, role: str = Role.OPERATOR, team: Team | None = None) -> Client:
    team = team or make_team("ops")
    user = make_user(f"{role}-{uuid.uuid4().hex[:6]}", team=team, role=role)
    client.force_login(user)
    return client


def url(name: str, snapshot_id: str) -> str:
    return reverse(name, kwargs={"snapshot_id": snapshot_id})


def form_keys(client: Client, name: str, snapshot_id: str) -> dict[str, str]:
    """The hidden idempotency key and signature of the dialog as it is shown."""
    page = client.get(url(name, snapshot_id)).content.decode()
    values = {}
    for field in ("idempotency_key", "idempotency_signature"):
        start = page.index(f'name="{field}" value="') + len(f'name="{field}" value="')
        values[field] = page[start : page.index('"', start)]
    return values


def test_the_snapshot_page_shows_every_action_as_a_button_to_an_operator(
    api_on_sandbox: Sandbox, client: Client
) -> None:
    snapshot_id = completed_snapshot(api_on_sandbox)
    signed_in(client)
    page = client.get(url("snapshot_detail", snapshot_id)).content.decode()
    for label in ("Create volume", "Create OMI", "Update permissions", "Copy", "Edit tags"):
        assert f">{label}</button>" in page
    assert "Made from this snapshot" in page


@pytest.mark.parametrize("name", ACTIONS)
def test_each_dialog_opens_with_its_cockpit_title_as_a_page_and_in_the_dialog(
    api_on_sandbox: Sandbox, client: Client, name: str
) -> None:
    snapshot_id = completed_snapshot(api_on_sandbox)
    signed_in(client)
    page = client.get(url(name, snapshot_id))
    assert page.status_code == 200 and f"<h1>{TITLES[name]}</h1>" in page.content.decode()
    partial = client.get(url(name, snapshot_id), headers={"HX-Request": "true"})
    body = partial.content.decode()
    assert f'<h2 id="action-dialog-title">{TITLES[name]}</h2>' in body and "<html" not in body


def test_an_auditor_sees_the_page_and_what_was_made_but_no_action(
    api_on_sandbox: Sandbox, client: Client
) -> None:
    snapshot_id = completed_snapshot(api_on_sandbox)
    team = make_team("ops")
    maker = make_user("maker", team=team)
    services.derived_create(
        team=team, user=maker, snapshot_id=snapshot_id, kind=DerivedKind.COPY,
        parameters={"name": "kept", "description": ""},
    )  # fmt: skip
    signed_in(client, Role.AUDITOR, team)
    page = client.get(url("snapshot_detail", snapshot_id)).content.decode()
    assert "Snapshot copy" in page and "kept" in page
    assert "Create volume" not in page and "Edit tags" not in page
    for name in ACTIONS:
        assert client.get(url(name, snapshot_id)).status_code == 403
        assert client.post(url(name, snapshot_id), {}).status_code == 403
    assert DerivedJob.objects.count() == 1


def test_another_teams_snapshot_and_job_answer_404(api_on_sandbox: Sandbox, client: Client) -> None:
    snapshot_id = completed_snapshot(api_on_sandbox)
    team = make_team("ops")
    job = services.derived_create(
        team=team, user=make_user("maker", team=team), snapshot_id=snapshot_id,
        kind=DerivedKind.COPY, parameters={"name": "x", "description": ""},
    )  # fmt: skip
    stranger = make_team("strangers", uses_environment_credentials=True)
    signed_in(client, Role.OPERATOR, stranger)
    assert client.get(reverse("derived_detail", kwargs={"job_id": job.pk})).status_code == 404
    assert client.get(url("snapshot_detail", "snap-0000000f")).status_code == 404
    assert client.get(url("volume_new", "not-a-snapshot")).status_code == 404


def test_create_volume_refuses_each_bad_field_with_its_message_and_saves_nothing(
    api_on_sandbox: Sandbox, client: Client
) -> None:
    snapshot_id = completed_snapshot(api_on_sandbox)
    signed_in(client)
    keys = form_keys(client, "volume_new", snapshot_id)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"size_gib": "9"}, "Use at least 10 GiB"),
        ({"size_gib": "14902"}, "at most 14901 GiB"),
        ({"size_gib": "lots"}, "Enter a whole number of GiB"),
        ({"size_gib": "9" * 30}, "at most 14901 GiB"),
        ({"size_gib": "1" * 400}, "Enter a whole number of GiB"),
        ({"size_gib": "１２"}, "Enter a whole number of GiB"),
        ({"size_gib": "+12"}, "Enter a whole number of GiB"),
        ({"size_gib": "12.0"}, "Enter a whole number of GiB"),
        ({"volume_type": "io1", "iops": "1_000"}, "Enter a whole number of IOPS"),
        ({"volume_type": "io1"}, "An io1 volume needs its number of IOPS"),
        ({"volume_type": "io1", "iops": "5000"}, "takes at most 3,000 IOPS"),
        ({"volume_type": "gp2", "iops": "500"}, "IOPS are set for io1 volumes only"),
        ({"subregion_name": "eu-west-2z"}, "Select a valid choice"),
        ({"subregion_name": "eu-west-2a\x00"}, "Select a valid choice"),
    ]
    for change, message in cases:
        data = {"subregion_name": "eu-west-2a", "volume_type": "standard", "size_gib": "10"}
        response = client.post(url("volume_new", snapshot_id), {**data, **change, **keys})
        assert response.status_code == 422, change
        assert message in response.content.decode(), change
    assert not DerivedJob.objects.exists()


def test_create_volume_posted_twice_makes_one_job(api_on_sandbox: Sandbox, client: Client) -> None:
    snapshot_id = completed_snapshot(api_on_sandbox)
    signed_in(client)
    data = {
        "subregion_name": "eu-west-2b",
        "volume_type": "io1",
        "size_gib": "20",
        "iops": "1000",
        **form_keys(client, "volume_new", snapshot_id),
    }
    first = client.post(url("volume_new", snapshot_id), data)
    second = client.post(url("volume_new", snapshot_id), data, headers={"HX-Request": "true"})
    assert first.status_code == 302 and first["Location"] == url("snapshot_detail", snapshot_id)
    assert second.status_code == 200 and second["HX-Redirect"] == url(
        "snapshot_detail", snapshot_id
    )
    job = DerivedJob.objects.get()
    assert str(job.pk) == data["idempotency_key"] and job.parameters["iops"] == 1000
    assert AuditEvent.objects.filter(action=AuditAction.VOLUME_REQUESTED).count() == 1


def test_a_key_signed_for_someone_else_makes_nothing(
    api_on_sandbox: Sandbox, client: Client
) -> None:
    snapshot_id = completed_snapshot(api_on_sandbox)
    signed_in(client)
    keys = form_keys(client, "snapshot_copy_new", snapshot_id)
    other = signed_in(Client())
    response = other.post(
        url("snapshot_copy_new", snapshot_id), {"name": "stolen", "description": "", **keys}
    )
    assert response.status_code == 422 and "opened by someone else" in response.content.decode()
    assert not DerivedJob.objects.exists()


def test_create_omi_checks_its_name_device_and_size(
    api_on_sandbox: Sandbox, client: Client
) -> None:
    snapshot_id = completed_snapshot(api_on_sandbox)
    signed_in(client)
    good = {
        "image_name": "web (v2)",
        "description": "",
        "architecture": "x86_64",
        "boot_mode": "uefi",
        "root_device_name": "/dev/sda1",
        "volume_type": "standard",
        "volume_size_gib": "10",
        "delete_on_vm_deletion": "on",
    }
    cases = [
        ({"image_name": "ab"}, "Use 3 to 128 letters"),
        ({"image_name": "<script>x</script>"}, "Use 3 to 128 letters"),
        ({"root_device_name": "/dev/xvda"}, "root device /dev/sda1: use that"),
        ({"image_name": "it's [mine]"}, "Use 3 to 128 letters"),
        ({"volume_size_gib": "2"}, "Use at least 10 GiB"),
        ({"architecture": "arm64"}, "Select a valid choice"),
        ({"description": "a\u202eb"}, "invisible or control character"),
    ]
    for change, message in cases:
        response = client.post(url("image_new", snapshot_id), {**good, **change})
        assert response.status_code == 422 and message in response.content.decode(), change
    assert not DerivedJob.objects.exists()
    response = client.post(url("image_new", snapshot_id), good)
    assert response.status_code == 302
    job = DerivedJob.objects.get()
    assert job.kind == DerivedKind.IMAGE and job.parameters["boot_mode"] == "uefi"
    assert job.parameters["delete_on_vm_deletion"] is True


def test_permissions_dialog_lists_the_accounts_and_asks_before_making_it_public(
    api_on_sandbox: Sandbox, client: Client
) -> None:
    snapshot_id = completed_snapshot(api_on_sandbox)
    signed_in(client)
    target = url("permissions_edit", snapshot_id)
    bad = client.post(target, {"add_account_ids": "123456789012, 12345"})
    assert (
        bad.status_code == 422 and "“12345” is not an OUTSCALE account ID" in bad.content.decode()
    )
    assert client.post(target, {"add_account_ids": "123456789012, 210987654321"}).status_code == 302
    page = client.get(target).content.decode()
    assert 'value="123456789012"' in page and "Remove <span" in page
    unconfirmed = client.post(target, {"public": "on"})
    assert (
        unconfirmed.status_code == 422 and "tick the box to confirm" in unconfirmed.content.decode()
    )
    assert client.post(target, {"remove_account_ids": ["210987654321"]}).status_code == 302
    nothing = client.post(target, {})
    assert nothing.status_code == 422 and "Nothing would change" in nothing.content.decode()
    assert client.post(target, {"public": "on", "confirm_public": "on"}).status_code == 302
    read = api_on_sandbox.call("ReadSnapshots", {"Filters": {"SnapshotIds": [snapshot_id]}})
    permissions = read.json()["Snapshots"][0]["PermissionsToCreateVolume"]
    assert permissions == {"AccountIds": ["123456789012"], "GlobalPermission": True}
    assert AuditEvent.objects.filter(action=AuditAction.PERMISSIONS_CHANGED).count() == 3


def test_tags_dialog_edits_rows_and_refuses_bad_ones(
    api_on_sandbox: Sandbox, client: Client
) -> None:
    snapshot_id = completed_snapshot(api_on_sandbox)
    signed_in(client)
    target = url("tags_edit", snapshot_id)

    def rows(*pairs: tuple[str, str]) -> dict[str, str]:
        data = {"tags-TOTAL_FORMS": str(len(pairs)), "tags-INITIAL_FORMS": "0"}
        for index, (key, value) in enumerate(pairs):
            data[f"tags-{index}-key"], data[f"tags-{index}-value"] = key, value
        return data

    cases = [
        (rows(("", "orphan")), "Enter a key for this value"),
        (rows(("k" * 256, "v")), "at most 255 characters"),
        (rows(("env", "v" * 256)), "at most 255 characters"),
        (rows(("env", "a"), ("env", "b")), "is there twice"),
        ({"tags-TOTAL_FORMS": "x"}, "ManagementForm data is missing"),
    ]
    for data, message in cases:
        response = client.post(target, data)
        assert response.status_code == 422 and message in response.content.decode(), data
    assert client.post(target, rows(("Name", "db"), ("env", "prod"))).status_code == 302
    assert client.post(target, rows(("Name", "db"), ("", ""))).status_code == 302
    read = api_on_sandbox.call("ReadSnapshots", {"Filters": {"SnapshotIds": [snapshot_id]}})
    assert read.json()["Snapshots"][0]["Tags"] == [{"Key": "Name", "Value": "db"}]


def test_the_made_list_polls_until_nothing_is_in_flight(
    api_on_sandbox: Sandbox, client: Client
) -> None:
    snapshot_id = completed_snapshot(api_on_sandbox)
    signed_in(client)
    team = Team.objects.get(name="ops")
    job = services.derived_create(
        team=team, user=make_user("maker", team=team), snapshot_id=snapshot_id,
        kind=DerivedKind.VOLUME,
        parameters={"subregion_name": "eu-west-2a", "volume_type": "standard",
                    "size_gib": 10, "iops": None},
    )  # fmt: skip
    poll = client.get(url("snapshot_made_poll", snapshot_id))
    assert poll.status_code == 200 and 'hx-trigger="every 3s"' in poll.content.decode()
    job.mark_failed(code="X", type="Y", details="gone")
    poll = client.get(url("snapshot_made_poll", snapshot_id))
    assert poll.status_code == 286 and "gone" in poll.content.decode()


def test_deleting_a_snapshot_an_omi_uses_says_which_omi(
    api_on_sandbox: Sandbox, client: Client
) -> None:
    snapshot_id = completed_snapshot(api_on_sandbox)
    image = api_on_sandbox.call(
        "CreateImage",
        {
            "ImageName": "still-in-use",
            "RootDeviceName": "/dev/sda1",
            "BlockDeviceMappings": [
                {"DeviceName": "/dev/sda1", "Bsu": {"SnapshotId": snapshot_id}}
            ],
        },
    ).json()["Image"]["ImageId"]
    signed_in(client, Role.ADMIN)
    page = client.get(url("snapshot_detail", snapshot_id)).content.decode()
    assert ">Delete</button>" in page
    answer = client.post(url("snapshot_delete", snapshot_id), follow=True)
    said = answer.content.decode()
    assert f"The OMI {image} (still-in-use) still uses {snapshot_id}" in said
    assert "Delete the OMI first" in said
    read = api_on_sandbox.call("ReadSnapshots", {"Filters": {"SnapshotIds": [snapshot_id]}})
    assert len(read.json()["Snapshots"]) == 1
    assert not AuditEvent.objects.filter(action=AuditAction.SNAPSHOT_DELETED).exists()


def test_a_snapshot_still_importing_offers_no_volume_and_saves_none(
    api_on_sandbox: Sandbox, client: Client
) -> None:
    api_on_sandbox.set_speed(min_seconds=60)
    answer = api_on_sandbox.call(
        "CreateSnapshot", {"FileLocation": api_on_sandbox.presign(), "SnapshotSize": 10 * 1024**3}
    ).json()
    snapshot_id = answer["Snapshot"]["SnapshotId"]
    signed_in(client)
    page = client.get(url("snapshot_detail", snapshot_id)).content.decode()
    assert "Create volume" not in page and "once the snapshot is completed" in page
    data = {"subregion_name": "eu-west-2a", "volume_type": "standard", "size_gib": "10"}
    refused = client.post(url("volume_new", snapshot_id), data)
    assert refused.status_code == 503 and "not completed yet" in refused.content.decode()
    assert not DerivedJob.objects.exists()
