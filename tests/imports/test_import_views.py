from __future__ import annotations

import re

import pytest
from django.db import connection
from kombu.exceptions import OperationalError

from importer.imports.models import ImportJob, JobState
from importer.presigned import fetch, urls
from snapshots_portal.celery import app as celery_app
from tests.support.factories import make_job, make_user, oos_presigned_url

GIB = 1024**3
pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def no_network_inspection(monkeypatch: pytest.MonkeyPatch) -> None:
    def not_inspected(url: urls.PresignedUrl, **_: object) -> fetch.Inspection:
        return fetch.Inspection(info=None, warning="not inspected in this test")

    monkeypatch.setattr(fetch, "inspect_presigned_url", not_inspected)


@pytest.fixture
def operator_client(client):
    client.force_login(make_user("operator1"))
    return client


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    calls: list[tuple] = []
    monkeypatch.setattr(celery_app, "send_task", lambda name, args, **kw: calls.append(args))
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

    monkeypatch.setattr(celery_app, "send_task", broker_down)
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


def form_key(page: str) -> dict[str, str]:
    """The idempotency key and its signature, as the form shown to a user carries them."""
    found = {}
    for name in ("idempotency_key", "idempotency_signature"):
        match = re.search(rf'name="{name}" value="([^"]*)"', page)
        found[name] = match[1] if match else ""
    return found


def test_it_binds_the_forms_key_to_the_user_who_got_the_form(client, sent) -> None:
    alice, bob = make_user("alice"), make_user("bob")  # both operators of the same team
    client.force_login(alice)
    alices = form_key(client.get("/imports/new").content.decode())
    client.force_login(bob)

    refused = post_import(client, name="bobs", **alices)

    page = refused.content.decode()
    assert refused.status_code == 422
    assert "opened by another user, or changed since: nothing was imported" in page
    assert 'value="bobs"' in page  # what Bob typed is kept
    renewed = form_key(page)
    assert renewed["idempotency_key"] != alices["idempotency_key"]
    assert not ImportJob.objects.exists()
    # The renewed form is Bob's own; Alice's key still makes Alice's job, under its id.
    assert post_import(client, name="bobs", **renewed).status_code == 302
    client.force_login(alice)
    made = post_import(client, name="alices", **alices)
    job = ImportJob.objects.get(name="alices")
    assert made["Location"] == f"/imports/{job.pk}"
    assert str(job.pk) == alices["idempotency_key"] and job.submitted_by == alice


def test_it_never_hands_a_job_to_another_user_posting_its_key(client, sent) -> None:
    alice, bob = make_user("alice"), make_user("bob")
    client.force_login(alice)
    alices = form_key(client.get("/imports/new").content.decode())
    assert post_import(client, **alices).status_code == 302
    client.force_login(bob)

    again = post_import(client, **alices)

    assert again.status_code == 422
    assert str(ImportJob.objects.get().pk) not in again.content.decode()
    assert ImportJob.objects.get().submitted_by == alice


@pytest.mark.parametrize(
    "posted",
    [
        {"idempotency_key": "c0ffee00-0000-4000-8000-000000000000"},  # no signature
        {"idempotency_key": "not-a-uuid", "idempotency_signature": "x"},
        {"idempotency_key": "c0ffee00-0000-4000-8000-000000000000:x", "idempotency_signature": ""},
    ],
)
def test_it_renews_a_forged_key_with_a_clear_message_not_a_500(
    operator_client, sent, posted
) -> None:
    response = post_import(operator_client, **posted)

    assert response.status_code == 422
    assert "It has been renewed for you; check the fields and press Import again." in (
        response.content.decode()
    )
    assert not ImportJob.objects.exists()


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
