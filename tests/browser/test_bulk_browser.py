"""Bulk copy in a real browser, as a new user would: two completed snapshots ticked on the
dashboard (the ticks kept while the page's poll swaps rows), COPY TO TEAM confirmed with its
count, both copies followed to the end on the bulk action's page.

Debian's Chromium, driven by Playwright; the session's Celery worker (with beat) exporting and
importing on the sandbox.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from importer.bulk.models import BulkAction
from importer.imports.models import JobState
from importer.teams.models import Membership, Role, Team
from importer.transfers.models import CopyChain, CopyState
from tests.support.factories import make_job
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


def test_it_copies_two_selected_snapshots_to_another_team_and_follows_both(
    logged_in: Page, celery_worker: Any, api_on_sandbox: Any, live_server: Any, operator: Any
) -> None:
    page, sandbox = logged_in, api_on_sandbox
    Team.objects.filter(name="default").update(oos_endpoint=sandbox.s3_url)
    sandbox.store.ensure_bucket(BUCKET)
    sandbox.set_export_seconds(2)
    receiver = other_team(sandbox, name="receiving-team")
    Membership.objects.create(user=operator, team=receiver, role=Role.OPERATOR)
    Membership.objects.filter(user=operator).exclude(team=receiver).update(is_current=True)
    first, second = completed_snapshot(sandbox), completed_snapshot(sandbox)
    # An import still queued (due in an hour, so no worker takes it): the page polls its row.
    waiting = make_job(
        operator, name="still queued", enqueued_at=timezone.now() + timedelta(hours=1)
    )
    assert waiting.state == JobState.QUEUED

    page.goto(f"{live_server.url}/")
    page.get_by_label(f"Select {first}").check()
    page.get_by_label(f"Select {second}").check()
    expect(page.get_by_text("With 2 selected:")).to_be_visible()
    expect(page.get_by_label("Select all on this page")).to_be_checked()

    # The poll swaps the import's row in while the ticks stay.
    waiting.mark_failed(code="Test", type="Test", details="ended by the test")
    expect(page.locator(f"#job-{waiting.pk} .badge")).to_have_text("Failed")
    expect(page.get_by_label(f"Select {first}")).to_be_checked()
    expect(page.get_by_label(f"Select {second}")).to_be_checked()
    expect(page.get_by_text("With 2 selected:")).to_be_visible()

    page.get_by_role("button", name="Copy to team").click()
    expect(page.get_by_role("heading", name="Copy 2 snapshots to another team?")).to_be_visible()
    page.get_by_label("Copy to team").select_option(label=f"receiving-team ({receiver.region})")
    page.get_by_label("Bucket").fill("Not A Bucket")
    page.get_by_role("button", name="Copy 2 snapshots").click()
    expect(page.get_by_text("Use 3 to 63 lower-case letters")).to_be_visible()
    assert not BulkAction.objects.exists()
    page.get_by_label("Bucket").fill(BUCKET)
    page.get_by_label("Prefix").fill("bulk-copies/")
    page.get_by_role("button", name="Copy 2 snapshots").click()

    action = BulkAction.objects.get()
    expect(page).to_have_url(f"{live_server.url}/bulk/{action.pk}")
    page.evaluate("window.sameDocument = true")  # gone if anything reloads the page
    rows = page.locator(".bulk-row")
    expect(rows).to_have_count(2)
    expect(page.locator("#bulk-progress")).to_have_attribute("hx-trigger", re.compile("every"))
    # Two imports into one account: the second may wait for the team's import slot.
    expect(rows.locator(".badge")).to_have_text(["Completed", "Completed"], timeout=180_000)
    expect(page.get_by_text("2 done, 0 failed")).to_be_visible()
    expect(page.locator("#bulk-progress")).not_to_have_attribute("hx-trigger", re.compile("."))
    assert page.evaluate("window.sameDocument") is True

    chains = list(CopyChain.objects.select_related("import_job"))
    assert {chain.snapshot_id for chain in chains} == {first, second}
    assert all(chain.state == CopyState.COMPLETED for chain in chains)
    received = {s["SnapshotId"] for s in account_snapshots(sandbox, OTHER.account_id)}
    assert received == {chain.import_job.snapshot_id for chain in chains if chain.import_job}
    assert "X-Amz-Signature" not in page.content()
