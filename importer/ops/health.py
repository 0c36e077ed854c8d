from __future__ import annotations

import hmac
import logging

from django.conf import settings
from django.db import connection
from django.db.utils import Error as DatabaseError
from django.http import HttpRequest
from kombu import Connection
from kombu.exceptions import OperationalError as BrokerError

from importer.jobs.models import WorkerHeartbeat
from importer.teams.models import Membership, Role

BROKER_TIMEOUT_SECONDS = 2


logger = logging.getLogger(__name__)


def check_database() -> tuple[bool, str]:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError as error:
        return False, f"{type(error).__name__}: {error}"
    return True, connection.vendor


def check_broker() -> tuple[bool, str]:
    broker = Connection(
        settings.CELERY_BROKER_URL,
        transport_options=settings.CELERY_BROKER_TRANSPORT_OPTIONS,
        connect_timeout=BROKER_TIMEOUT_SECONDS,
    )
    try:
        with broker:
            broker.ensure_connection(
                max_retries=1, interval_start=0, timeout=BROKER_TIMEOUT_SECONDS
            )
            # Opening a channel is what really talks to the server (Redis answers a PING here).
            broker.default_channel  # noqa: B018
    except (BrokerError, OSError, TimeoutError) as error:
        return False, f"{type(error).__name__}: {error}"
    return True, broker.transport_cls


def holds_bearer_token(request: HttpRequest, token: str) -> bool:
    """Whether the request sends `Authorization: Bearer <token>` (never when token is empty)."""
    if not token:
        return False  # unset: no token opens the details
    scheme, _, offered = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return False
    # Constant time: the answer's timing says nothing about how much of a guess was right.
    return hmac.compare_digest(offered.strip().encode(), token.encode())


def _is_deployment_admin(request: HttpRequest) -> bool:
    """Staff, superusers and team admins, logged in (the session and roles live in the database)."""
    try:
        user = request.user
        if not user.is_authenticated:
            return False
        if user.is_staff or user.is_superuser:
            return True
        return Membership.objects.filter(user_id=user.pk, role=Role.ADMIN).exists()
    except DatabaseError:
        return False  # the database went away between the check and now: the public answer


def health_report(request: HttpRequest) -> tuple[int, dict[str, object]]:
    """The status code and body of /healthz: 200 when database and broker answer, else 503."""
    database_ok, database_detail = check_database()
    broker_ok, broker_detail = check_broker()
    healthy = database_ok and broker_ok
    code = 200 if healthy else 503
    body: dict[str, object] = {"status": "ok" if healthy else "unavailable"}
    if not healthy:
        # The public answer hides why; the operators find it in the log.
        logger.warning(
            "healthz: unavailable (database: %s, broker: %s)", database_detail, broker_detail
        )
    detailed = holds_bearer_token(request, settings.PORTAL_HEALTH_TOKEN) or (
        database_ok and _is_deployment_admin(request)
    )
    if not detailed:
        return code, body
    body["database"] = {"ok": database_ok, "detail": database_detail}
    body["broker"] = {"ok": broker_ok, "detail": broker_detail}
    if database_ok:
        latest = WorkerHeartbeat.objects.order_by("-seen_at").first()
        body["last_worker_heartbeat"] = latest.seen_at.isoformat() if latest else None
    return code, body
