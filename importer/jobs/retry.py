"""The one retry policy of every job a worker sends to the API, and the sweep that recovers
what a lost broker message or a dead worker left behind."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from importer.jobs.models import QUEUED, SubmittedJob
from importer.outscale.errors import OscApiError

MAX_SUBMIT_ATTEMPTS = 8
RETRY_BASE_SECONDS = 2.0
RETRY_MAX_SECONDS = 120.0
# A job queued this long past its due time was lost by the broker (or never reached it).
LOST_IN_QUEUE_AFTER = timedelta(minutes=2)
# Past the task's hard time limit the worker holding a claim is dead.
STUCK_SUBMITTING_AFTER = timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT + 60)
SWEEP_BATCH = 500


class TransientSubmitError(Exception):
    """The API had a passing problem; the job is queued again and the task should retry."""

    def __init__(self, retry_in: float) -> None:
        super().__init__(f"retry in {retry_in:.1f} s")
        self.retry_in = retry_in


def retry_delay(attempt: int) -> float:
    """Exponential backoff with full jitter, capped."""
    ceiling = min(RETRY_MAX_SECONDS, RETRY_BASE_SECONDS * 2 ** max(attempt - 1, 0))
    return random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not a secret


def fail_or_requeue(job: SubmittedJob, error: OscApiError) -> None:
    """After a refused submission: a permanent error (or one attempt too many) ends the job with
    the API's words; a passing one queues it again and raises TransientSubmitError."""
    code = error.code or str(error.http_status or "")
    if not error.transient:
        job.mark_failed(
            code=code,
            type=error.type,
            details=error.details or str(error),
            request_id=error.request_id,
        )
        return
    if job.attempts >= MAX_SUBMIT_ATTEMPTS:
        job.mark_failed(
            code=code,
            type=error.type or "Unavailable",
            details=f"Gave up after {job.attempts} attempts; last answer: {error}",
            request_id=error.request_id,
        )
        return
    delay = retry_delay(job.attempts)
    job.requeue(
        message=f"Temporary API problem, will retry: {error}",
        retry_at=timezone.now() + timedelta(seconds=delay),
        request_id=error.request_id,
    )
    raise TransientSubmitError(delay)


def sweep_submissions(
    model: type[SubmittedJob], send: Callable[[Any], bool], *, now: datetime
) -> tuple[int, int]:
    """Sends again the jobs the broker lost and those a dead worker held: (resent, requeued).
    The row is the truth; each job is re-sent by one sweeper only (conditional updates)."""
    manager: Any = model._default_manager
    resent = 0
    lost = manager.lost_in_queue(now=now, after=LOST_IN_QUEUE_AFTER)
    for job_id in list(lost.values_list("pk", flat=True)[:SWEEP_BATCH]):
        if manager.filter(pk=job_id, state=QUEUED).update(enqueued_at=now):
            resent += send(job_id)
    # After the lost ones, so that a job requeued just now is not sent twice.
    requeued = 0
    for job in manager.stuck_submitting(now=now, after=STUCK_SUBMITTING_AFTER)[:SWEEP_BATCH]:
        stopped = f"The worker sending this {job.noun} stopped; sending it again."
        if job.requeue(message=stopped, retry_at=timezone.now()):
            requeued += send(job.pk)
    return resent, requeued
