"""A snapshot's actions in a real browser: CREATE VOLUME, CREATE OMI, UPDATE SNAPSHOT PERMISSIONS,
COPY SNAPSHOT and EDIT TAGS, each dialog driven as a new user would, by its buttons and labels.

Debian's Chromium, driven by Playwright; the portal on pytest-django's live server; the session's
Celery worker (with beat, polling every second) making the volumes, OMIs and copies on the
sandbox API, which takes a couple of seconds over each so that they are seen in flight.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Browser, Locator, Page, expect

from importer.lifecycle.models import DerivedJob, DerivedKind, DerivedState
from importer.teams.models import Membership, Role
from sandbox.run import Sandbox
from tests.browser.conftest import PASSWORD, wait_until_the_server_is_done_with_the_database
from tests.support.workers import wait_until
from tests.transfers.test_exports import account_snapshots, completed_snapshot

pytestmark = [
    pytest.mark.browser,
    pytest.mark.integration,
    pytest.mark.django_db(transaction=True),
]

# How long the sandbox takes over each volume, OMI and copy: long enough to be seen in flight.
LIFECYCLE_SECONDS = 2
IN_FLIGHT = re.compile("Queued|Sending to the API|In progress")
# Another account, to share the snapshot with.
FRIEND = "210987654321"


@pytest.fixture
def lifecycle(logged_in: Page, celery_worker: Any, api_on_sandbox: Sandbox) -> Page:
    # Logged in first: the dashboard the login lands on is listed (and cached) for another
    # endpoint, so the one each test opens lists the snapshot the test has just made.
    api_on_sandbox.set_lifecycle_seconds(LIFECYCLE_SECONDS)
    return logged_in


def log_in(page: Page, live_server: Any, username: str) -> None:
    page.goto(f"{live_server.url}/login/")
    page.get_by_label("User name").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Snapshots", exact=True)).to_be_visible()


def snapshot_page(page: Page, live_server: Any, snapshot_id: str) -> None:
    page.goto(f"{live_server.url}/snapshots/{snapshot_id}/")
    expect(page.get_by_role("heading", name="Made from this snapshot")).to_be_visible()


SEEN_AT_ITS_CENTRE = """el => {
  const box = el.getBoundingClientRect();
  const hit = document.elementFromPoint(box.x + box.width / 2, box.y + box.height / 2);
  return box.width > 0 && el.contains(hit);
}"""


def row_menu(page: Page, snapshot_id: str) -> tuple[Locator, Locator]:
    """Opens the Actions menu of the snapshot's dashboard row: (the row, the menu's summary)."""
    row = page.locator(f"#snapshot-{snapshot_id}")
    summary = row.get_by_text("Actions", exact=True)
    summary.click()
    expect(row.get_by_role("button", name="Create volume")).to_be_visible()
    # Seen whole, where it is, not clipped by the table around it: the last button is on top at
    # its own centre without anything being scrolled.
    # ("Copy to team" is only offered to a user with another team to import into.)
    last = row.locator(".action-buttons li").last.get_by_role("button")
    page.wait_for_function(SEEN_AT_ITS_CENTRE, arg=last.element_handle(), timeout=5_000)
    return row, summary


def open_dialog(page: Page, scope: Page | Locator, button: str, title: str) -> Locator:
    scope.get_by_role("button", name=button, exact=True).click()
    dialog = page.get_by_role("dialog", name=title)
    expect(dialog).to_be_visible()
    return dialog


def message(page: Page) -> Locator:
    return page.get_by_role("status").filter(has=page.locator(".message"))


def made_row(page: Page, what: str) -> Locator:
    return page.locator("#made-list tbody tr").filter(
        has=page.get_by_role("rowheader", name=what, exact=True)
    )


def follow_until_completed(page: Page, row: Locator) -> None:
    """The row is in flight when the page opens, then Completed without a reload."""
    page.evaluate("window.sameDocument = true")  # gone if anything reloads the page
    badge = row.locator(".badge")
    expect(badge).to_have_text(IN_FLIGHT)
    expect(badge).to_have_text("Completed", timeout=30_000)
    assert page.evaluate("window.sameDocument") is True
    # Nothing is in flight any more: the list has stopped polling.
    expect(page.locator("#made-list")).not_to_have_attribute("hx-trigger", re.compile("."))


def fill_volume_dialog(dialog: Locator, sandbox: Sandbox) -> None:
    """A too small size first (its message shows, the field focused), then one that fits."""
    size = dialog.get_by_label("Size")
    expect(size).to_have_value("10")  # the snapshot's size, the smallest allowed
    dialog.get_by_label("Subregion").select_option(f"{sandbox.region}b")
    dialog.get_by_label("Volume type").select_option("gp2")
    size.fill("4")
    dialog.get_by_role("button", name="Create volume").click()
    expect(dialog.locator("#id_size_gib_error")).to_contain_text("Use at least 10 GiB")
    expect(size).to_be_focused()
    expect(size).to_have_accessible_description(re.compile("Use at least 10 GiB"))
    # What was chosen is kept across the round trip.
    expect(dialog.get_by_label("Subregion")).to_have_value(f"{sandbox.region}b")
    expect(dialog.get_by_label("Volume type")).to_have_value("gp2")
    assert DerivedJob.objects.count() == 0
    dialog.get_by_label("Size").fill("12")
    dialog.get_by_role("button", name="Create volume").click()


def the_volumes(sandbox: Sandbox) -> list[dict[str, Any]]:
    volumes: list[dict[str, Any]] = sandbox.state()["volumes"].get(sandbox.account.account_id, [])
    return volumes


def test_it_creates_a_volume_from_the_dashboards_menu_and_follows_it_live(
    lifecycle: Page, live_server: Any, api_on_sandbox: Sandbox
) -> None:
    page = lifecycle
    snapshot_id = completed_snapshot(api_on_sandbox)
    page.goto(f"{live_server.url}/")

    # Escape closes the dialog; focus goes back to the menu it was opened from.
    row, summary = row_menu(page, snapshot_id)
    dialog = open_dialog(page, row, "Create volume", "CREATE VOLUME")
    expect(dialog.get_by_label("Subregion")).to_be_focused()
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(summary).to_be_focused()

    row, _ = row_menu(page, snapshot_id)
    dialog = open_dialog(page, row, "Create volume", "CREATE VOLUME")
    fill_volume_dialog(dialog, api_on_sandbox)

    expect(page).to_have_url(f"{live_server.url}/snapshots/{snapshot_id}/")
    expect(message(page)).to_contain_text("Volume requested.")
    volume = made_row(page, "Volume")
    expect(volume).to_contain_text(f"{api_on_sandbox.region}b")
    follow_until_completed(page, volume)
    job = DerivedJob.objects.get()
    assert job.state == DerivedState.COMPLETED
    [made] = the_volumes(api_on_sandbox)
    assert made["VolumeId"] == job.resource_id
    assert (made["SnapshotId"], made["Size"], made["VolumeType"]) == (snapshot_id, 12, "gp2")
    assert made["SubregionName"] == f"{api_on_sandbox.region}b"
    expect(volume).to_contain_text(job.resource_id)


def test_it_creates_a_volume_and_an_omi_from_the_snapshots_page(
    lifecycle: Page, live_server: Any, api_on_sandbox: Sandbox
) -> None:
    page = lifecycle
    snapshot_id = completed_snapshot(api_on_sandbox)
    snapshot_page(page, live_server, snapshot_id)
    expect(page.get_by_text("No volume, OMI or copy has been made")).to_be_visible()

    # Escape closes the dialog; focus goes back to the button that opened it.
    opener = page.get_by_role("button", name="Create OMI", exact=True)
    dialog = open_dialog(page, page, "Create OMI", "CREATE OMI")
    expect(dialog.get_by_label("OMI name")).to_be_focused()
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(opener).to_be_focused()

    dialog = open_dialog(page, page, "Create volume", "CREATE VOLUME")
    fill_volume_dialog(dialog, api_on_sandbox)
    expect(message(page)).to_contain_text("Volume requested.")
    follow_until_completed(page, made_row(page, "Volume"))

    dialog = open_dialog(page, page, "Create OMI", "CREATE OMI")
    expect(dialog.get_by_label("Root device name")).to_have_value("/dev/sda1")
    expect(dialog.get_by_label("Delete on VM deletion")).to_be_checked()
    dialog.get_by_label("OMI name").fill("browser-omi (web)")
    dialog.get_by_label("Description").fill("An OMI made in the browser")
    dialog.get_by_label("Architecture").select_option("x86_64")
    dialog.get_by_label("Boot mode").select_option("uefi")
    dialog.get_by_label("Volume type").select_option("gp2")
    dialog.get_by_label("Volume size").fill("20")
    dialog.get_by_label("Delete on VM deletion").uncheck()
    dialog.get_by_role("button", name="Create OMI").click()

    expect(message(page)).to_contain_text("OMI requested.")
    omi = made_row(page, "OMI")
    expect(omi).to_contain_text("browser-omi (web)")
    follow_until_completed(page, omi)
    job = DerivedJob.objects.get(kind=DerivedKind.IMAGE)
    [image] = api_on_sandbox.state()["images"][api_on_sandbox.account.account_id]
    assert image["ImageId"] == job.resource_id
    assert image["ImageName"] == "browser-omi (web)"
    assert (image["Architecture"], image["BootModes"]) == ("x86_64", ["uefi"])
    assert image["RootDeviceName"] == "/dev/sda1"
    [mapping] = image["BlockDeviceMappings"]
    assert mapping["Bsu"]["SnapshotId"] == snapshot_id
    assert (mapping["Bsu"]["VolumeSize"], mapping["Bsu"]["VolumeType"]) == (20, "gp2")
    assert mapping["Bsu"]["DeleteOnVmDeletion"] is False
    # Both are listed, the newest first.
    expect(page.locator("#made-list tbody th")).to_have_text(["OMI", "Volume"])


def test_it_shares_the_snapshot_with_an_account_then_makes_it_public(
    lifecycle: Page, live_server: Any, api_on_sandbox: Sandbox
) -> None:
    page = lifecycle
    snapshot_id = completed_snapshot(api_on_sandbox)
    snapshot_page(page, live_server, snapshot_id)
    permissions = page.locator(".snapshot-permissions")
    expect(permissions).to_have_text("This account only")

    dialog = open_dialog(page, page, "Update permissions", "UPDATE SNAPSHOT PERMISSIONS")
    expect(dialog).to_contain_text("Only this account.")
    accounts = dialog.get_by_label("Account IDs")
    expect(accounts).to_be_focused()
    accounts.fill("12345")
    dialog.get_by_role("button", name="Update permissions").click()
    expect(dialog.locator("#id_add_account_ids_error")).to_contain_text(
        "“12345” is not an OUTSCALE account ID"
    )
    expect(accounts).to_have_value("12345")
    expect(accounts).to_be_focused()
    expect(accounts).to_have_accessible_description(re.compile("is not an OUTSCALE account ID"))
    dialog.get_by_label("Account IDs").fill(FRIEND)
    dialog.get_by_role("button", name="Update permissions").click()
    expect(message(page)).to_contain_text(f"Permissions updated: allowed {FRIEND}.")
    expect(permissions).to_contain_text(f"Shared with {FRIEND}")

    # Reopened, the dialog lists the account; ticking it removes its permission.
    dialog = open_dialog(page, page, "Update permissions", "UPDATE SNAPSHOT PERMISSIONS")
    expect(dialog).to_contain_text("1 other account, ticked below to remove.")
    remove = dialog.get_by_label(f"Remove {FRIEND}")
    expect(remove).not_to_be_checked()
    remove.check()
    dialog.get_by_role("button", name="Update permissions").click()
    expect(message(page)).to_contain_text(f"Permissions updated: removed {FRIEND}.")
    expect(permissions).to_have_text("This account only")

    # Public needs its confirmation box ticked.
    dialog = open_dialog(page, page, "Update permissions", "UPDATE SNAPSHOT PERMISSIONS")
    expect(dialog.get_by_label(f"Remove {FRIEND}")).to_have_count(0)
    dialog.get_by_label("Public", exact=True).check()
    dialog.get_by_role("button", name="Update permissions").click()
    expect(dialog.locator("#id_confirm_public_error")).to_contain_text("tick the box to confirm")
    expect(dialog.get_by_label("Public", exact=True)).to_be_checked()
    confirm = dialog.get_by_label("I understand that every OUTSCALE account")
    expect(confirm).to_be_focused()
    expect(confirm).to_have_accessible_description(re.compile("tick the box to confirm"))
    confirm.check()
    dialog.get_by_role("button", name="Update permissions").click()
    expect(message(page)).to_contain_text("Permissions updated: made public.")
    expect(permissions).to_contain_text("Public: every OUTSCALE account")
    [snapshot] = account_snapshots(api_on_sandbox, api_on_sandbox.account.account_id)
    assert snapshot["PermissionsToCreateVolume"] == {"AccountIds": [], "GlobalPermission": True}


def test_it_copies_the_snapshot_under_a_name_of_its_own(
    lifecycle: Page, live_server: Any, api_on_sandbox: Sandbox
) -> None:
    page = lifecycle
    snapshot_id = completed_snapshot(api_on_sandbox)
    api_on_sandbox.call(
        "CreateTags", {"ResourceIds": [snapshot_id], "Tags": [{"Key": "Name", "Value": "db-disk"}]}
    )
    snapshot_page(page, live_server, snapshot_id)
    expect(page.get_by_role("heading", name="db-disk")).to_be_visible()

    dialog = open_dialog(page, page, "Copy", "COPY SNAPSHOT")
    name = dialog.get_by_label("Name", exact=True)
    expect(name).to_have_value("db-disk (copy)")
    name.fill("db-disk, second copy")
    dialog.get_by_label("Description").fill("Copied in the browser")
    dialog.get_by_role("button", name="Copy", exact=True).click()

    expect(message(page)).to_contain_text("Snapshot copy requested.")
    copy = made_row(page, "Snapshot copy")
    expect(copy).to_contain_text("db-disk, second copy")
    follow_until_completed(page, copy)
    job = DerivedJob.objects.get()
    expect(copy).to_contain_text(job.resource_id)

    def the_copy() -> dict[str, Any] | None:
        for snapshot in account_snapshots(api_on_sandbox, api_on_sandbox.account.account_id):
            tags = {tag["Key"]: tag["Value"] for tag in snapshot["Tags"]}
            if snapshot["SnapshotId"] != snapshot_id and tags.get("Name"):
                return {**snapshot, "tags": tags}
        return None

    copied = wait_until(the_copy, seconds=20)
    assert copied["SnapshotId"] == job.resource_id
    assert copied["tags"]["Name"] == "db-disk, second copy"
    assert copied["Description"] == "Copied in the browser"
    assert len(account_snapshots(api_on_sandbox, api_on_sandbox.account.account_id)) == 2


def test_it_edits_the_tags_row_by_row(
    lifecycle: Page, live_server: Any, api_on_sandbox: Sandbox
) -> None:
    page = lifecycle
    snapshot_id = completed_snapshot(api_on_sandbox)
    tags = [
        {"Key": "Name", "Value": "db-disk"},
        {"Key": "env", "Value": "staging"},
        {"Key": "owner", "Value": "alice"},
    ]
    api_on_sandbox.call("CreateTags", {"ResourceIds": [snapshot_id], "Tags": tags})
    snapshot_page(page, live_server, snapshot_id)
    shown = page.locator(".snapshot-tags .tag")
    # Shown as they are (as rendered, not upper-cased by the style): tags are case-sensitive.
    expect(shown).to_have_text(["Name=db-disk", "env=staging", "owner=alice"], use_inner_text=True)

    dialog = open_dialog(page, page, "Edit tags", "EDIT TAGS")
    # The tags in key order, then empty rows to add new ones.
    for number, (key, value) in enumerate(
        [("Name", "db-disk"), ("env", "staging"), ("owner", "alice"), ("", ""), ("", "")], 1
    ):
        expect(dialog.get_by_label(f"Key {number}", exact=True)).to_have_value(key)
        expect(dialog.get_by_label(f"Value {number}", exact=True)).to_have_value(value)
    expect(dialog.get_by_label("Key 1", exact=True)).to_be_focused()

    # A value without its key is refused, the rows kept as typed.
    dialog.get_by_label("Value 4", exact=True).fill("42")
    dialog.get_by_label("Value 2", exact=True).fill("production")
    dialog.get_by_role("button", name="Save tags").click()
    expect(dialog.locator("#id_tags-3-key_error")).to_contain_text("Enter a key for this value")
    expect(dialog.get_by_label("Key 4", exact=True)).to_be_focused()
    expect(dialog.get_by_label("Key 4", exact=True)).to_have_accessible_description(
        re.compile("Enter a key for this value")
    )
    expect(dialog.get_by_label("Value 2", exact=True)).to_have_value("production")

    dialog.get_by_label("Key 4", exact=True).fill("cost-centre")
    dialog.get_by_label("Key 3", exact=True).fill("")  # cleared: the tag goes
    dialog.get_by_label("Value 3", exact=True).fill("")
    dialog.get_by_role("button", name="Save tags").click()

    expect(message(page)).to_contain_text("Tags saved (3 changed).")
    for tag in ("Name=db-disk", "env=production", "cost-centre=42"):
        expect(shown.filter(has_text=tag)).to_have_count(1)
    expect(shown).to_have_count(3)  # owner=alice is gone
    [snapshot] = account_snapshots(api_on_sandbox, api_on_sandbox.account.account_id)
    assert {tag["Key"]: tag["Value"] for tag in snapshot["Tags"]} == {
        "Name": "db-disk",
        "env": "production",
        "cost-centre": "42",
    }


def test_an_auditor_sees_the_snapshot_and_what_was_made_but_no_action(
    page: Page, live_server: Any, api_on_sandbox: Sandbox, operator: User
) -> None:
    snapshot_id = completed_snapshot(api_on_sandbox)
    DerivedJob.objects.create(
        team=operator.memberships.get().team,
        requested_by=operator,
        source_snapshot_id=snapshot_id,
        kind=DerivedKind.VOLUME,
        parameters={"subregion_name": f"{api_on_sandbox.region}a", "size_gib": 10},
        state=DerivedState.COMPLETED,
        resource_id="vol-12345678",
        api_state="available",
    )
    auditor = User.objects.create_user("auditor1", password=PASSWORD)
    Membership.objects.create(user=auditor, team=operator.memberships.get().team, role=Role.AUDITOR)
    log_in(page, live_server, "auditor1")

    row = page.locator(f"#snapshot-{snapshot_id}")
    expect(row).to_be_visible()
    expect(row.get_by_text("Actions", exact=True)).to_have_count(0)
    row.get_by_role("link", name=snapshot_id).click()

    expect(page.get_by_role("heading", name=f"Snapshot {snapshot_id}")).to_be_visible()
    expect(page.locator("dl.details")).to_contain_text("completed")
    volume = made_row(page, "Volume")
    expect(volume).to_contain_text("vol-12345678")
    expect(volume.locator(".badge")).to_have_text("Completed")
    for name in ("Create volume", "Create OMI", "Update permissions", "Copy", "Edit tags"):
        expect(page.get_by_role("button", name=name, exact=True)).to_have_count(0)
    expect(page.get_by_role("button", name="Delete")).to_have_count(0)
    # Nor may the dialogs' pages be opened by their address.
    response = page.goto(f"{live_server.url}/snapshots/{snapshot_id}/volume")
    assert response is not None and response.status == 403


def test_without_javascript_the_buttons_lead_to_pages_with_the_same_forms(
    browser: Browser, live_server: Any, api_on_sandbox: Sandbox, operator: User
) -> None:
    snapshot_id = completed_snapshot(api_on_sandbox)
    context = browser.new_context(
        java_script_enabled=False, viewport={"width": 1280, "height": 800}
    )
    try:
        page = context.new_page()
        log_in(page, live_server, operator.username)
        snapshot_page(page, live_server, snapshot_id)

        page.get_by_role("button", name="Create volume", exact=True).click()
        expect(page.get_by_role("heading", name="CREATE VOLUME")).to_be_visible()
        expect(page.get_by_label("Subregion")).to_have_value(f"{api_on_sandbox.region}a")
        expect(page.get_by_label("Size")).to_have_value("10")
        page.get_by_role("link", name="Cancel").click()

        page.get_by_role("button", name="Edit tags", exact=True).click()
        expect(page.get_by_role("heading", name="EDIT TAGS")).to_be_visible()
        page.get_by_label("Key 1", exact=True).fill("Name")
        page.get_by_label("Value 1", exact=True).fill("without-js")
        page.get_by_role("button", name="Save tags").click()
        expect(page).to_have_url(f"{live_server.url}/snapshots/{snapshot_id}/")
        expect(message(page)).to_contain_text("Tags saved (1 changed).")
        expect(page.get_by_role("heading", name="without-js")).to_be_visible()
    finally:
        context.close()
        wait_until_the_server_is_done_with_the_database()
