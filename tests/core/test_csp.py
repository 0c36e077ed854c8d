"""The Content-Security-Policy every answer carries, and templates that need nothing it forbids.

The browser tests (tests/browser/) fail on any violation the pages cause in Chromium; these
check the header on every URL the portal routes, and the templates' source, without a browser.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import responses
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from importer.teams.models import Role
from tests.support.factories import make_job, make_user

pytestmark = pytest.mark.django_db
API = "https://api.csp-test.example/api/v1"
TEMPLATES = Path(__file__).resolve().parents[2] / "templates"
COMMENTS = re.compile(r"{#.*?#}|{% comment %}.*?{% endcomment %}", re.DOTALL)
POLICY = {
    "default-src": {"'self'"},
    "script-src": {"'self'"},
    "style-src": {"'self'"},
    "img-src": {"'self'"},
    "frame-ancestors": {"'none'"},
    "form-action": {"'self'"},
    "base-uri": {"'none'"},
    "object-src": {"'none'"},
}


def policy_of(header: str) -> dict[str, set[str]]:
    directives = (part.split() for part in header.split(";") if part.strip())
    return {name: set(sources) for name, *sources in directives}


def url_names(patterns: list[URLPattern | URLResolver] | None = None) -> Iterator[URLPattern]:
    for entry in get_resolver().url_patterns if patterns is None else patterns:
        if isinstance(entry, URLResolver):
            yield from url_names(entry.url_patterns)
        elif entry.name:
            yield entry


def every_url(job_id: uuid.UUID) -> list[str]:
    """One URL per route the portal has, its parameters filled in."""
    values = {
        "job_id": job_id,
        "export_id": uuid.uuid4(),
        "copy_id": uuid.uuid4(),
        "batch_id": uuid.uuid4(),
        "bulk_id": uuid.uuid4(),
        "object_id": uuid.uuid4(),
        "membership_id": 1,
        "invitation_id": 1,
        "snapshot_id": "snap-0000abcd",
        "kind": "import",
    }
    urls = []
    for pattern in url_names():
        names = re.findall(r"<(?:\w+:)?(\w+)>", str(pattern.pattern))
        urls.append(reverse(pattern.name, kwargs={name: values[name] for name in names}))
    return urls


@pytest.fixture
def admin_client(client: Client, settings) -> Iterator[Client]:
    settings.OSC_ENDPOINT_API = API
    admin = make_user("csp-admin", role=Role.ADMIN)
    client.force_login(admin)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add(
            responses.POST,
            f"{API}/ReadSnapshots",
            json={"Snapshots": [], "ResponseContext": {"RequestId": "req-csp"}},
        )
        yield client


def test_it_sends_the_policy_on_every_page_whatever_the_answer(admin_client: Client) -> None:
    job = make_job(make_user("csp-operator"))
    urls = every_url(job.pk)
    assert len(urls) >= 25 and f"/imports/{job.pk}" in urls

    answers = {url: admin_client.get(url) for url in urls}
    answers["htmx fragment"] = admin_client.get("/imports/new", headers={"HX-Request": "true"})
    answers["not found"] = admin_client.get("/no-such-page")
    answers["login, signed out"] = Client().get("/login/")

    for url, answer in answers.items():
        assert answer.status_code < 500, url
        assert policy_of(answer.headers.get("Content-Security-Policy", "")) == POLICY, url


def test_it_keeps_scripts_styles_and_handlers_out_of_the_templates() -> None:
    # What the policy would block in the browser, found in the source before it ships.
    forbidden = re.compile(
        r"<script(?![^>]*\ssrc=)[^>]*>|<style\b|\sstyle\s*=|\son[a-z]+\s*=|\shx-on|javascript:",
        re.IGNORECASE,
    )
    found = [
        f"{path.relative_to(TEMPLATES)}: {match[0]}"
        for path in sorted(TEMPLATES.rglob("*.html"))
        for match in forbidden.finditer(COMMENTS.sub("", path.read_text()))
    ]

    assert found == []
