"""Sending work to the queue by the task's registered name: no module imports a tasks module.

The database row is the source of truth; a message that cannot be published is not an error
for the caller: the row stays as it is and the sweeper sends it again later.
"""

from __future__ import annotations

import logging

from celery import current_app
from kombu.exceptions import OperationalError as BrokerError

logger = logging.getLogger(__name__)

# Publishing must not hang a web request when the broker is down: one quick retry, then the
# job stays queued in the database for the sweeper.
PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.5}


def enqueue(task_name: str, *, row_id: object, countdown: float = 0) -> bool:
    """Publishes `task_name(str(row_id))`. False when the broker is unreachable."""
    try:
        current_app.send_task(
            task_name,
            args=(str(row_id),),
            countdown=countdown,
            retry=True,
            retry_policy=PUBLISH_RETRY_POLICY,
        )
    except (BrokerError, OSError) as error:
        logger.warning(
            "Broker unreachable, %s for %s stays queued for the sweeper: %s",
            task_name,
            row_id,
            error,
        )
        return False
    return True
