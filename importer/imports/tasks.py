"""The imports' Celery tasks: thin wrappers that take primary keys and call services.

Every task is safe to run twice (claims are conditional updates) because `acks_late` means a
task whose worker died is delivered again.
"""

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
from importer.jobs.runners import periodic_task, row_task

submit_import = row_task(
    "importer.tasks.submit_import",
    lambda job_id: import_submit(job_id=job_id),
    TransientSubmitError,
)
poll_imports = periodic_task(
    "importer.tasks.poll_imports",
    imports_poll,
    "Polled %s",
    lambda summary: summary.followed or summary.admitted,
)
sweep_imports = periodic_task(
    "importer.tasks.sweep_imports",
    imports_sweep,
    "Sweeper re-sent work: %s",
    lambda s: s.requeued_stuck or s.resent_queued or s.resent_tags,
    logging.WARNING,
)


@shared_task(
    name="importer.tasks.tag_snapshot",
    bind=True,
    ignore_result=True,
    acks_late=True,
    max_retries=MAX_TAG_ATTEMPTS,
)
def tag_snapshot(self: Task[[str], None], job_id: str) -> None:
    # Tagging is retried by Celery's own count: the job row does not count its tag attempts.
    final_attempt = self.request.retries >= MAX_TAG_ATTEMPTS
    try:
        snapshot_tag(job_id=job_id, final_attempt=final_attempt)
    except TransientTagError:
        raise self.retry(countdown=retry_delay(self.request.retries + 1)) from None
