from __future__ import annotations

import logging

from celery import Task, shared_task

from importer.imports.polling import imports_poll
from importer.imports.services import (
    MAX_TAG_ATTEMPTS,
    TransientTagError,
    import_submit,
    imports_sweep,
    snapshot_tag,
)
from importer.jobs.retry import TransientSubmitError, retry_delay

logger = logging.getLogger(__name__)


@shared_task(
    name="importer.tasks.submit_import",
    bind=True,
    ignore_result=True,
    acks_late=True,
    max_retries=None,
)
def submit_import(self: Task[[str], None], job_id: str) -> None:
    try:
        import_submit(job_id=job_id)
    except TransientSubmitError as error:
        # The job row is queued again and counts its attempts (bounded there); if this retry
        # message is lost, the sweeper sends the job again.
        raise self.retry(countdown=error.retry_in) from None


@shared_task(
    name="importer.tasks.tag_snapshot",
    bind=True,
    ignore_result=True,
    acks_late=True,
    max_retries=MAX_TAG_ATTEMPTS,
)
def tag_snapshot(self: Task[[str], None], job_id: str) -> None:
    final_attempt = self.request.retries >= MAX_TAG_ATTEMPTS
    try:
        snapshot_tag(job_id=job_id, final_attempt=final_attempt)
    except TransientTagError:
        raise self.retry(countdown=retry_delay(self.request.retries + 1)) from None


@shared_task(name="importer.tasks.poll_imports", ignore_result=True)
def poll_imports() -> None:
    summary = imports_poll()
    if summary.followed:
        logger.info("Polled %s", summary)


@shared_task(name="importer.tasks.sweep_imports", ignore_result=True)
def sweep_imports() -> None:
    summary = imports_sweep()
    if any((summary.requeued_stuck, summary.resent_queued, summary.resent_tags)):
        logger.warning("Sweeper re-sent work: %s", summary)
