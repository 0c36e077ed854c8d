"""The text searches of the dashboard and the history read trigram indexes on PostgreSQL.

SQLite has no such index: there the same searches scan the table, and the other tests of the
two pages check their results on both databases.
"""

from __future__ import annotations

import pytest
from django.db import connection
from django.http import QueryDict
from django.test import RequestFactory

from importer.core.pages import Paging
from importer.imports.forms import HistoryFilterForm
from importer.imports.listing import Listing, _filter_jobs
from importer.imports.models import ImportJob
from importer.imports.selectors import history_jobs, history_keyset, jobs_of_current_team
from importer.teams.models import Role
from tests.support.factories import make_job, make_team, make_user

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="the trigram indexes exist on PostgreSQL only"
    ),
]

ROWS = 20_000


@pytest.fixture
def request_of_admin(rf: RequestFactory):
    admin = make_user("team-admin", team=make_team("ops"), role=Role.ADMIN)
    needle = make_job(admin, name="nightly-quokka", description="the one to find")

    def request(query: str):
        made = rf.get("/", QueryDict(query))
        made.user = admin
        return made

    # Twenty thousand other imports of the team in one statement, each unlike the next.
    table = ImportJob._meta.db_table
    copied = [
        field.column
        for field in ImportJob._meta.concrete_fields
        if field.column
        not in ("id", "name", "description", "snapshot_id", "url_bucket", "created_at")
    ]
    columns = ", ".join(copied)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (id, name, description, snapshot_id, url_bucket, created_at, "  # noqa: S608
            f"{columns}) SELECT gen_random_uuid(), 'vol-' || md5(g::text), "
            "'copy of ' || md5(g::text || 'd'), 'snap-' || left(md5(g::text || 's'), 8), "
            "'bucket-' || left(md5(g::text), 6), created_at - g * interval '1 second', "
            f"{columns} FROM generate_series(1, %s) AS g, {table} WHERE id = %s",
            [ROWS, needle.pk],
        )
        cursor.execute(f"ANALYZE {table}")
    return request


def uses_trigram_index(plan: str, index: str) -> bool:
    return f"Bitmap Index Scan on {index}" in plan


def test_the_history_search_reads_the_trigram_indexes(request_of_admin) -> None:
    request = request_of_admin("q=quokka")
    form = HistoryFilterForm(request.GET)
    assert form.is_valid()
    jobs = history_jobs(request, form.cleaned_data)
    page = Paging.from_query(request.GET, history_keyset("-created")).window(jobs)
    assert [job.name for job in page] == ["nightly-quokka"]
    plan = page.explain()
    for index in (
        "job_name_trgm_idx",
        "job_snapshot_trgm_idx",
        "job_description_trgm_idx",
        "job_bucket_trgm_idx",
    ):
        assert uses_trigram_index(plan, index), plan
    assert "Seq Scan on importer_importjob" not in plan, plan


def test_the_dashboard_search_reads_the_trigram_indexes(request_of_admin) -> None:
    request = request_of_admin("q=QUOKKA")
    listing = Listing.from_query(request.GET)
    jobs = _filter_jobs(jobs_of_current_team(request), listing).order_by("-created_at", "-id")
    assert [job.name for job in jobs[:26]] == ["nightly-quokka"]
    plan = jobs[:26].explain()
    for index in ("job_name_trgm_idx", "job_snapshot_trgm_idx", "job_description_trgm_idx"):
        assert uses_trigram_index(plan, index), plan
    assert "Seq Scan on importer_importjob" not in plan, plan
