"""Celery tasks: thin wrappers that take primary keys and call services.

Every task is safe to run twice (claims are conditional updates) because `acks_late` means a
task whose worker died is delivered again.
"""

from __future__ import annotations

import logging
import socket

from celery import Task, shared_task
from django.utils import timezone

from importer import services
from importer.models import WorkerHeartbeat

logger = logging.getLogger(__name__)


@shared_task(ignore_result=True)
def record_worker_heartbeat() -> None:
    """Beat sends this every 30 s; whichever worker takes it records that it is alive."""
    WorkerHeartbeat.objects.update_or_create(
        hostname=socket.gethostname(), defaults={"seen_at": timezone.now()}
    )


@shared_task(bind=True, ignore_result=True, acks_late=True, max_retries=None)
def submit_import(self: Task[[str], None], job_id: str) -> None:
    try:
        services.import_submit(job_id=job_id)
    except services.TransientSubmitError as error:
        # The job row is queued again and counts its attempts (bounded there); if this retry
        # message is lost, the sweeper sends the job again.
        raise self.retry(countdown=error.retry_in) from None


@shared_task(bind=True, ignore_result=True, acks_late=True, max_retries=services.MAX_TAG_ATTEMPTS)
def tag_snapshot(self: Task[[str], None], job_id: str) -> None:
    final_attempt = self.request.retries >= services.MAX_TAG_ATTEMPTS
    try:
        services.snapshot_tag(job_id=job_id, final_attempt=final_attempt)
    except services.TransientTagError:
        raise self.retry(countdown=services.retry_delay(self.request.retries + 1)) from None


@shared_task(ignore_result=True)
def poll_imports() -> None:
    summary = services.imports_poll()
    if summary.followed:
        logger.info("Polled %s", summary)


@shared_task(ignore_result=True)
def sweep_imports() -> None:
    summary = services.imports_sweep()
    if any((summary.requeued_stuck, summary.resent_queued, summary.resent_tags)):
        logger.warning("Sweeper re-sent work: %s", summary)


from importer import export_tasks  # noqa: E402,F401 - Celery discovers tasks.py only
