"""The notifications' Celery tasks: their own periodic dispatch and the webhook deliveries."""

from __future__ import annotations

import logging

from importer.jobs.runners import periodic_task, row_task
from importer.notifications.services import (
    MAX_DELIVERY_ATTEMPTS,
    TransientDeliveryError,
    deliveries_sweep,
    notifications_dispatch,
    webhook_deliver,
)

deliver_webhook = row_task(
    "importer.export_tasks.deliver_webhook",
    lambda delivery_id: webhook_deliver(delivery_id=delivery_id),
    TransientDeliveryError,
    MAX_DELIVERY_ATTEMPTS,
)
# Tells whoever asked that their import, export or copy has ended.
dispatch_notifications = periodic_task(
    "importer.notifications.dispatch_notifications", notifications_dispatch, "Sent %d notifications"
)
sweep_deliveries = periodic_task(
    "importer.notifications.sweep_deliveries",
    deliveries_sweep,
    "Sweeper re-sent %d webhook deliveries",
    bool,
    logging.WARNING,
)
