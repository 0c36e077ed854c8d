"""An oversize post from the import dialog, in Chromium: the message shows in the dialog."""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings
from playwright.sync_api import Page, expect

from importer.imports.models import ImportJob

TOO_BIG = settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_in_a_browser_the_dialog_shows_the_message_and_keeps_the_form(
    logged_in: Page,
    live_server: Any,
) -> None:
    browser_page = logged_in
    browser_page.get_by_role("button", name="Import Snapshot").click()
    dialog = browser_page.get_by_role("dialog", name="IMPORT SNAPSHOT")
    expect(dialog).to_be_visible()
    dialog.get_by_label("Name").fill("too-big")
    # Set, not typed: a person pastes it; typing 2.5 MiB would take the test minutes.
    dialog.get_by_label("Description").evaluate(
        "(field, text) => { field.value = text; }", "d" * TOO_BIG
    )
    dialog.get_by_role("button", name="Import", exact=True).click()
    alert = dialog.locator(".post-refused")
    expect(alert).to_contain_text("Too much to send in one form")
    expect(alert).to_contain_text("at most 2.5 MiB")
    expect(dialog.get_by_label("Name")).to_have_value("too-big")  # the form is still there
    assert not ImportJob.objects.exists()
