"""The history's keyset pages: every sort walked both ways, ties, bad cursors, filters, cost."""

from __future__ import annotations

import base64
import html
import json
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from importer.batches.models import ImportBatch
from importer.imports.models import ImportJob, JobState
from importer.imports.selectors import HISTORY_SORTS, history_keyset
from importer.teams.models import Role
from tests.support.factories import make_team, make_user

pytestmark = pytest.mark.django_db
GIB = 1024**3


def many_jobs(user, count: int, *, team=None, start: int = 0, **fields) -> list[ImportJob]:
    """Jobs that tie often: 7 distinct times, 13 names and 5 sizes among them."""
    now = timezone.now().replace(microsecond=0)
    team = team or user.memberships.first().team
    return ImportJob.objects.bulk_create(
        ImportJob(
            team=team,
            submitted_by=user,
            name=f"backup-{index % 13:02d}",
            snapshot_size=GIB * (1 + index % 5),
            url_redacted="https://oos.eu-west-2.outscale.com/exports/k?expires=x",
            url_host="oos.eu-west-2.outscale.com",
            url_bucket="exports",
            url_key=f"k{index}",
            url_expires_at=now + timedelta(hours=1),
            created_at=now - timedelta(minutes=index % 7),
            state=JobState.COMPLETED if index % 3 else JobState.ERROR,
            **fields,
        )
        for index in range(start, start + count)
    )


@pytest.fixture
def admin(client):
    user = make_user("team-admin", team=make_team("ops"), role=Role.ADMIN)
    client.force_login(user)
    return user


def open_page(client, url: str):
    response = client.get(url)
    assert response.status_code == 200
    return response


def shown_ids(response) -> list[str]:
    return [str(job.pk) for job in response.context["page"].rows]


def link(response, name: str) -> str:
    """The page's link called `name`, checked to be in the page the user sees."""
    href = getattr(response.context["page"], name)
    if href:
        assert f'href="{html.escape(href)}"' in response.content.decode()
    return href


def expected_ids(team, sort: str, **filters) -> list[str]:
    jobs = ImportJob.objects.filter(team=team, **filters).order_by(*HISTORY_SORTS[sort])
    return [str(pk) for pk in jobs.values_list("pk", flat=True)]


@pytest.mark.parametrize("sort", list(HISTORY_SORTS))
def test_it_walks_three_pages_forward_and_back_showing_each_import_once(
    client, admin, sort
) -> None:
    team = admin.memberships.first().team
    many_jobs(admin, 130)
    forward = [open_page(client, f"/history/?sort={sort}")]
    assert not link(forward[0], "previous") and not link(forward[0], "first")
    while next_url := link(forward[-1], "next"):
        forward.append(open_page(client, "/history/" + next_url))
    pages = [shown_ids(page) for page in forward]
    assert [len(ids) for ids in pages] == [50, 50, 30]
    assert sum(pages, []) == expected_ids(team, sort)

    back = open_page(client, "/history/" + link(forward[2], "previous"))
    assert shown_ids(back) == pages[1] and link(back, "next")
    back = open_page(client, "/history/" + link(back, "previous"))
    assert shown_ids(back) == pages[0]
    assert not link(back, "previous"), "page one has no way further back"
    assert shown_ids(open_page(client, "/history/" + link(back, "next"))) == pages[1]


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage",
        "%00",
        base64.urlsafe_b64encode(b'["2026-01-01T00:00:00+00:00"]').decode(),  # one value short
        base64.urlsafe_b64encode(b'["2026-01-01T00:00:00", "x"]').decode(),  # no time zone
        base64.urlsafe_b64encode(b'["2026-01-01T00:00:00+00:00", "not-a-uuid"]').decode(),
        base64.urlsafe_b64encode(json.dumps(["nul\x00", "x"]).encode()).decode(),
        base64.urlsafe_b64encode(b"[" * 1400).decode(),
        "A" * 5000,
    ],
)
def test_it_answers_a_bad_cursor_with_page_one(client, admin, cursor) -> None:
    many_jobs(admin, 60)
    first = shown_ids(open_page(client, "/history/"))
    for name in ("after", "before"):
        response = open_page(client, f"/history/?{name}={cursor}")
        assert shown_ids(response) == first
        assert not link(response, "previous")


def test_it_answers_a_cursor_made_for_another_sort_with_a_page_not_an_error(client, admin) -> None:
    many_jobs(admin, 60)
    size_cursor = history_keyset("size").cursor_for(ImportJob.objects.first())
    for sort in HISTORY_SORTS:
        assert open_page(client, f"/history/?sort={sort}&after={size_cursor}")


def test_it_keeps_the_filters_on_every_page(client, admin) -> None:
    team = admin.memberships.first().team
    batch = ImportBatch.objects.create(team=team, created_by=admin, source_name="estate.csv")
    many_jobs(admin, 200, batch=batch)
    many_jobs(admin, 40, start=200)  # outside the batch
    url = f"/history/?state=error&q=backup-0&sort=-size&batch={batch.pk}"
    pages = [open_page(client, url)]
    while next_url := link(pages[-1], "next"):
        assert all(f"{param}=" in next_url for param in ("state", "q", "sort", "batch"))
        pages.append(open_page(client, "/history/" + next_url))
    seen = sum((shown_ids(page) for page in pages), [])
    wanted = expected_ids(
        team, "-size", state=JobState.ERROR, name__icontains="backup-0", batch=batch
    )
    assert len(pages) == 2 and seen == wanted  # 52 of the 240 match
    assert "Only the imports of the batch" in pages[-1].content.decode()
    assert f"batch={batch.pk}" in pages[-1].context["query"]


def test_it_still_says_when_a_batch_filter_matches_nothing(client, admin) -> None:
    many_jobs(admin, 10)
    other_batch = "8d3f4f0e-95a4-4b8b-9d1e-0e3a6e1f2b7c"
    page = open_page(client, f"/history/?batch={other_batch}").content.decode()
    assert f"No import of this team in the batch {other_batch} matches" in page
    assert "is not a batch id" in open_page(client, "/history/?batch=nope").content.decode()


def test_it_never_shows_another_teams_imports(client, admin) -> None:
    team = admin.memberships.first().team
    stranger = make_user("stranger", team=make_team("elsewhere"))
    many_jobs(admin, 70)
    many_jobs(stranger, 70, start=70)
    for sort in HISTORY_SORTS:
        pages = [open_page(client, f"/history/?sort={sort}")]
        while next_url := link(pages[-1], "next"):
            pages.append(open_page(client, "/history/" + next_url))
        assert sum((shown_ids(page) for page in pages), []) == expected_ids(team, sort)


@pytest.mark.parametrize("sort", ["-created", "name", "size"])
def test_it_reads_a_deep_page_in_as_many_queries_as_page_one_and_without_offset(
    client, admin, sort
) -> None:
    many_jobs(admin, 3000)
    team = admin.memberships.first().team
    deep_row = ImportJob.objects.filter(team=team).order_by(*HISTORY_SORTS[sort])[2500]
    deep_url = f"/history/?sort={sort}&after={history_keyset(sort).cursor_for(deep_row)}"
    with CaptureQueriesContext(connection) as first:
        open_page(client, f"/history/?sort={sort}")
    with CaptureQueriesContext(connection) as deep:
        response = open_page(client, deep_url)
    assert len(deep.captured_queries) == len(first.captured_queries)
    assert len(response.context["page"].rows) == 50
    assert not any("OFFSET" in query["sql"] for query in deep.captured_queries)
