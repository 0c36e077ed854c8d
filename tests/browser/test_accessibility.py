"""axe-core (bundled by axe-playwright-python, nothing downloaded) on every page each role can
open, and on the IMPORT SNAPSHOT dialog: no violation of WCAG 2.1 A or AA.

In English for now; the French pages join once the catalogue has landed (issue 16)."""

from __future__ import annotations

from typing import Any

import pytest
from axe_playwright_python.sync_playwright import Axe
from django.contrib.auth.models import User
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Page, expect

from importer.imports.models import JobState
from importer.teams.models import Membership, Role, Team
from tests.browser.conftest import PASSWORD
from tests.core.test_csp import every_url, url_names
from tests.support.factories import make_job

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

WCAG_21_AA = {"runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]}}
# Not pages: fragments a page fetches, downloads, the POST-only logout, machine endpoints.
NOT_PAGES = ("poll", "_csv", "csv", "logout", "metrics", "healthz", "inspect", "made")

axe = Axe()


def violations(page: Page) -> list[str]:
    found = axe.run(page, options=WCAG_21_AA).response["violations"]
    return [
        f"{item['id']} ({item['impact']}): {[node['target'] for node in item['nodes'][:3]]}"
        for item in found
    ]


def page_urls(job_id: Any) -> list[str]:
    names = [pattern.name or "" for pattern in url_names()]
    return [
        url
        for name, url in zip(names, every_url(job_id), strict=True)
        if not any(word in name for word in NOT_PAGES)
    ]


def log_in(page: Page, base: str, username: str) -> None:
    page.goto(f"{base}/login/")
    page.get_by_label("User name").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Snapshots", exact=True)).to_be_visible()


@pytest.mark.parametrize("role", [Role.OPERATOR, Role.ADMIN, Role.AUDITOR])
def test_every_page_a_role_opens_has_no_wcag_violation(
    page: Page, live_server: Any, role: str
) -> None:
    user = User.objects.create_user(f"axe-{role}", password=PASSWORD)
    team, _ = Team.objects.get_or_create(
        name="default", defaults={"uses_environment_credentials": True}
    )
    Membership.objects.create(user=user, team=team, role=role)
    job = make_job(user, state=JobState.ERROR, error_code="4045", error_details="Bad size")
    log_in(page, live_server.url, user.username)

    problems: dict[str, list[str]] = {}
    checked: list[str] = []
    for url in page_urls(job.pk):
        try:
            answer = page.goto(live_server.url + url)
        except PlaywrightError:  # an action's URL, answering GET with an empty 405: no page
            continue
        if answer is None or not answer.headers.get("content-type", "").startswith("text/html"):
            continue
        checked.append(url)
        if found := violations(page):
            problems[url] = found
    assert not problems, problems
    # The dashboard, the job's page, history, the team's pages...: never a vacuous pass.
    assert len(checked) >= 15, checked


def test_the_import_dialog_has_no_wcag_violation(logged_in: Page) -> None:
    logged_in.get_by_role("button", name="Import Snapshot").click()
    dialog = logged_in.get_by_role("dialog", name="IMPORT SNAPSHOT")
    expect(dialog).to_be_visible()
    assert violations(logged_in) == []
    # With its errors shown, too.
    dialog.get_by_role("button", name="Import", exact=True).click()
    expect(dialog.locator("#id_name_error")).to_be_visible()
    assert violations(logged_in) == []
