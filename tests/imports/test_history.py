"""History, audit log and their CSV exports: filters, volume, fixed query counts."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from django.utils import timezone

from importer.audit.chain import record
from importer.audit.models import AuditAction, AuditEvent
from importer.imports.models import ImportJob, JobState
from importer.teams.models import Role
from tests.support.factories import make_team, make_user

pytestmark = pytest.mark.django_db
GIB = 1024**3


def bulk_jobs(user, count: int, **fields) -> None:
    now = timezone.now()
    team = user.memberships.first().team
    ImportJob.objects.bulk_create(
        ImportJob(
            team=team,
            submitted_by=user,
            name=f"job-{index:06d}",
            snapshot_size=GIB + index,
            url_redacted="https://oos.eu-west-2.outscale.com/exports/k?expires=x",
            url_host="oos.eu-west-2.outscale.com",
            url_bucket="exports",
            url_key=f"k{index}",
            url_expires_at=now + timedelta(hours=1),
            created_at=now - timedelta(minutes=index),
            state=JobState.COMPLETED if index % 3 else JobState.ERROR,
            finished_at=now - timedelta(minutes=index) + timedelta(seconds=90),
            **fields,
        )
        for index in range(count)
    )


@pytest.fixture
def admin(client):
    user = make_user("team-admin", team=make_team("ops"), role=Role.ADMIN)
    client.force_login(user)
    return user


def csv_rows(response) -> list[dict[str, str]]:
    body = b"".join(response.streaming_content).decode()
    return list(csv.DictReader(io.StringIO(body)))


def test_it_pages_the_history_in_a_fixed_number_of_queries(
    client, admin, django_assert_max_num_queries
) -> None:
    bulk_jobs(admin, 120)
    with django_assert_max_num_queries(8) as first:
        page1 = client.get("/history/")
    page_one_queries = len(first.captured_queries)  # before the next request resets the log
    bulk_jobs(admin, 2000)
    page2 = client.get("/history/" + page1.context["page"].next)
    with django_assert_max_num_queries(page_one_queries):
        page3 = client.get("/history/" + page2.context["page"].next)
    assert page1.status_code == page3.status_code == 200
    assert "job-000000" in page1.content.decode()
    assert page3.content.decode().count('class="badge state-') == 50


def test_it_filters_the_history_by_user_state_dates_and_text(client, admin) -> None:
    bulk_jobs(admin, 30)
    other = make_user("other-op", team=admin.memberships.first().team)
    bulk_jobs(other, 3)
    assert client.get("/history/?user=other-op").content.decode().count("job-0000") == 3
    failed = client.get("/history/?state=error").content.decode()
    assert "job-000003" in failed and "job-000001" not in failed
    found = client.get("/history/?q=job-000017").content.decode()
    assert "job-000017" in found and "job-000016" not in found
    tomorrow = (timezone.now() + timedelta(days=1)).date().isoformat()
    assert "No imports match" in client.get(f"/history/?since={tomorrow}").content.decode()
    assert client.get("/history/?since=not-a-date&sort=evil").status_code == 200


def test_it_streams_the_csv_export_row_by_row_with_the_same_filters(
    client, admin, django_assert_max_num_queries
) -> None:
    bulk_jobs(admin, 3000)
    with django_assert_max_num_queries(12):
        response = client.get("/history.csv?state=error")
        rows = csv_rows(response)
    assert response.streaming and response["Content-Type"].startswith("text/csv")
    assert len(rows) == 1000 and {row["state"] for row in rows} == {"error"}
    assert rows[0]["submitted_by"] == "team-admin" and rows[0]["duration_seconds"] == "90"
    assert AuditEvent.objects.filter(action=AuditAction.CSV_EXPORT).count() == 1


def test_it_neutralises_spreadsheet_formulas_in_the_csv(client, admin) -> None:
    bulk_jobs(admin, 1)
    ImportJob.objects.update(name='=HYPERLINK("http://evil")')
    rows = csv_rows(client.get("/history.csv"))
    assert rows[0]["name"].startswith("'=")


def test_it_shows_and_exports_the_teams_audit_log(client, admin) -> None:
    team = admin.memberships.first().team
    for index in range(60):
        record(
            action=AuditAction.JOB_STATE,
            team=team,
            target=f"job-{index}",
            details={"state": "completed"},
        )
    record(action=AuditAction.JOB_STATE, team=make_team("elsewhere"), target="other-teams-job")
    page = client.get("/audit/").content.decode()
    assert "job-59" in page and "other-teams-job" not in page
    assert "job-5" in client.get("/audit/?q=job-5&action=job_state").content.decode()
    rows = csv_rows(client.get("/audit.csv"))
    actions = [row["action"] for row in rows]
    # The 60 entries, the admin's own sign-in, and this very export.
    assert actions.count("job_state") == 60 and actions.count("login") == 1
    assert actions.count("csv_export") == 1 and len(rows) == 62
    assert all(len(row["hash"]) == 64 for row in rows)
    assert not any("other-teams-job" in row["target"] for row in rows)


def test_it_refuses_history_to_operators(client) -> None:
    client.force_login(make_user("plain-operator"))
    assert client.get("/history/").status_code == 403
    assert client.get("/history.csv").status_code == 403
    assert client.get("/audit/").status_code == 403
