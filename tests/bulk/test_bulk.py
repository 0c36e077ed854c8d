"""Bulk actions from the dashboard over the sandbox (real HTTP), in-process: each kind from its
confirm page to its last item, the count, one action per form key, forged ids, roles."""

from __future__ import annotations

import contextlib
import re
import uuid
from html import unescape
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from importer.audit.models import AuditAction, AuditEvent
from importer.bulk import services
from importer.bulk.models import BulkAction, BulkItem, ItemState
from importer.bulk.views import BULK_FORM_KEYS
from importer.imports import polling
from importer.imports import services as imports_services
from importer.jobs.retry import TransientSubmitError
from importer.lifecycle.models import DerivedKind
from importer.teams.models import Membership, Role, Team
from importer.transfers.copies import copies_advance
from importer.transfers.models import CopyChain, CopyState, ExportState, ExportTask
from sandbox.run import Sandbox
from tests.lifecycle.test_lifecycle_services import IMAGE, request, run_to_the_end
from tests.support.factories import make_team, make_user
from tests.support.workers import wait_until
from tests.transfers.test_exports import (
    BUCKET,
    OTHER,
    account_snapshots,
    completed_snapshot,
    other_team,
    run_export,
    source_team,
)

pytestmark = pytest.mark.django_db


# --- Helpers ---------------------------------------------------------------------------------


def signed_in(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def key_fields(user: User, key: uuid.UUID | None = None) -> dict[str, str]:
    key = key or uuid.uuid4()
    return {
        "idempotency_key": str(key),
        "idempotency_signature": BULK_FORM_KEYS.signature(user.pk, key),
    }


def page_text(response: Any) -> str:
    return unescape(re.sub(r"\s+", " ", response.content.decode()))


def tag(sandbox: Sandbox, snapshot_id: str, **tags: str) -> None:
    pairs = [{"Key": key, "Value": value} for key, value in tags.items()]
    sandbox.call("CreateTags", {"ResourceIds": [snapshot_id], "Tags": pairs})


def tags_of(sandbox: Sandbox, snapshot_id: str) -> dict[str, str]:
    found = sandbox.call("ReadSnapshots", {"Filters": {"SnapshotIds": [snapshot_id]}}).json()
    return {pair["Key"]: pair["Value"] for pair in found["Snapshots"][0].get("Tags", [])}


def run_items(action: BulkAction) -> list[BulkItem]:
    """What the workers do: every item let in is run, a passing problem run again."""
    for _ in range(50):
        queued = list(action.items.filter(state=ItemState.QUEUED))
        if not queued:
            break
        for item in queued:
            with contextlib.suppress(TransientSubmitError):
                services.item_run(item_id=str(item.pk))
    return list(action.items.order_by("position"))


def tags_form(set_pairs: dict[str, str], remove: str = "") -> dict[str, str]:
    data = {"set-TOTAL_FORMS": "3", "set-INITIAL_FORMS": "0", "remove_keys": remove}
    for index, (key, value) in enumerate(set_pairs.items()):
        data[f"set-{index}-key"], data[f"set-{index}-value"] = key, value
    return data


@pytest.fixture
def admin(api_on_sandbox: Sandbox) -> User:
    return make_user("ada", team=source_team(api_on_sandbox), role=Role.ADMIN)


@pytest.fixture
def operator(api_on_sandbox: Sandbox) -> User:
    return make_user("otto", team=source_team(api_on_sandbox), role=Role.OPERATOR)


# --- Delete ----------------------------------------------------------------------------------


def test_it_says_the_count_then_deletes_every_selected_snapshot(
    api_on_sandbox: Sandbox, admin: User
) -> None:
    sandbox = api_on_sandbox
    first, second = completed_snapshot(sandbox), completed_snapshot(sandbox)
    client = signed_in(admin)

    shown = client.get("/bulk/delete", {"ids": [first, second]})
    assert shown.status_code == 200
    assert "Delete 2 snapshots?" in page_text(shown)
    assert BulkAction.objects.count() == 0  # showing the page does nothing

    key = uuid.uuid4()
    answer = client.post("/bulk/delete", {"ids": [first, second], **key_fields(admin, key)})
    assert answer.status_code == 302 and answer["Location"] == f"/bulk/{key}"
    action = BulkAction.objects.get()
    assert action.pk == key and action.kind == "delete" and action.created_by == admin
    assert [item.snapshot_id for item in action.items.all()] == [first, second]
    [submitted] = AuditEvent.objects.filter(action=AuditAction.BULK_SUBMITTED)
    assert submitted.details["count"] == 2 and submitted.details["kind"] == "delete"

    services.items_start(action_id=action.pk)
    items = run_items(action)
    assert [item.state for item in items] == [ItemState.DONE, ItemState.DONE]
    assert account_snapshots(sandbox, sandbox.account.account_id) == []
    deleted = AuditEvent.objects.filter(action=AuditAction.SNAPSHOT_DELETED)
    assert sorted(deleted.values_list("target", flat=True)) == sorted([first, second])

    page = client.get(f"/bulk/{key}")
    assert "2 done, 0 failed" in page_text(page) and "hx-trigger" not in page_text(page)
    # Over htmx, an action whose items have all ended tells the page to stop polling.
    assert client.get(f"/bulk/{key}", headers={"HX-Request": "true"}).status_code == 286


def test_a_repeated_post_of_the_same_form_makes_nothing_new(
    api_on_sandbox: Sandbox, admin: User
) -> None:
    snapshot_id = completed_snapshot(api_on_sandbox)
    client = signed_in(admin)
    fields = {"ids": [snapshot_id], **key_fields(admin)}
    first = client.post("/bulk/delete", fields)
    again = client.post("/bulk/delete", fields)
    assert first.status_code == again.status_code == 302
    assert first["Location"] == again["Location"]
    assert BulkAction.objects.count() == 1 and BulkItem.objects.count() == 1
    assert AuditEvent.objects.filter(action=AuditAction.BULK_SUBMITTED).count() == 1
    # The service under the same key answers the action it made, even for a new selection.
    action = BulkAction.objects.get()
    again_action, created = services.bulk_create(
        team=action.team, user=admin, kind="delete", snapshots=[], plan=None, key=action.pk
    )
    assert again_action == action and created is False


def test_a_delete_an_omi_blocks_says_which_omi_and_a_passing_problem_is_retried(
    api_on_sandbox: Sandbox, admin: User
) -> None:
    sandbox = api_on_sandbox
    used, free = completed_snapshot(sandbox), completed_snapshot(sandbox)
    image = run_to_the_end(request(DerivedKind.IMAGE, IMAGE, used))
    client = signed_in(admin)
    client.post("/bulk/delete", {"ids": [used, free], **key_fields(admin)})
    action = BulkAction.objects.get()
    sandbox.inject_fault("DeleteSnapshot", "error", status=503, count=1)
    services.items_start(action_id=action.pk)

    blocked, deleted = run_items(action)
    assert blocked.state == ItemState.FAILED
    assert f"The OMI {image.resource_id} (web-server-2026) still uses {used}" in blocked.message
    assert deleted.state == ItemState.DONE
    assert sum(item.attempts for item in (blocked, deleted)) == 3  # one of them twice
    page = page_text(client.get(f"/bulk/{action.pk}"))
    assert "1 done, 1 failed" in page and "Delete the OMI first" in page
    assert [s["SnapshotId"] for s in account_snapshots(sandbox, sandbox.account.account_id)] == [
        used
    ]


def test_it_gives_up_on_a_passing_problem_after_a_bounded_number_of_attempts(
    api_on_sandbox: Sandbox, admin: User
) -> None:
    snapshot_id = completed_snapshot(api_on_sandbox)
    signed_in(admin).post("/bulk/delete", {"ids": [snapshot_id], **key_fields(admin)})
    action = BulkAction.objects.get()
    api_on_sandbox.inject_fault("DeleteSnapshot", "error", status=503, count=None)
    services.items_start(action_id=action.pk)
    [item] = run_items(action)
    assert item.state == ItemState.FAILED and item.attempts == services.MAX_ITEM_ATTEMPTS
    assert f"after {services.MAX_ITEM_ATTEMPTS} attempts" in item.message


def test_it_lets_in_only_a_few_items_at_a_time(api_on_sandbox: Sandbox, admin: User) -> None:
    snapshot_ids = [completed_snapshot(api_on_sandbox) for _ in range(services.CONCURRENCY + 2)]
    signed_in(admin).post("/bulk/delete", {"ids": snapshot_ids, **key_fields(admin)})
    action = BulkAction.objects.get()
    services.items_start(action_id=action.pk)
    states = list(action.items.values_list("state", flat=True))
    assert states.count(ItemState.QUEUED) == services.CONCURRENCY
    assert states.count(ItemState.WAITING) == 2
    first = action.items.filter(state=ItemState.QUEUED).first()
    assert first is not None
    services.item_run(item_id=str(first.pk))  # one ends: the next one is let in
    states = list(action.items.values_list("state", flat=True))
    assert states.count(ItemState.QUEUED) == services.CONCURRENCY
    assert states.count(ItemState.WAITING) == 1


# --- Export, copy, tags ----------------------------------------------------------------------


def test_it_exports_every_selected_snapshot_to_the_bucket(
    api_on_sandbox: Sandbox, operator: User
) -> None:
    sandbox = api_on_sandbox
    sandbox.store.ensure_bucket(BUCKET)
    first, second = completed_snapshot(sandbox), completed_snapshot(sandbox)
    client = signed_in(operator)
    assert "Export 2 snapshots to a bucket?" in page_text(
        client.get("/bulk/export", {"ids": [first, second]})
    )
    form = {"bucket": BUCKET, "osu_prefix": "bulk/", "disk_image_format": "qcow2"}
    answer = client.post("/bulk/export", {"ids": [first, second], **form, **key_fields(operator)})
    assert answer.status_code == 302
    action = BulkAction.objects.get()
    assert action.parameters == {"bucket": BUCKET, "prefix": "bulk/", "format": "qcow2"}
    exports = [item.export for item in action.items.select_related("export")]
    assert [export.snapshot_id for export in exports if export] == [first, second]
    assert AuditEvent.objects.filter(action=AuditAction.EXPORT_REQUESTED).count() == 2
    for export in ExportTask.objects.all():
        assert run_export(export).state == ExportState.COMPLETED
    page = page_text(client.get(f"/bulk/{action.pk}"))
    assert page.count("Completed") == 2 and "2 done, 0 failed" in page
    assert all(f"/exports/{export.pk}" in page for export in ExportTask.objects.all())


def test_it_copies_every_selected_snapshot_to_the_other_team_under_its_name(
    api_on_sandbox: Sandbox, operator: User
) -> None:
    sandbox = api_on_sandbox
    sandbox.store.ensure_bucket(BUCKET)
    receiver = other_team(sandbox)
    Membership.objects.create(user=operator, team=receiver, role=Role.OPERATOR)
    named, unnamed = completed_snapshot(sandbox), completed_snapshot(sandbox)
    tag(sandbox, named, Name="database")
    client = signed_in(operator)
    # In two teams: the one whose snapshots are copied is chosen first, as in the menu.
    assert (
        client.post(
            "/team/switch", {"team": str(operator.memberships.get(team__name="source").team_id)}
        ).status_code
        == 302
    )
    form = {
        "target_team": str(receiver.pk),
        "description": "bulk copy",
        "bucket": BUCKET,
        "osu_prefix": "copies/",
        "disk_image_format": "qcow2",
    }
    answer = client.post("/bulk/copy", {"ids": [named, unnamed], **form, **key_fields(operator)})
    assert answer.status_code == 302, page_text(answer)
    chains = {chain.snapshot_id: chain for chain in CopyChain.objects.all()}
    assert chains[named].name == "database" and chains[unnamed].name == unnamed
    assert {chain.target_team for chain in chains.values()} == {receiver}

    for chain in chains.values():
        run_export(chain.export)
    copies_advance()
    for chain in CopyChain.objects.select_related("import_job"):
        assert chain.import_job is not None
        imports_services.import_submit(job_id=str(chain.import_job.pk))

    def copied() -> bool:
        polling.imports_poll()
        copies_advance()
        return CopyChain.objects.filter(state=CopyState.COMPLETED).count() == 2

    wait_until(copied, seconds=30, interval=0.2)
    assert len(account_snapshots(sandbox, OTHER.account_id)) == 2
    page = page_text(client.get(f"/bulk/{BulkAction.objects.get().pk}"))
    assert "2 done, 0 failed" in page and "Copy to receiver" in page


def test_it_adds_changes_and_removes_tags_and_says_when_nothing_changes(
    api_on_sandbox: Sandbox, operator: User
) -> None:
    sandbox = api_on_sandbox
    changed, same = completed_snapshot(sandbox), completed_snapshot(sandbox)
    tag(sandbox, changed, Name="db", env="dev", old="1")
    tag(sandbox, same, env="prod", owner="ops")
    client = signed_in(operator)
    data = tags_form({"env": "prod", "owner": "ops"}, remove="old\n")
    answer = client.post("/bulk/tags", {"ids": [changed, same], **data, **key_fields(operator)})
    assert answer.status_code == 302, page_text(answer)
    action = BulkAction.objects.get()
    assert action.parameters == {"set": {"env": "prod", "owner": "ops"}, "remove": ["old"]}
    services.items_start(action_id=action.pk)
    first, second = run_items(action)
    assert tags_of(sandbox, changed) == {"Name": "db", "env": "prod", "owner": "ops"}
    assert first.state == ItemState.DONE and "removed old" in first.message
    assert second.state == ItemState.UNCHANGED
    assert AuditEvent.objects.filter(action=AuditAction.TAGS_EDITED).count() == 1
    assert "Nothing to change" in page_text(client.get(f"/bulk/{action.pk}"))


# --- What is refused -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "data", "said"),
    [
        (
            "/bulk/export",
            {"bucket": "Not_A_Bucket", "osu_prefix": "", "disk_image_format": "qcow2"},
            "Use 3 to 63 lower-case letters, digits, dots and hyphens",
        ),
        (
            "/bulk/export",
            {"bucket": BUCKET, "osu_prefix": "/abs", "disk_image_format": "qcow2"},
            "Use printable characters, not starting with /.",
        ),
        ("/bulk/tags", tags_form({}), "Enter a tag to add or change, or a key to remove."),
        ("/bulk/tags", tags_form({"env": "prod"}, remove="env"), "Set or remove env, not both."),
        ("/bulk/tags", tags_form({"": "orphan"}), "Enter a key for this value"),
        ("/bulk/tags", tags_form({}, remove="bad\u200bkey"), "Line 1:"),
        (
            "/bulk/copy",
            {"target_team": "999", "bucket": BUCKET, "disk_image_format": "qcow2"},
            "You can copy only into a team where you are an operator or a team admin",
        ),
    ],
)
def test_it_refuses_bad_parameters_with_the_single_actions_words(
    api_on_sandbox: Sandbox, operator: User, path: str, data: dict[str, str], said: str
) -> None:
    snapshot_id = completed_snapshot(api_on_sandbox)
    answer = signed_in(operator).post(path, {"ids": [snapshot_id], **data, **key_fields(operator)})
    assert answer.status_code == 422
    assert said in page_text(answer)
    assert not BulkAction.objects.exists() and not ExportTask.objects.exists()


def test_it_refuses_a_forged_or_another_accounts_snapshot_and_acts_on_none(
    api_on_sandbox: Sandbox, admin: User
) -> None:
    sandbox = api_on_sandbox
    ours = completed_snapshot(sandbox)
    receiver = other_team(sandbox)
    theirs = sandbox.call(
        "CreateSnapshot",
        {"FileLocation": sandbox.presign(), "SnapshotSize": 1024**3},
        account=OTHER,
    ).json()["Snapshot"]["SnapshotId"]
    assert receiver.pk
    client = signed_in(admin)
    for forged, said in (
        (theirs, f"Not in this team's account: {theirs}. Nothing was done."),
        ("snap-0badf00d", "Not in this team's account: snap-0badf00d."),
        ("../etc/passwd", "These are not snapshot IDs: '../etc/passwd'"),
    ):
        shown = client.get("/bulk/delete", {"ids": [ours, forged]})
        assert shown.status_code == 422 and said in page_text(shown)
        posted = client.post("/bulk/delete", {"ids": [ours, forged], **key_fields(admin)})
        assert posted.status_code == 422 and said in page_text(posted)
    assert not BulkAction.objects.exists()
    assert sandbox.state()["calls"].get("DeleteSnapshot", 0) == 0


def test_it_refuses_nothing_selected_and_more_than_the_limit(
    api_on_sandbox: Sandbox, operator: User
) -> None:
    client = signed_in(operator)
    nothing = client.get("/bulk/tags")
    assert nothing.status_code == 422
    assert "Select at least one completed snapshot" in page_text(nothing)
    many = [f"snap-{n:08x}" for n in range(services.MAX_ITEMS + 1)]
    too_many = client.get("/bulk/tags", {"ids": many})
    assert f"Select at most {services.MAX_ITEMS} snapshots at once; 201 are selected." in (
        page_text(too_many)
    )
    assert api_on_sandbox.state()["calls"].get("ReadSnapshots", 0) == 0


def test_select_all_on_the_page_takes_the_pages_rows_without_javascript(
    api_on_sandbox: Sandbox, operator: User
) -> None:
    first, second = completed_snapshot(api_on_sandbox), completed_snapshot(api_on_sandbox)
    shown = signed_in(operator).get("/bulk/tags", {"all_on_page": "1", "page_ids": [first, second]})
    assert shown.status_code == 200 and "Edit the tags of 2 snapshots?" in page_text(shown)


def test_a_key_signed_for_someone_else_creates_nothing(
    api_on_sandbox: Sandbox, admin: User
) -> None:
    snapshot_id = completed_snapshot(api_on_sandbox)
    stranger = make_user("mallory", team=make_team("elsewhere"))
    answer = signed_in(admin).post("/bulk/delete", {"ids": [snapshot_id], **key_fields(stranger)})
    assert answer.status_code == 422 and "opened by another user" in page_text(answer)
    assert not BulkAction.objects.exists()


# --- Roles and the dashboard -----------------------------------------------------------------


def test_auditors_see_no_checkbox_and_may_not_act_other_teams_get_404(
    api_on_sandbox: Sandbox, operator: User
) -> None:
    team = Team.objects.get(name="source")
    snapshot_id = completed_snapshot(api_on_sandbox)
    auditor = make_user("audrey", team=team, role=Role.AUDITOR)
    client = signed_in(auditor)
    dashboard = client.get("/").content.decode()
    assert snapshot_id in dashboard
    assert "data-bulk-select" not in dashboard and "With selected" not in dashboard
    for path in ("/bulk/export", "/bulk/copy", "/bulk/tags", "/bulk/delete"):
        assert client.get(path, {"ids": [snapshot_id]}).status_code == 403
        assert client.post(path, {"ids": [snapshot_id], **key_fields(auditor)}).status_code == 403
    # An operator ticks rows but deletes nothing: that is a team admin's, as on a single row.
    mine = signed_in(operator)
    dashboard = mine.get("/").content.decode()
    assert f'value="{snapshot_id}" form="bulk-form"' in dashboard
    assert "Select all on this page" in dashboard and ">Delete</button>" not in dashboard
    assert mine.post("/bulk/delete", {"ids": [snapshot_id]}).status_code == 403

    action = BulkAction.objects.create(team=team, created_by=operator, kind="tags")
    assert client.get(f"/bulk/{action.pk}").status_code == 200  # auditors read
    outsider = make_user("olaf", team=make_team("outside"), role=Role.ADMIN)
    assert signed_in(outsider).get(f"/bulk/{action.pk}").status_code == 404
