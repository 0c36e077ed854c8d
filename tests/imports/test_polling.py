"""The dashboard's live progress: one poll per page, answered from the database only."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
import responses
from django.core.cache import cache
from django.utils import timezone

from importer.core.pages import version as job_version
from importer.imports.models import ImportJob, JobState
from importer.outscale import accounts
from tests.support.factories import make_job, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def api_forbidden(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any use of the API client from a poll fails the test loudly."""
    cache.clear()

    def no_api() -> None:
        raise AssertionError("the poll called the API")

    monkeypatch.setattr(accounts, "api_client", no_api)


@pytest.fixture
def operator(client):
    user = make_user("operator1")
    client.force_login(user)
    return user


def in_flight(user, **fields) -> ImportJob:
    defaults = {"state": JobState.IN_PROGRESS, "snapshot_id": "snap-00000001", "progress": 10}
    defaults.update(fields)
    return make_job(user, **defaults)


def version_param(job: ImportJob) -> str:
    return f"{job.pk}.{job_version(job)}"


def poll(client, *jobs_or_params, **extra: str):
    params = [j if isinstance(j, str) else version_param(j) for j in jobs_or_params]
    return client.get("/imports/poll", {"v": params, **extra})


def bump(job: ImportJob, **fields) -> None:
    fields.setdefault("updated_at", timezone.now() + timedelta(milliseconds=1))
    ImportJob.objects.filter(pk=job.pk).update(**fields)


def test_it_answers_204_when_nothing_changed_since_the_page_saw_the_rows(client, operator) -> None:
    jobs = [in_flight(operator, name=f"job-{i}") for i in range(3)]
    response = poll(client, *jobs)
    assert response.status_code == 204 and response.content == b""


def test_it_returns_only_the_changed_rows_as_out_of_band_swaps(client, operator) -> None:
    still, moved = in_flight(operator, name="still"), in_flight(operator, name="moved")
    bump(moved, progress=55)
    response = poll(client, still, moved)
    body = response.content.decode()
    assert response.status_code == 200
    assert f'id="job-{moved.pk}"' in body and f'id="job-{still.pk}"' not in body
    assert 'hx-swap-oob="true"' in body and 'value="55"' in body
    # The changed row carries its new version, so the next poll is a 204 again.
    moved.refresh_from_db()
    assert f'value="{version_param(moved)}"' in body
    assert poll(client, still, moved).status_code == 204


def test_it_stops_polling_with_286_and_no_trigger_once_nothing_is_in_flight(
    client, operator
) -> None:
    job = in_flight(operator)
    bump(job, state=JobState.COMPLETED, progress=100, api_state="completed")
    response = poll(client, job)
    body = response.content.decode()
    assert response.status_code == 286
    assert f'id="job-{job.pk}"' in body and "Completed" in body
    assert "data-poll-version" not in body  # the row no longer asks to be polled


def test_it_keeps_polling_while_one_row_is_still_in_flight(client, operator) -> None:
    done, running = in_flight(operator, name="done"), in_flight(operator, name="running")
    bump(done, state=JobState.ERROR, error_code="4045")
    response = poll(client, done, running)
    assert response.status_code == 200
    assert f'id="job-{done.pk}"' in response.content.decode()


def test_it_costs_the_same_few_queries_for_one_row_or_a_hundred(
    client, operator, django_assert_max_num_queries
) -> None:
    one = [in_flight(operator, name="solo")]
    many = [in_flight(operator, name=f"job-{i}") for i in range(100)]
    for job in one + many:
        bump(job, progress=42)
    # Session, user, the user's teams, and the one query for the rows.
    with django_assert_max_num_queries(3):
        small = poll(client, *one)
    with django_assert_max_num_queries(3):
        large = poll(client, *many)
    assert small.status_code == large.status_code == 200
    assert large.content.decode().count('hx-swap-oob="true"') == 100


def test_it_never_sends_a_request_to_the_api(client, operator) -> None:
    jobs = [in_flight(operator, name=f"job-{i}") for i in range(5)]
    bump(jobs[0], progress=80)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        assert poll(client, *jobs).status_code == 200
        assert poll(client, *jobs[1:]).status_code == 204
        assert len(mock.calls) == 0


def test_it_ignores_malformed_versions_and_tells_the_page_about_vanished_rows(
    client, operator
) -> None:
    running = in_flight(operator)
    missing = "00000000-0000-0000-0000-000000000001.5"
    response = poll(client, running, "not-a-uuid.1", "x", missing)
    body = response.content.decode()
    assert response.status_code == 200
    assert 'id="job-00000000-0000-0000-0000-000000000001"' in body and "no longer" in body


def test_it_answers_286_to_a_poll_naming_no_rows(client, operator) -> None:
    assert client.get("/imports/poll").status_code == 286


def test_it_renders_the_same_version_in_the_page_as_it_compares(client, operator) -> None:
    job = in_flight(operator)
    page = client.get("/").content.decode()
    versions = re.findall(r'name="v" value="([^"]+)"', page)
    assert versions == [version_param(job)]


def test_it_updates_the_job_page_summary_out_of_band(client, operator) -> None:
    job = in_flight(operator, name="detail")
    bump(job, progress=64)
    response = poll(client, job, view="detail")
    body = response.content.decode()
    assert response.status_code == 200
    assert f'id="job-summary-{job.pk}"' in body and 'value="64"' in body


def test_it_asks_for_a_login(client) -> None:
    response = client.get("/imports/poll")
    assert response.status_code == 302 and "/login/" in response["Location"]
