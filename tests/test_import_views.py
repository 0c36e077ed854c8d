from __future__ import annotations

import pytest
from django.db import connection
from kombu.exceptions import OperationalError

from importer import presigned
from importer.models import ImportJob, JobState
from importer.tasks import submit_import
from tests.factories import make_job, make_user, oos_presigned_url

GIB = 1024**3
pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def no_network_inspection(monkeypatch: pytest.MonkeyPatch) -> None:
    def not_inspected(url: presigned.PresignedUrl, **_: object) -> presigned.Inspection:
        return presigned.Inspection(info=None, warning="not inspected in this test")

    monkeypatch.setattr(presigned, "inspect_presigned_url", not_inspected)


@pytest.fixture
def operator_client(client):
    client.force_login(make_user("operator1"))
    return client


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    calls: list[tuple] = []
    monkeypatch.setattr(submit_import, "apply_async", lambda args, **kw: calls.append(args))
    return calls


def post_import(client, **overrides: str):
    data = {
        "name": "backup",
        "description": "",
        "presigned_url": oos_presigned_url(),
        "snapshot_size": str(10 * GIB),
    }
    data.update(overrides)
    return client.post("/imports/new", data)


def test_it_saves_a_job_and_queues_it_after_commit(
    operator_client, sent, django_capture_on_commit_callbacks
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        response = post_import(operator_client)
    job = ImportJob.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/imports/{job.pk}"
    assert job.state == JobState.QUEUED and job.submitted_by.username == "operator1"
    assert sent == [(str(job.pk),)]  # the message carries the job's id, nothing else


def test_it_keeps_the_url_encrypted_and_shows_only_its_redacted_form(operator_client, sent) -> None:
    url = oos_presigned_url()
    signature = url.split("X-Amz-Signature=")[1]
    post_import(operator_client, presigned_url=url)
    job = ImportJob.objects.get()
    assert signature not in job.url_encrypted and signature not in job.url_redacted
    assert "X-Amz-Credential" not in job.url_redacted
    page = operator_client.get(f"/imports/{job.pk}").content.decode()
    assert signature not in page and "exports-bucket" in page


def test_it_keeps_values_and_shows_errors_in_place_saving_nothing(operator_client, sent) -> None:
    response = post_import(operator_client, name="keep me", snapshot_size="lots")
    assert response.status_code == 422
    page = response.content.decode()
    assert 'value="keep me"' in page
    assert "whole number of bytes" in page
    assert ImportJob.objects.count() == 0 and sent == []


def test_it_tells_the_user_the_job_is_queued_when_the_broker_is_down(
    operator_client, monkeypatch, django_capture_on_commit_callbacks
) -> None:
    def broker_down(*args, **kwargs):
        raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(submit_import, "apply_async", broker_down)
    with django_capture_on_commit_callbacks(execute=True):
        response = post_import(operator_client)
    job = ImportJob.objects.get()
    assert response.status_code == 302
    assert job.state == JobState.QUEUED
    page = operator_client.get(response["Location"]).content.decode()
    assert "Queued" in page


@pytest.mark.parametrize(
    "overrides",
    [
        {"name": "<script>alert(1)</script>"},
        {"description": "\r\nSet-Cookie: x=1"},
        {"presigned_url": "https://oos.eu-west-2.outscale.com/b/k?" + "A" * 10_000},
        {"presigned_url": "https://oos.eu-west-2.outscale.com/%00/k?X-Amz-Signature=\x00"},
        {"snapshot_size": "9" * 10_000},
        {"snapshot_size": "1e10"},
    ],
)
def test_it_refuses_or_escapes_hostile_input_without_a_500(
    operator_client, sent, overrides
) -> None:
    response = post_import(operator_client, **overrides)
    assert response.status_code in (302, 422)
    assert "<script>alert(1)</script>" not in response.content.decode()


def test_it_survives_a_body_that_is_not_utf8(operator_client, sent) -> None:
    body = b"name=%FF%FE%00&presigned_url=%C0%AF&snapshot_size=%F0%28%8C%28"
    response = operator_client.post(
        "/imports/new", data=body, content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code == 422
    assert ImportJob.objects.count() == 0


def test_it_lists_jobs_on_the_dashboard_in_a_constant_number_of_queries(
    operator_client, django_assert_max_num_queries
) -> None:
    user = make_user("someone")
    for index in range(30):
        make_job(user, name=f"job-{index}")
    with django_assert_max_num_queries(6):
        response = operator_client.get("/")
    assert response.status_code == 200 and "job-29" in response.content.decode()
    assert connection.vendor in ("postgresql", "sqlite")


def test_it_shows_a_failed_jobs_api_error_and_request_id(operator_client) -> None:
    job = make_job(make_user("someone"))
    job.mark_failed(
        code="4045",
        type="InvalidParameterValue",
        details="SnapshotSize too small",
        request_id="req-123",
    )
    page = operator_client.get(f"/imports/{job.pk}").content.decode()
    assert "4045" in page and "InvalidParameterValue" in page and "req-123" in page


def test_it_answers_404_for_an_unknown_job(operator_client) -> None:
    assert operator_client.get("/imports/00000000-0000-0000-0000-000000000000").status_code == 404
