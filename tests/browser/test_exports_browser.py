"""Export, share and copy in a real browser, over a real worker (with beat) and the sandbox."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Page, expect

from importer.teams.models import Membership, Role, Team
from importer.transfers.models import CopyChain, CopyState, ExportState, ExportTask, SharedUrl
from tests.transfers.test_exports import (
    BUCKET,
    OTHER,
    account_snapshots,
    completed_snapshot,
    other_team,
)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.integration,
    pytest.mark.django_db(transaction=True),
]


@pytest.fixture
def exporting(logged_in: Page, celery_worker: Any, api_on_sandbox: Any) -> Page:
    """The operator's team stores its exports in the sandbox's object store."""
    Team.objects.filter(name="default").update(oos_endpoint=api_on_sandbox.s3_url)
    api_on_sandbox.store.ensure_bucket(BUCKET)
    api_on_sandbox.set_export_seconds(2)
    return logged_in


def test_it_exports_a_snapshot_and_shares_its_url_once(
    exporting: Page, live_server: Any, api_on_sandbox: Any
) -> None:
    page = exporting
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    snapshot_id = completed_snapshot(api_on_sandbox)
    page.goto(f"{live_server.url}/")
    row = page.locator(f"#snapshot-{snapshot_id}")
    row.get_by_text("Actions", exact=True).click()
    row.get_by_role("button", name="Export to bucket").click()

    expect(page.get_by_role("heading", name="Export to bucket")).to_be_visible()
    page.get_by_label("Bucket").fill("Not A Bucket")
    page.get_by_role("button", name="Export", exact=True).click()
    expect(page.locator("#id_bucket_error")).to_contain_text("lower-case")
    page.get_by_label("Bucket").fill(BUCKET)
    page.get_by_label("Prefix").fill("browser/")
    page.get_by_label("Format").select_option("qcow2")
    page.get_by_role("button", name="Export", exact=True).click()

    # The summary follows the export live, without a reload, until it completes.
    page.evaluate("window.sameDocument = true")
    summary = page.locator(".export-summary")
    expect(summary.locator(".badge")).to_have_text("Completed", timeout=30_000)
    assert page.evaluate("window.sameDocument") is True
    export = ExportTask.objects.get()
    assert export.state == ExportState.COMPLETED
    expect(summary.locator(".export-object")).to_contain_text(f"browser/{snapshot_id}")

    page.get_by_label("Valid for").select_option(label="6 hours")
    page.get_by_role("button", name="Create pre-signed URL").click()
    url_box = page.get_by_label("Object Pre-signed URL")
    url = url_box.input_value()
    assert "X-Amz-Signature=" in url and "X-Amz-Expires=21600" in url
    page.get_by_role("button", name="Copy URL").click()
    expect(page.locator("[data-copy-status]")).to_have_text("Copied.")
    assert page.evaluate("navigator.clipboard.readText()") == url

    # Shown once: the export page lists only the redacted form.
    page.get_by_role("link", name="Done").click()
    share = SharedUrl.objects.get()
    expect(page.locator("table.shares")).to_contain_text(share.url_redacted)
    signature = url.split("X-Amz-Signature=")[1].split("&")[0]
    assert signature not in page.content()


def test_it_copies_a_snapshot_to_another_team_and_shows_the_chain(
    exporting: Page, live_server: Any, api_on_sandbox: Any, operator: Any
) -> None:
    page = exporting
    receiver = other_team(api_on_sandbox, name="receiving-team")
    Membership.objects.create(user=operator, team=receiver, role=Role.OPERATOR)
    # In two teams now: the operator works in the source team, chosen as a user would.
    Membership.objects.filter(user=operator).exclude(team=receiver).update(is_current=True)
    snapshot_id = completed_snapshot(api_on_sandbox)
    page.goto(f"{live_server.url}/")
    row = page.locator(f"#snapshot-{snapshot_id}")
    row.get_by_text("Actions", exact=True).click()
    row.get_by_role("button", name="Copy to team").click()

    expect(page.get_by_role("heading", name="Copy to another team")).to_be_visible()
    page.get_by_label("Copy to team").select_option(label=f"receiving-team ({receiver.region})")
    page.get_by_label("Name of the copy").fill("copied in the browser")
    page.get_by_label("Bucket").fill(BUCKET)
    page.get_by_label("Prefix").fill("copies/")
    page.get_by_role("button", name="Copy", exact=True).click()

    summary = page.locator(".copy-summary")
    expect(summary.locator("[data-step=export]")).to_contain_text("Completed", timeout=30_000)
    expect(summary.locator("[data-step=share]")).to_contain_text("copies/")
    expect(summary.locator(".summary-head .badge")).to_have_text("Completed", timeout=60_000)
    chain = CopyChain.objects.get()
    assert chain.state == CopyState.COMPLETED
    assert chain.import_job is not None
    expect(summary.locator("[data-step=import]")).to_contain_text(chain.import_job.snapshot_id)
    assert "X-Amz-Signature" not in page.content()
    received = account_snapshots(api_on_sandbox, OTHER.account_id)
    assert [s["SnapshotId"] for s in received] == [chain.import_job.snapshot_id]
