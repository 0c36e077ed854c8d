from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

import requests
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.contrib.auth.models import User
from django.core.mail import get_connection, send_mail
from django.db import transaction
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from importer.audit.chain import record
from importer.audit.models import AuditAction
from importer.core.crypto import DecryptionError, decrypt_text, encrypt_text
from importer.core.metrics import WEBHOOK_DELIVERIES
from importer.core.net.addresses import check_destination
from importer.core.net.guard import (
    DestinationRefused,
    GuardRefusal,
    Policy,
    check_url,
)
from importer.core.net.session import guarded_session
from importer.core.redaction import redact_destination, redact_text
from importer.imports.models import TERMINAL_STATES, ImportJob
from importer.jobs.queue import enqueue
from importer.jobs.retry import retry_delay
from importer.notifications.models import (
    DeliveryState,
    NotificationRequest,
    NotifyKind,
    TeamWebhook,
    WebhookDelivery,
)
from importer.teams.models import Team
from importer.transfers.models import (
    COPY_TERMINAL_STATES,
    EXPORT_TERMINAL_STATES,
    CopyChain,
    ExportTask,
)

logger = logging.getLogger(__name__)


MAX_DELIVERY_ATTEMPTS = 6


DELIVERY_TIMEOUT = (5.0, 10.0)


DISPATCH_BATCH = 500


SIGNATURE_HEADER = "X-Portal-Signature"


# The states in which a job has ended, and so its notification is due.
_ENDED_STATES: dict[str, tuple[type[ImportJob | ExportTask | CopyChain], tuple[str, ...]]] = {
    NotifyKind.IMPORT: (ImportJob, TERMINAL_STATES),
    NotifyKind.EXPORT: (ExportTask, EXPORT_TERMINAL_STATES),
    NotifyKind.COPY: (CopyChain, COPY_TERMINAL_STATES),
}


class TransientDeliveryError(Exception):
    def __init__(self, retry_in: float) -> None:
        super().__init__(f"retry in {retry_in:.1f} s")
        self.retry_in = retry_in


def notification_request(
    *,
    user: User,
    team: Team,
    kind: str,
    object_id: uuid.UUID,
    by_email: bool,
    by_webhook: bool,
    ip: str | None = None,
) -> NotificationRequest:
    with transaction.atomic():
        request, _ = NotificationRequest.objects.update_or_create(
            user=user,
            kind=kind,
            object_id=object_id,
            defaults={"team": team, "by_email": by_email, "by_webhook": by_webhook},
        )
        record(
            action=AuditAction.NOTIFICATION_REQUESTED,
            actor=user,
            team=team,
            target=str(object_id),
            ip=ip,
            details={"kind": kind, "email": by_email, "webhook": by_webhook},
        )
    return request


def webhook_set(
    *,
    team: Team,
    user: User,
    url: str,
    secret: str,
    remove: bool = False,
    ip: str | None = None,
) -> None:
    """Saves the team's webhook, checked by the outbound guard, and audits the transfer settings.

    An empty URL keeps the current webhook, unless ``remove``. Raises DestinationRefused. The
    entry also names the team's OOS endpoint (`teams.services.oos_endpoint_set`), which the
    settings page saves with it.
    """
    if url:
        webhook_url_check(url)
    with transaction.atomic():
        if url:
            fields: dict[str, Any] = {
                "url_encrypted": encrypt_text(url),
                "url_redacted": redact_destination(url),
                "active": True,
                "updated_at": timezone.now(),
            }
            if secret:
                fields["secret_encrypted"] = encrypt_text(secret)
            TeamWebhook.objects.update_or_create(team=team, defaults=fields)
        elif remove:
            TeamWebhook.objects.filter(team=team).delete()
        record(
            action=AuditAction.WEBHOOK_CHANGED,
            actor=user,
            team=team,
            target=team.name,
            ip=ip,
            details={
                "webhook_url": redact_destination(url) if url else "",
                "webhook_removed": bool(remove and not url),
                "secret_changed": bool(secret),
                "oos": team.oos_endpoint,
            },
        )
    team.refresh_from_db()


# Per kind of job: where its page is, and what a notification says of it beyond the shared fields.
_DESCRIBED: dict[type, tuple[str, tuple[str, ...]]] = {
    ImportJob: ("imports", ("name",)),
    ExportTask: ("exports", ("bucket", "object_key", "comment")),
    CopyChain: ("copies", ("name",)),
}


def describe(kind: str, target: Any) -> dict[str, Any]:
    """What a notification says about the job: states, ids, errors; never a URL's secret."""
    pages, fields = _DESCRIBED[type(target)]
    body: dict[str, Any] = {
        "kind": kind,
        "id": str(target.pk),
        "state": target.state,
        "snapshot_id": target.snapshot_id,
        **{field: getattr(target, field) for field in fields},
        "error": target.error_details,
        "path": f"/{pages}/{target.pk}",
    }
    if isinstance(target, CopyChain):
        body["target_team"] = target.target_team.name
    # Belt and braces: whatever text a job holds goes out redacted.
    return {
        key: redact_text(value) if isinstance(value, str) else value for key, value in body.items()
    }


def sign(secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify(secret: str, header: str, body: bytes, *, tolerance: int = 300) -> bool:
    """What a receiver checks: the HMAC matches and the timestamp is recent."""
    parts = dict(item.split("=", 1) for item in header.split(",") if "=" in item)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs(time.time() - timestamp) > tolerance:
        return False
    expected = sign(secret, timestamp, body).split("v1=", 1)[1]
    return hmac.compare_digest(expected, parts.get("v1", ""))


def notifications_due() -> QuerySet[NotificationRequest]:
    """Requests not sent yet whose job has ended, oldest first: the query does the choosing, so
    requests of jobs still running never fill a batch and hold back those that are due."""
    ended = Q()
    for kind, (model, states) in _ENDED_STATES.items():
        job_ended = model._default_manager.filter(pk=OuterRef("object_id"), state__in=states)
        ended |= Q(Exists(job_ended), kind=kind)
    return (
        NotificationRequest.objects.filter(ended, notified_at__isnull=True)
        .select_related("user", "team")
        .order_by("created_at", "pk")
    )


def notifications_dispatch(*, now: datetime | None = None) -> int:
    """Sends what is due, oldest first, at most `DISPATCH_BATCH` a run: each request once.

    Each request is sent on its own: one that fails is logged and stays due for the next run,
    and the others are sent all the same. Returns how many were sent.
    """
    now = now or timezone.now()
    due = list(notifications_due()[:DISPATCH_BATCH])
    targets = _targets_of(due)
    sent = 0
    for request in due:
        target = targets.get((request.kind, request.object_id))
        if target is None:
            continue  # deleted since the query
        try:
            sent += _dispatch_one(request, target, now=now)
        except SoftTimeLimitExceeded:
            raise  # the task's time is up: what is left is due on the next run
        except Exception:
            logger.exception("Notification %s failed; it stays due, the others go on", request.pk)
    return sent


def _targets_of(requests: list[NotificationRequest]) -> dict[tuple[str, uuid.UUID], Any]:
    """The jobs the requests are about, in one query per kind."""
    targets: dict[tuple[str, uuid.UUID], Any] = {}
    loaders: dict[str, Callable[[list[uuid.UUID]], Iterable[Any]]] = {
        NotifyKind.IMPORT: lambda ids: ImportJob.objects.filter(pk__in=ids),
        NotifyKind.EXPORT: lambda ids: ExportTask.objects.filter(pk__in=ids),
        # describe() names the copy's target team.
        NotifyKind.COPY: lambda ids: CopyChain.objects.filter(pk__in=ids).select_related(
            "target_team"
        ),
    }
    for kind, load in loaders.items():
        ids = [request.object_id for request in requests if request.kind == kind]
        if ids:
            targets.update(((kind, row.pk), row) for row in load(ids))
    return targets


def _dispatch_one(request: NotificationRequest, target: Any, *, now: datetime) -> bool:
    event = f"{request.kind}.{target.state}"
    payload = describe(request.kind, target)
    with transaction.atomic():
        claimed = NotificationRequest.objects.filter(
            pk=request.pk, notified_at__isnull=True
        ).update(notified_at=now)
        if claimed != 1:
            return False
        channels = []
        if request.by_email and request.user.email:
            channels.append("email")
            transaction.on_commit(lambda: _send_email(request.user, event, payload))
        webhook = TeamWebhook.objects.filter(team=request.team, active=True).first()
        if request.by_webhook and webhook is not None:
            channels.append("webhook")
            delivery = WebhookDelivery.objects.create(
                webhook=webhook,
                event=event,
                payload={"event": event, "team": request.team.name, "object": payload},
            )
            transaction.on_commit(lambda: delivery_enqueue(delivery_id=delivery.pk))
        record(
            action=AuditAction.NOTIFICATION_SENT,
            team=request.team,
            target=str(request.object_id),
            details={"event": event, "user": request.user.get_username(), "channels": channels},
        )
    return True


def _send_email(user: User, event: str, payload: dict[str, Any]) -> None:
    what = payload.get("name") or payload.get("snapshot_id") or payload["id"]
    lines = [f"{key}: {value}" for key, value in payload.items() if value not in ("", None)]
    try:
        send_mail(
            subject=f"[Snapshots Portal] {payload['kind']} {what}: {payload['state']}",
            message="\n".join(
                [f"The {payload['kind']} you follow has ended ({event}).", ""] + lines
            ),
            from_email=None,
            recipient_list=[user.email],
            connection=get_connection(fail_silently=False),
        )
    except Exception as error:  # a mail server problem must not undo the job's end
        logger.warning("Notification email to user %s failed: %s", user.pk, type(error).__name__)


def delivery_enqueue(*, delivery_id: uuid.UUID, countdown: float = 0) -> bool:
    return enqueue("importer.export_tasks.deliver_webhook", row_id=delivery_id, countdown=countdown)


def webhook_deliver(*, delivery_id: str) -> None:
    """POSTs one delivery; raises TransientDeliveryError when it should be tried again."""
    delivery = (
        WebhookDelivery.objects.select_related("webhook")
        .filter(pk=delivery_id, state=DeliveryState.PENDING)
        .first()
    )
    if delivery is None:
        return
    try:
        secret = decrypt_text(delivery.webhook.secret_encrypted)
        url = decrypt_text(delivery.webhook.url_encrypted)
    except DecryptionError as error:
        _finish(delivery, DeliveryState.FAILED, error=str(error))
        return
    body = json.dumps({**delivery.payload, "delivery": str(delivery.pk)}, sort_keys=True).encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "snapshots-portal-webhook/1",
        "X-Portal-Event": delivery.event,
        "X-Portal-Delivery": str(delivery.pk),
        SIGNATURE_HEADER: sign(secret, int(time.time()), body),
    }
    attempts = delivery.attempts + 1
    status: int | None = None
    problem = ""
    transient = False
    policy = webhook_policy()
    try:
        # Through the outbound guard: the stored value itself first (before requests drops a
        # fragment or reads a leading-zero port), then the request as sent: resolved again
        # (DNS may answer differently than when it was saved), the checked address dialled,
        # no redirect, the answer capped.
        check_url(url, policy)
        response = guarded_session(policy).post(
            url, data=body, headers=headers, timeout=DELIVERY_TIMEOUT
        )
        status = response.status_code
        transient = status == 429 or status >= 500
        problem = "" if 200 <= status < 300 else f"HTTP {status}"
    except (GuardRefusal, DestinationRefused) as refusal:
        transient, problem = False, f"Refused by the outbound guard: {refusal}"
    except requests.RequestException as exc:
        transient, problem = True, type(exc).__name__
    if not problem:
        _finish(delivery, DeliveryState.DELIVERED, attempts=attempts, status=status)
        return
    if not transient or attempts >= MAX_DELIVERY_ATTEMPTS:
        _finish(delivery, DeliveryState.FAILED, attempts=attempts, status=status, error=problem)
        return
    delay = retry_delay(attempts)
    WEBHOOK_DELIVERIES.labels(outcome="retried").inc()
    WebhookDelivery.objects.filter(pk=delivery.pk, state=DeliveryState.PENDING).update(
        attempts=attempts,
        last_status=status,
        last_error=problem[:500],
        next_attempt_at=timezone.now() + timedelta(seconds=delay),
    )
    raise TransientDeliveryError(delay)


def _finish(
    delivery: WebhookDelivery,
    state: str,
    *,
    attempts: int | None = None,
    status: int | None = None,
    error: str = "",
) -> None:
    finished = WebhookDelivery.objects.filter(pk=delivery.pk, state=DeliveryState.PENDING).update(
        state=state,
        attempts=attempts if attempts is not None else delivery.attempts,
        last_status=status,
        last_error=redact_text(error)[:500],
        delivered_at=timezone.now() if state == DeliveryState.DELIVERED else None,
    )
    if finished:  # counted once, by the process whose update ended it
        WEBHOOK_DELIVERIES.labels(outcome=state).inc()


def deliveries_sweep(
    *, now: datetime | None = None, overdue: timedelta = timedelta(minutes=5)
) -> int:
    """Re-sends pending deliveries long past their due time (a lost retry message)."""
    now = now or timezone.now()
    due = WebhookDelivery.objects.filter(
        state=DeliveryState.PENDING, next_attempt_at__lt=now - overdue
    )
    resent = 0
    for delivery_id in list(due.values_list("pk", flat=True)[:DISPATCH_BATCH]):
        WebhookDelivery.objects.filter(pk=delivery_id).update(next_attempt_at=now)
        resent += delivery_enqueue(delivery_id=delivery_id)
    return resent


# A webhook's answer is never used: a little is read so the connection closes cleanly.
WEBHOOK_MAX_RESPONSE_BYTES = 64 * 1024


WEBHOOK_CONNECT_SECONDS = 5.0


WEBHOOK_READ_SECONDS = 10.0


def webhook_policy() -> Policy:
    return Policy(
        purpose="webhook",
        example="https://hooks.example.com/snapshots",
        any_public_host=True,
        extra_hosts=tuple(settings.PORTAL_WEBHOOK_HOSTS),
        allow_http=settings.PORTAL_ALLOW_HTTP_URLS,
        connect_timeout=WEBHOOK_CONNECT_SECONDS,
        read_timeout=WEBHOOK_READ_SECONDS,
        total_timeout=WEBHOOK_CONNECT_SECONDS + WEBHOOK_READ_SECONDS,
        max_response_bytes=WEBHOOK_MAX_RESPONSE_BYTES,
        extra_hosts_setting="PORTAL_WEBHOOK_HOSTS",
    )


def webhook_url_check(url: str) -> str:
    check_destination(url, webhook_policy())
    return url.strip()
