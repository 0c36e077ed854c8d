"""The Content-Security-Policy in Chromium: the pages cause no violation, and one would be seen.

Every browser test fails on a violation (tests/browser/conftest.py); the first test here proves
that check can fail, the second walks the pages a team admin has.
"""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Page, Route, expect

from importer.teams.models import Membership, Role
from tests.support.factories import make_job
from tests.support.workers import wait_until

pytestmark = [
    pytest.mark.browser,
    pytest.mark.integration,
    pytest.mark.django_db(transaction=True),
]

INJECTED = (
    '<script>window.injected = "ran";</script>'
    '<p id="styled" style="color: rgb(255, 0, 0)">styled</p>'
    '<button id="handler" onclick="window.injected = \'clicked\'">click</button>'
)


def test_it_reports_an_inline_script_style_and_handler_injected_into_a_page(
    page: Page, live_server: Any, csp_violations: list[str]
) -> None:
    # The real login page, its real headers, with markup that escaping would have let through.
    def inject(route: Route) -> None:
        answer = route.fetch()
        route.fulfill(response=answer, body=answer.text().replace("</main>", INJECTED + "</main>"))

    page.route(f"{live_server.url}/login/", inject)
    page.goto(f"{live_server.url}/login/")
    page.locator("#handler").click()

    assert page.evaluate("window.injected") is None  # neither the script nor the handler ran
    expect(page.locator("#styled")).not_to_have_css("color", "rgb(255, 0, 0)")
    seen = wait_until(lambda: len(csp_violations) >= 3 and list(csp_violations), seconds=10)
    for directive in ("script-src-elem", "style-src-attr", "script-src-attr"):
        assert any(directive in violation for violation in seen), (directive, seen)
    csp_violations.clear()  # seen on purpose: the test does not fail for them


def test_it_shows_every_page_of_a_team_admin_without_a_violation(
    logged_in: Page, live_server: Any, operator: Any, api_on_sandbox: Any
) -> None:
    page = logged_in
    Membership.objects.filter(user=operator).update(role=Role.ADMIN)
    job = make_job(operator)
    paths = [
        "/",
        "/imports/new",
        f"/imports/{job.pk}",
        "/history/",
        "/audit/",
        "/team/members/",
        "/team/credentials/",
        "/team/transfers/",
        "/invitations/",
        "/snapshots/snap-0000abcd/export",
        "/snapshots/snap-0000abcd/copy",
    ]

    for path in paths:
        answer = page.goto(f"{live_server.url}{path}")
        assert answer is not None and answer.status == 200, path
        header = answer.headers.get("content-security-policy", "")
        assert "default-src 'self'" in header and "frame-ancestors 'none'" in header, path
        expect(page.locator("main")).to_be_visible()
    # The dialog opens and its URL check swaps in, still without a violation.
    page.goto(f"{live_server.url}/")
    page.get_by_role("button", name="Import Snapshot").click()
    dialog = page.get_by_role("dialog", name="IMPORT SNAPSHOT")
    dialog.get_by_label("Object Pre-signed URL").fill(api_on_sandbox.presign())
    expect(dialog.get_by_role("button", name="Use it")).to_be_visible()
