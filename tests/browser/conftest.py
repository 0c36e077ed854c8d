"""Playwright driving Debian's Chromium against pytest-django's live server."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from importer.teams.models import Membership, Role, Team

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
PASSWORD = "a-long-browser-test-password"  # noqa: S105 - a throwaway test login

expect.set_options(timeout=20_000)
# Playwright's sync API keeps an event loop in this thread; the ORM calls made here in between
# are ordinary blocking ones, which Django would otherwise refuse.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


# Runs in every document before its own scripts: each Content-Security-Policy violation (an
# inline script or style, a handler attribute, a foreign source) is reported to the test.
CSP_LISTENER = """
document.addEventListener("securitypolicyviolation", (event) => {
  window.__portalCspViolation(
    `${event.effectiveDirective} blocked ${event.blockedURI || "inline"} ` +
    `at ${event.sourceFile || document.location.href}:${event.lineNumber}`
  );
});
"""


@pytest.fixture(autouse=True)
def csp_violations() -> Iterator[list[str]]:
    """Every CSP violation seen by the test's pages; any left at the end fails the test."""
    violations: list[str] = []
    yield violations
    if violations:
        pytest.fail("Content-Security-Policy violations:\n" + "\n".join(violations))


def guard_csp(context: BrowserContext, violations: list[str]) -> None:
    """Collects the CSP violations of every page of `context` into `violations`."""
    context.expose_binding("__portalCspViolation", lambda _source, text: violations.append(text))
    context.add_init_script(CSP_LISTENER)
    # Chromium also logs what it refused on the console, for whatever the event misses.
    context.on(
        "console",
        lambda message: (
            violations.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )


def wait_until_the_server_is_done_with_the_database(limit_seconds: float = 10.0) -> None:
    """Waits until no other connection is running a query on the test database.

    A closed page may leave a poll the live server is still answering; flushing the tables under
    it makes PostgreSQL pick one of the two as a deadlock victim (TRUNCATE takes its locks table
    by table, the poll's join takes them in another order).
    """
    if connection.vendor != "postgresql":
        return  # SQLite's live server shares this thread's connection: nothing runs beside it
    deadline = time.monotonic() + limit_seconds
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND pid <> pg_backend_pid() AND state IN ('active', 'idle in transaction')"
            )
            if cursor.fetchone() == (0,):
                return
            time.sleep(0.05)


@pytest.fixture
def page(browser: Browser, csp_violations: list[str], transactional_db: Any) -> Iterator[Page]:
    # Asking for the database here makes pytest close the page before it flushes the tables.
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    guard_csp(context, csp_violations)
    opened = context.new_page()
    yield opened
    context.close()
    wait_until_the_server_is_done_with_the_database()


@pytest.fixture
def operator(transactional_db: Any) -> User:
    """A user who may import, in the team whose account is the OSC_* environment's."""
    user = User.objects.create_user("operator1", password=PASSWORD)
    team, _ = Team.objects.get_or_create(
        name="default", defaults={"uses_environment_credentials": True}
    )
    Membership.objects.create(user=user, team=team, role=Role.OPERATOR)
    return user


@pytest.fixture
def logged_in(page: Page, live_server: Any, operator: User) -> Page:
    """Logs in through the real form, as a person would."""
    page.goto(f"{live_server.url}/login/")
    page.get_by_label("User name").fill(operator.username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Snapshots", exact=True)).to_be_visible()
    return page
