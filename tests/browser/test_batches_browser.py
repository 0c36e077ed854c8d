"""A bulk import in a real browser, as a new user would: paste, preview, import, follow."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Page, expect

from importer.batches.models import ImportBatch
from importer.imports.models import JobState
from tests.batches.test_batches import manifest

pytestmark = [
    pytest.mark.browser,
    pytest.mark.integration,
    pytest.mark.django_db(transaction=True),
]


def test_it_previews_a_manifest_imports_the_ready_rows_and_follows_the_batch(
    logged_in: Page, celery_worker: Any, api_on_sandbox: Any
) -> None:
    page = logged_in
    good = api_on_sandbox.presign(expires=6 * 3600)
    page.get_by_role("link", name="Import many").click()
    expect(page.get_by_role("heading", name="IMPORT SNAPSHOTS")).to_be_visible()
    page.get_by_label("Manifest").fill(
        manifest(
            {"name": "estate-1", "url": good, "tags": "env=prod"},
            {"name": "estate-2", "url": good},
            {"name": "=HYPERLINK()", "url": good},
        )
    )
    page.get_by_role("button", name="Preview").click()

    rows = page.locator(".preview-row")
    expect(rows).to_have_count(3)
    expect(rows.nth(0)).to_contain_text("Ready")
    expect(rows.nth(0)).to_contain_text("from the image")
    expect(rows.nth(2)).to_contain_text("Refused")
    expect(rows.nth(2)).to_contain_text("spreadsheet formula")
    expect(page.get_by_label("Manifest")).to_have_value("")  # no URL written back in the page
    page.get_by_role("button", name="Import 2 snapshots").click()

    expect(page.get_by_role("heading", name="Batch")).to_be_visible()
    batch = ImportBatch.objects.get()
    table = page.locator(".batch-table")
    expect(table).to_contain_text("estate-1")
    expect(table).to_contain_text("estate-2")
    # Followed live until both imports complete.
    expect(table.locator(".badge", has_text="Completed")).to_have_count(2, timeout=45_000)
    assert sorted(batch.jobs.values_list("state", flat=True)) == [JobState.COMPLETED] * 2
    assert batch.jobs.get(name="estate-1").tags == {"env": "prod"}
