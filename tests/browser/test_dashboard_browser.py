"""The dashboard and the IMPORT SNAPSHOT dialog in a real browser, over a real worker and API.

Debian's Chromium, driven by Playwright; the portal on pytest-django's live server; a Celery
worker with beat polling the sandbox API every second.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import Page, Request, expect

from importer.imports.models import ImportJob, JobState

GIB = 1024**3
pytestmark = [
    pytest.mark.browser,
    pytest.mark.integration,
    pytest.mark.django_db(transaction=True),
]


def open_dialog(page: Page) -> Any:
    page.get_by_role("button", name="Import Snapshot").click()
    dialog = page.get_by_role("dialog", name="IMPORT SNAPSHOT")
    expect(dialog).to_be_visible()
    return dialog


def test_it_imports_through_the_dialog_and_follows_progress_live(
    logged_in: Page, celery_worker: Any, api_on_sandbox: Any
) -> None:
    page = logged_in
    # Slow enough that the bar is seen between 0 and 100.
    api_on_sandbox.set_speed(min_seconds=8)
    polls: list[Request] = []
    page.on("request", lambda r: polls.append(r) if "/imports/poll" in r.url else None)
    page.clock.install()
    page.evaluate("window.sameDocument = true")  # gone if anything reloads the page

    dialog = open_dialog(page)
    expect(dialog.get_by_label("Name")).to_be_focused()

    # Errors come back inline, the values kept.
    dialog.get_by_label("Description").fill("kept across the round trip")
    dialog.get_by_label("Snapshot Size").fill("ten gigs")
    dialog.get_by_role("button", name="Import", exact=True).click()
    expect(dialog.locator("#id_name_error")).to_contain_text("Enter a name")
    expect(dialog.locator("#id_snapshot_size_error")).to_contain_text("whole number of bytes")
    expect(dialog.get_by_label("Description")).to_have_value("kept across the round trip")
    assert ImportJob.objects.count() == 0

    # The URL is inspected in place; its suggested size is one click away.
    dialog.get_by_label("Name").fill("browser-import")
    dialog.get_by_label("Object Pre-signed URL").fill(api_on_sandbox.presign())
    suggestion = dialog.get_by_role("button", name="Use it")
    expect(suggestion).to_be_visible()
    suggested = suggestion.get_attribute("data-use-size")
    assert suggested and int(suggested) > 0
    suggestion.click()
    expect(dialog.get_by_label("Snapshot Size")).to_have_value(suggested)
    expect(dialog.locator("#size-gib")).to_contain_text("GiB")

    dialog.get_by_role("button", name="Import", exact=True).click()
    expect(dialog).to_be_hidden()
    expect(page.locator("#toast")).to_contain_text("browser-import")
    row = page.locator("#jobs-body tr").first
    expect(row).to_contain_text("browser-import")
    job = ImportJob.objects.get()

    # The bar moves, then the row reaches Completed, all without a reload.
    bar = row.locator("progress")
    seen: set[int] = set()

    def progress() -> int:
        value = int(bar.get_attribute("value") or 0)
        seen.add(value)
        return value

    expect(row.locator(".badge")).to_have_text("Importing", timeout=30_000)
    page.wait_for_function(
        "el => Number(el.value) > 0 && Number(el.value) < 100", arg=bar.element_handle()
    )
    progress()
    expect(row.locator(".badge")).to_have_text("Completed", timeout=60_000)
    # Heard as well as seen: the live region says it ended.
    expect(page.locator("#poll-announcer")).to_have_text("Import of browser-import completed.")
    # "Import of browser-import started" does not outlive the import.
    expect(page.locator("#toast")).not_to_contain_text("browser-import")
    assert progress() == 100 and len(seen) >= 2
    assert page.evaluate("window.sameDocument") is True
    job.refresh_from_db()
    assert job.state == JobState.COMPLETED

    # Polling has stopped for good: however long we wait, no more poll requests go out.
    poller = page.locator("#poller")
    expect(poller).to_have_attribute("data-poll-state", "stopped")
    assert polls and all(re.search(r"[?&]v=", p.url) for p in polls)
    count = len(polls)
    page.clock.run_for(120_000)
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => r(null)))")
    assert len(polls) == count


def test_it_shows_the_jobs_details_on_its_page(
    logged_in: Page, celery_worker: Any, api_on_sandbox: Any
) -> None:
    page = logged_in
    dialog = open_dialog(page)
    dialog.get_by_label("Name").fill("detailed")
    dialog.get_by_label("Object Pre-signed URL").fill(api_on_sandbox.presign())
    dialog.get_by_role("button", name="Use it").click()
    dialog.get_by_role("button", name="Import", exact=True).click()
    row = page.locator("#jobs-body tr", has_text="detailed")
    expect(row.locator(".badge")).to_have_text("Completed", timeout=60_000)
    row.get_by_role("link", name="detailed").click()
    expect(page.get_by_role("heading", name="detailed")).to_be_visible()
    job = ImportJob.objects.get()
    for text in (job.snapshot_id, "Request IDs", "History", "operator1", "bytes", "URL expires"):
        expect(page.get_by_text(text, exact=False).first).to_be_visible()
    expect(page.locator("main")).not_to_contain_text("X-Amz-Signature")


def test_the_dialog_can_be_used_with_the_keyboard_alone(
    logged_in: Page, api_on_sandbox: Any
) -> None:
    page = logged_in
    button = page.get_by_role("button", name="Import Snapshot")
    for _ in range(30):
        if button.evaluate("el => el === document.activeElement"):
            break
        page.keyboard.press("Tab")
    expect(button).to_be_focused()

    page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog", name="IMPORT SNAPSHOT")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_label("Name")).to_be_focused()
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(button).to_be_focused()  # focus returns to what opened the dialog

    page.keyboard.press("Enter")
    expect(dialog.get_by_label("Name")).to_be_focused()
    page.keyboard.type("keyboard-import")
    page.keyboard.press("Tab")
    expect(dialog.get_by_label("Description")).to_be_focused()
    page.keyboard.press("Tab")
    expect(dialog.get_by_label("Object Pre-signed URL")).to_be_focused()
    page.keyboard.type(api_on_sandbox.presign())
    page.keyboard.press("Tab")
    expect(dialog.get_by_label("Snapshot Size")).to_be_focused()
    page.keyboard.type(str(10 * GIB))
    expect(dialog.locator("#size-gib")).to_have_text("= 10 GiB")
    # Past the dry-run box to the Import button, whatever the inspection added in between.
    for _ in range(10):
        page.keyboard.press("Tab")
        if dialog.get_by_role("button", name="Import", exact=True).evaluate(
            "el => el === document.activeElement"
        ):
            break
    page.keyboard.press("Enter")
    expect(dialog).to_be_hidden()
    expect(page.locator("#jobs-body tr").first).to_contain_text("keyboard-import")
    assert ImportJob.objects.filter(name="keyboard-import").count() == 1


NO_SIDEWAYS_SCROLL = "() => document.documentElement.scrollWidth <= window.innerWidth + 1"
# The outermost elements that stick out of the window, to say what to fix.
WIDER_THAN_THE_WINDOW = """() => Array.from(document.querySelectorAll("body *")).filter(el => {
  const r = el.getBoundingClientRect();
  const parent = el.parentElement.getBoundingClientRect();
  return r.right > window.innerWidth + 1 && parent.right <= window.innerWidth + 1;
}).map(el => el.tagName + "." + el.className)"""


def test_the_dashboard_and_the_dialog_work_at_200_percent_zoom(
    logged_in: Page, api_on_sandbox: Any
) -> None:
    """WCAG's reflow: a 1280 px window at 200% is 640 CSS pixels wide; nothing needs scrolling
    sideways and every field and button of the dialog is reachable."""
    page = logged_in
    page.set_viewport_size({"width": 640, "height": 512})
    page.reload()
    wide = page.evaluate(WIDER_THAN_THE_WINDOW)
    assert page.evaluate(NO_SIDEWAYS_SCROLL), f"the dashboard scrolls sideways at 200%: {wide}"

    dialog = open_dialog(page)
    box = dialog.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 640
    dialog.get_by_label("Name").fill("zoomed-import")
    dialog.get_by_label("Object Pre-signed URL").fill(api_on_sandbox.presign())
    dialog.get_by_label("Snapshot Size").fill(str(10 * GIB))
    submit = dialog.get_by_role("button", name="Import", exact=True)
    submit.scroll_into_view_if_needed()
    expect(submit).to_be_in_viewport()
    submit.click()
    expect(dialog).to_be_hidden()
    expect(page.locator("#jobs-body tr").first).to_contain_text("zoomed-import")
    assert page.evaluate(NO_SIDEWAYS_SCROLL)
