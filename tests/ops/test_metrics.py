"""/metrics: closed without its token, Prometheus text with it, and every process counted."""

from __future__ import annotations

import runpy
from datetime import UTC, datetime, timedelta

import pytest
import requests
import responses
from django.core.exceptions import ImproperlyConfigured
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from importer.imports import polling
from importer.imports.models import ImportJob, JobState
from importer.jobs.models import WorkerHeartbeat
from importer.notifications import services as notifications
from importer.notifications.models import TeamWebhook, WebhookDelivery
from importer.outscale.errors import OscApiError
from importer.outscale.signing import OscCredentials
from importer.outscale.transport import Transport
from tests.imports.test_import_pipeline import run_submit, submit
from tests.notifications.test_notifications import SECRET, Receiver
from tests.notifications.test_notifications import receiver as receiver  # the fixture
from tests.support.factories import make_job, make_user
from tests.support.workers import ROOT, wait_until

TOKEN = "metrics-token-for-the-scraper-0123456789abcdef"  # noqa: S105
API = "https://api.eu-west-2.example.test/api/v1"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(client: Client) -> Samples:
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200, response.content[:500]
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture
def token(settings) -> str:
    settings.PORTAL_METRICS_TOKEN = TOKEN
    return TOKEN


@pytest.mark.django_db
def test_it_hides_the_metrics_when_no_token_is_set(client, settings) -> None:
    settings.PORTAL_METRICS_TOKEN = ""
    client.force_login(make_user("root-like", role="admin"))
    assert client.get("/metrics").status_code == 404
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 404
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 404


@pytest.mark.django_db
def test_it_refuses_a_missing_or_wrong_token(client, token) -> None:
    client.force_login(make_user("admin-user", role="admin"))  # a session opens nothing here
    for header in ("", f"Bearer {token[:-1]}", f"Basic {token}", "Bearer ", token):
        response = client.get("/metrics", HTTP_AUTHORIZATION=header)
        assert response.status_code == 401, header
        assert "portal_" not in response.content.decode()
    assert client.post("/metrics", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 405


def test_it_refuses_a_short_metrics_token(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SECRET_KEY", "DATABASE_URL", "CELERY_BROKER_URL", "PORTAL_ENCRYPTION_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DEBUG", "1")
    monkeypatch.setenv("PORTAL_METRICS_TOKEN", "short")
    with pytest.raises(ImproperlyConfigured, match="PORTAL_METRICS_TOKEN must be 32"):
        runpy.run_path(str(ROOT / "snapshots_portal" / "settings.py"))


@pytest.mark.django_db
def test_it_reads_imports_queue_and_heartbeat_from_the_database(client, token) -> None:
    user = make_user("olga")
    make_job(user, state=JobState.COMPLETED)
    make_job(user, state=JobState.COMPLETED)
    waiting = make_job(user, state=JobState.WAITING)
    ImportJob.objects.filter(pk=waiting.pk).update(created_at=timezone.now() - timedelta(hours=2))
    WorkerHeartbeat.objects.create(hostname="w1", seen_at=timezone.now() - timedelta(minutes=5))
    samples = scrape(client)
    assert value(samples, "portal_database_up") == 1
    assert value(samples, "portal_imports", state="completed") == 2
    assert value(samples, "portal_imports", state="waiting") == 1
    assert ("portal_imports", frozenset({("state", "error")})) in samples  # zero, yet listed
    assert 2 * 3600 <= value(samples, "portal_imports_waiting_oldest_seconds") < 3 * 3600
    assert 300 <= value(samples, "portal_worker_heartbeat_age_seconds") < 3600


@pytest.mark.django_db
def test_it_leaves_the_heartbeat_out_before_any_worker_was_seen(client, token) -> None:
    samples = scrape(client)
    assert value(samples, "portal_imports_waiting_oldest_seconds") == 0
    assert not [key for key in samples if key[0] == "portal_worker_heartbeat_age_seconds"]


def transport() -> Transport:
    return Transport(
        credentials=OscCredentials(access_key="AK" * 10, secret_key="SK" * 20),
        region="eu-west-2",
        endpoint=API,
        connect_timeout=1,
        read_timeout=1,
        session=requests.Session(),
        clock=lambda: datetime(2024, 5, 6, tzinfo=UTC),
    )


@pytest.mark.django_db
@responses.activate
def test_it_counts_api_calls_by_action_and_outcome(client, token) -> None:
    answer = {"ResponseContext": {"RequestId": "req-1"}}
    refusal = {
        "Errors": [{"Code": "4045", "Type": "InvalidParameterValue", "Details": "no"}],
        "ResponseContext": {"RequestId": "req-2"},
    }
    responses.post(f"{API}/ReadVolumes", json=answer)
    responses.post(f"{API}/ReadVolumes", json=refusal, status=400)
    responses.post(f"{API}/ReadVolumes", body=requests.ConnectionError("refused"))
    before = scrape(client)
    transport().call("ReadVolumes", {})
    for _ in range(2):
        with pytest.raises(OscApiError):
            transport().call("ReadVolumes", {})
    after = scrape(client)
    for outcome in ("ok", "4045", "transport"):
        moved = value(after, "portal_api_calls_total", action="ReadVolumes", outcome=outcome)
        was = value(before, "portal_api_calls_total", action="ReadVolumes", outcome=outcome)
        assert moved - was == 1, outcome
    timed = "portal_api_call_seconds_count"
    assert (
        value(after, timed, action="ReadVolumes") - value(before, timed, action="ReadVolumes") == 3
    )


@pytest.mark.django_db
def test_it_counts_throttling_answers_and_poll_cycles(client, token, api_on_sandbox) -> None:
    api_on_sandbox.inject_fault("CreateSnapshot", "error", status=503, count=1)  # code 6
    before = scrape(client)
    job = run_submit(submit(api_on_sandbox))
    assert job.state == JobState.WAITING
    polling.imports_poll()
    after = scrape(client)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("portal_api_calls_total", action="CreateSnapshot", outcome="6") == 1
    assert moved("portal_api_throttled_total") == 1
    assert moved("portal_poll_cycle_seconds_count") == 1
    assert value(after, "portal_imports", state="waiting") == 1


@pytest.mark.django_db
def test_it_counts_webhook_deliveries_by_outcome(client, token, receiver: Receiver) -> None:
    user = make_user("hooked")
    team = user.memberships.first().team
    notifications.webhook_set(team=team, user=user, url=receiver.url, secret=SECRET)
    webhook = TeamWebhook.objects.get(team=team)
    before = scrape(client)
    receiver.statuses[:] = [503, 204, 400]
    retried = WebhookDelivery.objects.create(webhook=webhook, event="import.error", payload={})
    with pytest.raises(notifications.TransientDeliveryError):
        notifications.webhook_deliver(delivery_id=str(retried.pk))
    notifications.webhook_deliver(delivery_id=str(retried.pk))
    refused = WebhookDelivery.objects.create(webhook=webhook, event="import.error", payload={})
    notifications.webhook_deliver(delivery_id=str(refused.pk))
    after = scrape(client)
    for outcome in ("retried", "delivered", "failed"):
        was = value(before, "portal_webhook_deliveries_total", outcome=outcome)
        assert value(after, "portal_webhook_deliveries_total", outcome=outcome) - was == 1, outcome


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_it_counts_the_workers_calls_in_the_web_scrape(
    celery_worker, api_on_sandbox, client, settings
) -> None:
    # The worker is another process: its counters reach this scrape only through the shared
    # multiprocess folder.
    settings.PORTAL_METRICS_TOKEN = TOKEN
    create = {"action": "CreateSnapshot", "outcome": "ok"}
    before = scrape(client)
    client.force_login(make_user("operator1"))
    response = client.post(
        "/imports/new",
        {
            "name": "nightly",
            "description": "",
            "presigned_url": api_on_sandbox.presign(),
            "snapshot_size": str(10 * 1024**3),
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    job = ImportJob.objects.get(pk=response["Location"].rsplit("/", 1)[1])
    wait_until(
        lambda: ImportJob.objects.filter(pk=job.pk, state=JobState.COMPLETED).exists(), seconds=90
    )

    # The worker counts the call before it writes the job's new state: no wait is needed here.
    after = scrape(client)
    assert value(after, "portal_api_calls_total", **create) > value(
        before, "portal_api_calls_total", **create
    )
    assert value(after, "portal_imports", state="completed") == 1
    # The poll that saw the job end records its duration just after: wait for that event.
    polls = "portal_poll_cycle_seconds_count"
    wait_until(lambda: value(scrape(client), polls) > value(before, polls), seconds=30)
