from __future__ import annotations

import logging

from celery import Task, shared_task

from importer.notifications.services import (
    MAX_DELIVERY_ATTEMPTS,
    TransientDeliveryError,
    deliveries_sweep,
    notifications_dispatch,
    webhook_deliver,
)

logger = logging.getLogger(__name__)


@shared_task(
    name="importer.export_tasks.deliver_webhook",
    bind=True,
    ignore_result=True,
    acks_late=True,
    max_retries=MAX_DELIVERY_ATTEMPTS,
)
def deliver_webhook(self: Task[[str], None], delivery_id: str) -> None:
    try:
        webhook_deliver(delivery_id=delivery_id)
    except TransientDeliveryError as error:
        raise self.retry(countdown=error.retry_in) from None


@shared_task(name="importer.notifications.dispatch_notifications", ignore_result=True)
def dispatch_notifications() -> None:
    """Tells whoever asked that their import, export or copy has ended."""
    sent = notifications_dispatch()
    if sent:
        logger.info("Sent %d notifications", sent)


@shared_task(name="importer.notifications.sweep_deliveries", ignore_result=True)
def sweep_deliveries() -> None:
    resent = deliveries_sweep()
    if resent:
        logger.warning("Sweeper re-sent %d webhook deliveries", resent)
