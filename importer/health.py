"""Reachability checks for /healthz: each answers (ok, detail) and never raises."""

from __future__ import annotations

from django.conf import settings
from django.db import connection
from django.db.utils import Error as DatabaseError
from kombu import Connection
from kombu.exceptions import OperationalError as BrokerError

BROKER_TIMEOUT_SECONDS = 2


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
