"""The batch page as its team sees it: progress, time left, failed rows, throttling, its CSV
export and its imports in the history."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from importer.audit.models import AuditAction, AuditEvent
from importer.batches.models import ImportBatch
from importer.imports.models import ImportJob, JobState
from importer.imports.services import import_create
from importer.presigned.policy import url_policy
from importer.presigned.urls import parse_presigned_url
from importer.teams.models import Role, Team
from tests.support.factories import make_job, make_team, make_user, oos_presigned_url

pytestmark = pytest.mark.django_db

GIB = 1024**3


@pytest.fixture
def team() -> Team:
    return make_team("ops")


@pytest.fixture
def operator(team: Team) -> User:
    return make_user("op", team=team, role=Role.OPERATOR)


@pytest.fixture
def batch(operator: User, team: Team) -> ImportBatch:
    return ImportBatch.objects.create(team=team, created_by=operator, source_name="estate.csv")


def row(batch: ImportBatch, name: str, state: str = JobState.QUEUED, **fields: Any) -> ImportJob:
    job = make_job(batch.created_by, name=name, batch=batch, **fields)
    ImportJob.objects.filter(pk=job.pk).update(state=state)
    job.refresh_from_db()
    return job


def login(client: Client, user: User) -> Client:
    client.force_login(user)
    return client


def page_of(client: Client, batch: ImportBatch, **headers: str) -> str:
    response = client.get(reverse("batch_detail", args=[batch.pk]), headers=headers)
    assert response.status_code == 200
    return response.content.decode()


def test_it_counts_rows_per_state_and_weighs_progress_by_size(
    client: Client, operator: User, batch: ImportBatch
) -> None:
    now = timezone.now()
    row(batch, "big", JobState.IN_PROGRESS, progress=50, snapshot_size=30 * GIB, submitted_at=now)
    row(batch, "small", JobState.COMPLETED, progress=100, snapshot_size=10 * GIB)
    row(batch, "later-1", JobState.WAITING, snapshot_size=5 * GIB)
    row(batch, "later-2", JobState.WAITING, snapshot_size=5 * GIB)
    body = page_of(login(client, operator), batch)
    # (15 + 10) of 50 GiB.
    assert 'value="50" aria-label="Progress of the batch"' in body
    assert "2 waiting for a slot" in body and "1 importing" in body and "1 completed" in body
    assert "4 rows, weighted by size" in body
    # Just submitted: too soon for an estimate.
    assert "min left" not in body and "once the imports have moved" in body


def test_it_shows_the_time_left_once_the_imports_have_moved_a_while(
    client: Client, operator: User, batch: ImportBatch
) -> None:
    ten_min_ago = timezone.now() - timedelta(minutes=10)
    row(
        batch, "a", JobState.IN_PROGRESS, progress=40, snapshot_size=10 * GIB,
        submitted_at=ten_min_ago,
    )  # fmt: skip
    row(batch, "b", JobState.QUEUED, snapshot_size=10 * GIB)
    body = page_of(login(client, operator), batch)
    # 4 GiB in 10 min; 16 GiB left at that pace: 40 min.
    assert "about 40 min left" in body and "0.4 GiB/min" in body


def test_it_lists_the_failed_rows_with_their_error_and_offers_the_retry_to_importers(
    client: Client, operator: User, batch: ImportBatch, team: Team
) -> None:
    failed = row(batch, "broken-disk")
    failed.mark_failed(code="4045", type="InvalidParameterValue", details="The object is gone.")
    row(batch, "fine", JobState.COMPLETED, progress=100)
    body = page_of(login(client, operator), batch)
    assert "Failed rows (1)" in body and "The object is gone." in body
    assert "4045 InvalidParameterValue" in body
    assert reverse("batch_retry", args=[batch.pk]) in body and 'id="retry"' in body
    # The form comes filled with the failed row, its URL left for a new one.
    assert (
        "&quot;name&quot;: &quot;broken-disk&quot;" in body
        and "&quot;url&quot;: &quot;&quot;" in body
    )
    auditor = login(Client(), make_user("aud", team=team, role=Role.AUDITOR))
    seen = page_of(auditor, batch)
    assert "Failed rows (1)" in seen and reverse("batch_retry", args=[batch.pk]) not in seen


def test_it_says_when_the_api_throttles_the_account(
    client: Client, operator: User, batch: ImportBatch, team: Team
) -> None:
    job = row(batch, "slowed", JobState.WAITING)
    login(client, operator)
    assert "throttl" not in page_of(client, batch)
    for _ in range(2):
        job.events.create(state=JobState.WAITING, message="Throttled: the API asks to slow down.")
    job.events.create(state=JobState.WAITING, message="Waiting for a slot.")
    team.api_throttled_until = timezone.now() + timedelta(minutes=2)
    team.save()
    body = page_of(client, batch)
    assert (
        "The API is throttling this account: 2 answers so far; imports resume on their own" in body
    )
    team.api_throttled_until = None
    team.save()
    assert "throttled this account during this batch (2 answers)" in page_of(client, batch)


def test_the_fragment_polls_until_every_row_has_ended_in_few_queries(
    client: Client,
    operator: User,
    batch: ImportBatch,
    django_assert_max_num_queries: Any,
) -> None:
    for number in range(20):
        row(batch, f"row-{number}", JobState.IN_PROGRESS, progress=number)
    login(client, operator)
    page_of(client, batch, HX_Request="true")  # the session and the team are cached from here
    with django_assert_max_num_queries(8):
        polled = page_of(client, batch, HX_Request="true")
    assert polled.startswith('<div id="batch-progress"') and 'hx-trigger="every 3s"' in polled
    ImportJob.objects.filter(batch=batch).update(state=JobState.COMPLETED, progress=100)
    ended = page_of(client, batch, HX_Request="true")
    assert "hx-trigger" not in ended and "20 completed" in ended


def csv_rows(response: Any) -> list[dict[str, str]]:
    body = b"".join(response.streaming_content).decode()
    return list(csv.DictReader(io.StringIO(body)))


def test_the_csv_export_streams_every_job_with_the_url_redacted(
    client: Client, operator: User, batch: ImportBatch, team: Team
) -> None:
    raw = oos_presigned_url(expires=6 * 3600)
    url = parse_presigned_url(raw, policy=url_policy(), now=timezone.now())
    first = import_create(
        team=team, user=operator, name="=HYPERLINK(1)", description="", url=url,
        snapshot_size=GIB, batch_id=batch.pk,
    )  # fmt: skip
    first.mark_failed(code="1", type="Gone", details="-the object is gone")
    again = import_create(
        team=team, user=operator, name="=HYPERLINK(1)", description="", url=url,
        snapshot_size=GIB, batch_id=batch.pk,
    )  # fmt: skip
    auditor = login(Client(), make_user("aud", team=team, role=Role.AUDITOR))
    response = auditor.get(reverse("batch_csv", args=[batch.pk]))
    assert response.status_code == 200 and response.streaming
    assert response["Content-Type"].startswith("text/csv")
    rows = csv_rows(response)
    assert [(r["job_id"], r["row"]) for r in rows] == [
        (str(first.pk), "retried"),
        (str(again.pk), "current"),
    ]
    assert rows[0]["name"] == "'=HYPERLINK(1)"  # a spreadsheet would run it as a formula
    assert rows[0]["error_details"] == "'-the object is gone"
    assert rows[0]["object"] == url.redacted and "X-Amz-Signature" not in str(rows)
    assert AuditEvent.objects.filter(action=AuditAction.CSV_EXPORT, target=f"batch {batch.pk}")
    stranger = login(Client(), make_user("far", team=make_team("elsewhere")))
    assert stranger.get(reverse("batch_csv", args=[batch.pk])).status_code == 404


def test_the_history_filters_by_batch_and_shows_each_imports_batch(
    client: Client, batch: ImportBatch, team: Team
) -> None:
    row(batch, "in-the-batch")
    make_job(batch.created_by, name="on-its-own")
    admin = login(client, make_user("boss", team=team, role=Role.ADMIN))
    assert f"{reverse('history')}?batch={batch.pk}" in page_of(admin, batch)
    everything = admin.get(reverse("history")).content.decode()
    assert "in-the-batch" in everything and "on-its-own" in everything
    assert (
        reverse("batch_detail", args=[batch.pk]) in everything and ">estate.csv</a>" in everything
    )
    only = admin.get(reverse("history"), {"batch": str(batch.pk), "state": "queued"})
    body = only.content.decode()
    assert "in-the-batch" in body and "on-its-own" not in body
    assert f'name="batch" value="{batch.pk}"' in body  # kept when other filters are applied
    exported = csv_rows(admin.get(reverse("history_csv"), {"batch": str(batch.pk)}))
    assert [r["name"] for r in exported] == ["in-the-batch"]
    assert exported[0]["batch_id"] == str(batch.pk)


@pytest.mark.parametrize(
    ("value", "said"),
    [
        ("not-a-uuid", "is not a batch id, so no import matches"),
        (str(uuid.uuid4()), "No import of this team in the batch"),
    ],
)
def test_an_unknown_or_malformed_batch_gives_an_empty_history_that_says_why(
    client: Client, batch: ImportBatch, team: Team, value: str, said: str
) -> None:
    row(batch, "in-the-batch")
    admin = login(client, make_user("boss", team=team, role=Role.ADMIN))
    response = admin.get(reverse("history"), {"batch": value})
    body = response.content.decode()
    assert response.status_code == 200 and said in body and "in-the-batch" not in body
    exported = admin.get(reverse("history_csv"), {"batch": value})
    assert exported.status_code == 200 and csv_rows(exported) == []


def test_another_teams_batch_is_not_in_this_teams_history(
    client: Client, batch: ImportBatch
) -> None:
    row(batch, "theirs")
    other = login(client, make_user("boss", team=make_team("elsewhere"), role=Role.ADMIN))
    body = other.get(reverse("history"), {"batch": str(batch.pk)}).content.decode()
    assert "theirs" not in body and "No import of this team in the batch" in body
    assert other.get(reverse("batch_detail", args=[batch.pk])).status_code == 404
