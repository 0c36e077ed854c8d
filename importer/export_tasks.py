"""Celery tasks of exports, copies and notifications: thin wrappers taking primary keys.

Imported by `importer.tasks` (the module Celery discovers). The periodic entries are added to
the beat schedule in settings (CELERY_BEAT_SCHEDULE).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

from celery import Task, shared_task
from celery.exceptions import SoftTimeLimitExceeded

from importer import export_services, notifications, services

logger = logging.getLogger(__name__)
T = TypeVar("T")


@shared_task(bind=True, ignore_result=True, acks_late=True, max_retries=None)
def submit_export(self: Task[[str], None], export_id: str) -> None:
    try:
        export_services.export_submit(export_id=export_id)
    except services.TransientSubmitError as error:
        # Bounded on the row (attempts); a lost retry message is the sweeper's.
        raise self.retry(countdown=error.retry_in) from None


def _step(name: str, run: Callable[[], T]) -> T | None:
    """One step of the poll; its failure is logged and the next steps run all the same."""
    try:
        return run()
    except SoftTimeLimitExceeded:
        raise
    except Exception:
        logger.exception("%s failed; the poll goes on with its next step", name)
        return None


@shared_task(ignore_result=True)
def poll_exports() -> None:
    """Exports' progress, then the copy chains' next steps, then the notifications due."""
    summary = _step("Polling exports", export_services.exports_poll)
    moved = _step("Advancing copies", export_services.copies_advance)
    sent = _step("Dispatching notifications", notifications.notifications_dispatch)
    if (summary and summary.followed) or moved or sent:
        logger.info("Polled %s; copy steps %s; notifications %s", summary, moved, sent)


@shared_task(ignore_result=True)
def sweep_exports() -> None:
    resent = export_services.exports_sweep() + notifications.deliveries_sweep()
    if resent:
        logger.warning("Sweeper re-sent %d exports or webhook deliveries", resent)


@shared_task(
    bind=True,
    ignore_result=True,
    acks_late=True,
    max_retries=notifications.MAX_DELIVERY_ATTEMPTS,
)
def deliver_webhook(self: Task[[str], None], delivery_id: str) -> None:
    try:
        notifications.webhook_deliver(delivery_id=delivery_id)
    except notifications.TransientDeliveryError as error:
        raise self.retry(countdown=error.retry_in) from None
