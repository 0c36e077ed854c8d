"""Email and webhook notifications, delivered to a real HTTP server that checks the signature."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.core import mail
from django.utils import timezone

from importer.notifications import services
from importer.notifications.models import (
    DeliveryState,
    NotificationRequest,
    TeamWebhook,
    WebhookDelivery,
)
from tests.support.factories import make_job, make_user

SECRET = "a-webhook-secret-of-some-length"  # noqa: S105 - a test secret
pytestmark = pytest.mark.django_db


class Receiver(ThreadingHTTPServer):
    """Checks each delivery's HMAC on its own (not with the portal's code) and records it."""

    def __init__(self, statuses: list[int]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.statuses = statuses
        self.received: list[dict[str, Any]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hook"


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers["Content-Length"]))
        parts = dict(p.split("=", 1) for p in self.headers["X-Portal-Signature"].split(","))
        expected = hmac.new(
            SECRET.encode(), parts["t"].encode() + b"." + body, hashlib.sha256
        ).hexdigest()
        self.server.received.append(
            {
                "valid": hmac.compare_digest(expected, parts["v1"]),
                "fresh": abs(time.time() - int(parts["t"])) < 60,
                "delivery": self.headers["X-Portal-Delivery"],
                "event": self.headers["X-Portal-Event"],
                "body": body.decode(),
            }
        )
        status = self.server.statuses.pop(0) if self.server.statuses else 204
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


@pytest.fixture
def receiver(settings: Any) -> Iterator[Receiver]:
    server = Receiver(statuses=[])
    # A local run's receiver: listed exactly, so the outbound guard admits it over http.
    settings.PORTAL_ALLOW_HTTP_URLS = True
    settings.PORTAL_WEBHOOK_HOSTS = [f"127.0.0.1:{server.server_address[1]}"]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def enqueued(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Deliveries the dispatcher queued, instead of publishing them to the broker."""
    sent: list[str] = []
    monkeypatch.setattr(
        services, "delivery_enqueue", lambda *, delivery_id: sent.append(str(delivery_id))
    )
    return sent


def failed_job_with_request(receiver: Receiver, **request: Any) -> Any:
    user = make_user("watcher")
    user.email = "watcher@example.com"
    user.save()
    job = make_job(user, name="nightly")
    team = job.team
    services.webhook_set(team=team, user=user, url=receiver.url, secret=SECRET)
    services.notification_request(
        user=user,
        team=team,
        kind="import",
        object_id=job.pk,
        by_email=request.get("by_email", True),
        by_webhook=request.get("by_webhook", True),
    )
    return job


def test_it_emails_and_calls_the_webhook_once_when_the_import_ends(
    receiver: Receiver, enqueued: list[str], django_capture_on_commit_callbacks: Any
) -> None:
    job = failed_job_with_request(receiver)
    with django_capture_on_commit_callbacks(execute=True):
        assert services.notifications_dispatch() == 0  # still running: nothing yet
    job.mark_failed(
        code="4045",
        type="InvalidParameterValue",
        details="https://oos.eu-west-2.outscale.com/b/k?X-Amz-Signature=" + "a" * 64,
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert services.notifications_dispatch() == 1
        assert services.notifications_dispatch() == 0  # never twice
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["watcher@example.com"]
    assert "nightly" in mail.outbox[0].subject and "error" in mail.outbox[0].subject
    assert "a" * 64 not in mail.outbox[0].body
    (delivery_id,) = enqueued
    services.webhook_deliver(delivery_id=delivery_id)
    (got,) = receiver.received
    assert got["valid"] and got["fresh"] and got["delivery"] == delivery_id
    assert got["event"] == "import.error"
    payload = json.loads(got["body"])
    assert payload["object"]["id"] == str(job.pk) and payload["object"]["state"] == "error"
    assert "a" * 64 not in got["body"] and SECRET not in got["body"]
    assert WebhookDelivery.objects.get().state == DeliveryState.DELIVERED
    assert NotificationRequest.objects.get().notified_at is not None


def test_it_retries_a_failing_receiver_with_the_same_delivery_then_succeeds(
    receiver: Receiver, enqueued: list[str], django_capture_on_commit_callbacks: Any
) -> None:
    receiver.statuses[:] = [503, 500]
    job = failed_job_with_request(receiver, by_email=False)
    job.mark_failed(code="1", type="X", details="y")
    with django_capture_on_commit_callbacks(execute=True):
        services.notifications_dispatch()
    (delivery_id,) = enqueued
    for _ in range(2):
        with pytest.raises(services.TransientDeliveryError) as retry:
            services.webhook_deliver(delivery_id=delivery_id)
        assert retry.value.retry_in > 0
    services.webhook_deliver(delivery_id=delivery_id)
    assert [r["delivery"] for r in receiver.received] == [delivery_id] * 3
    assert all(r["valid"] for r in receiver.received)
    delivery = WebhookDelivery.objects.get()
    assert delivery.state == DeliveryState.DELIVERED and delivery.attempts == 3
    assert mail.outbox == []


def test_it_gives_up_on_a_refusal_at_once_and_on_errors_after_the_bound(
    receiver: Receiver, enqueued: list[str], django_capture_on_commit_callbacks: Any
) -> None:
    receiver.statuses[:] = [400]
    job = failed_job_with_request(receiver, by_email=False)
    job.mark_failed(code="1", type="X", details="y")
    with django_capture_on_commit_callbacks(execute=True):
        services.notifications_dispatch()
    services.webhook_deliver(delivery_id=enqueued[0])
    refused = WebhookDelivery.objects.get()
    assert refused.state == DeliveryState.FAILED and refused.last_status == 400
    assert refused.attempts == 1

    receiver.statuses[:] = [500] * 20
    again = WebhookDelivery.objects.create(
        webhook=refused.webhook, event="import.error", payload={"event": "import.error"}
    )
    for _ in range(services.MAX_DELIVERY_ATTEMPTS - 1):
        with pytest.raises(services.TransientDeliveryError):
            services.webhook_deliver(delivery_id=str(again.pk))
    services.webhook_deliver(delivery_id=str(again.pk))
    again.refresh_from_db()
    assert again.state == DeliveryState.FAILED
    assert again.attempts == services.MAX_DELIVERY_ATTEMPTS


def test_it_keeps_the_webhook_secret_encrypted(receiver: Receiver) -> None:
    failed_job_with_request(receiver)
    stored = TeamWebhook.objects.get()
    assert SECRET not in stored.secret_encrypted
    assert services.decrypt_text(stored.secret_encrypted) == SECRET


@pytest.fixture
def public_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    """Names of the examples resolve to a public address (no DNS here); others fail."""

    def resolve(host: str, port: int, *args: Any) -> list[Any]:
        if host.endswith("example.com"):
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.215.14", port))]
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", resolve)


def test_it_lets_an_admin_set_the_webhook_and_an_auditor_not(client: Any, public_dns: None) -> None:
    admin = make_user("admin1", role="admin")
    client.force_login(admin)
    form = {"webhook_url": "https://hooks.example.com/portal", "webhook_secret": "short"}
    assert client.post("/team/transfers/", form).status_code == 422
    form["webhook_secret"] = SECRET
    assert client.post("/team/transfers/", form).status_code == 302
    stored = TeamWebhook.objects.get()
    assert services.decrypt_text(stored.url_encrypted) == form["webhook_url"]
    assert stored.url_redacted == "https://hooks.example.com/[redacted]"
    assert SECRET not in client.get("/team/transfers/").content.decode()
    auditor = make_user("auditor1", role="auditor", team=admin.memberships.first().team)
    client.force_login(auditor)
    assert client.post("/team/transfers/", form).status_code == 403


# --- Dispatching: in order, chosen by the query, each on its own ----------------------------


def watched_job(user: Any, name: str, *, ended: bool, asked_at: Any = None) -> Any:
    job = make_job(user, name=name)
    if ended:
        job.mark_failed(code="1", type="X", details="y")
    request = services.notification_request(
        user=user, team=job.team, kind="import", object_id=job.pk, by_email=True, by_webhook=False
    )
    if asked_at is not None:
        NotificationRequest.objects.filter(pk=request.pk).update(created_at=asked_at)
    return job


def watcher() -> Any:
    user = make_user("watcher")
    user.email = "watcher@example.com"
    user.save()
    return user


def test_it_sends_what_is_due_even_behind_a_batch_of_requests_for_running_jobs(
    monkeypatch: pytest.MonkeyPatch, django_capture_on_commit_callbacks: Any
) -> None:
    monkeypatch.setattr(services, "DISPATCH_BATCH", 3)
    user = watcher()
    for index in range(5):
        watched_job(user, f"running-{index}", ended=False)
    watched_job(user, "ended", ended=True)
    with django_capture_on_commit_callbacks(execute=True):
        assert services.notifications_dispatch() == 1
    assert [message.subject for message in mail.outbox] == [
        "[Snapshots Portal] import ended: error"
    ]


def test_it_sends_the_oldest_request_first_and_at_most_a_batch_per_run(
    monkeypatch: pytest.MonkeyPatch, django_capture_on_commit_callbacks: Any
) -> None:
    monkeypatch.setattr(services, "DISPATCH_BATCH", 1)
    user = watcher()
    now = timezone.now()
    watched_job(user, "newer", ended=True, asked_at=now - timedelta(minutes=1))
    watched_job(user, "older", ended=True, asked_at=now - timedelta(hours=1))
    for _ in range(2):
        with django_capture_on_commit_callbacks(execute=True):
            assert services.notifications_dispatch() == 1
    assert [message.subject.split()[3] for message in mail.outbox] == ["older:", "newer:"]


def test_it_sends_the_others_when_one_notification_fails(
    monkeypatch: pytest.MonkeyPatch, django_capture_on_commit_callbacks: Any
) -> None:
    user = watcher()
    broken = watched_job(user, "broken", ended=True)
    watched_job(user, "fine", ended=True)
    real_describe = services.describe

    def describe(kind: str, target: Any) -> dict[str, Any]:
        if target.pk == broken.pk:
            raise RuntimeError("an unexpected fault with this one")
        return real_describe(kind, target)

    monkeypatch.setattr(services, "describe", describe)
    with django_capture_on_commit_callbacks(execute=True):
        assert services.notifications_dispatch() == 1
    assert [message.subject.split()[3] for message in mail.outbox] == ["fine:"]
    # The failed one stays due: the next run tries it again.
    assert NotificationRequest.objects.get(object_id=broken.pk).notified_at is None
