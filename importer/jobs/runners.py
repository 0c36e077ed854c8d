"""The two shapes every Celery task of the app takes, so each tasks module only names its own.

- A *row task* takes a primary key and hands it to a service; a passing problem the service
  signals (an exception with `retry_in`) becomes a Celery retry after that delay. The row counts
  its own attempts, and the sweeper re-sends whatever a lost retry message leaves behind.
- A *periodic task* runs a service from the beat schedule and logs its summary when there is
  something to say.

Each task keeps the name it is registered under (`name`), so queued messages survive a move.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from celery import shared_task

from importer.core.logs import log_context

logger = logging.getLogger(__name__)
Summary = TypeVar("Summary")


class Retryable(Protocol):
    retry_in: float


def row_task(
    name: str,
    run: Callable[[str], None],
    transient: type[Exception],
    max_retries: int | None = None,
) -> Any:
    """A task `name(row_id)` that calls `run(row_id)`, retrying on `transient` errors."""

    @shared_task(name=name, bind=True, ignore_result=True, acks_late=True, max_retries=max_retries)
    def task(self: Any, row_id: str) -> None:
        try:
            # Every line the work logs names the job it is about (PORTAL_LOG_FORMAT=json).
            with log_context(job_id=row_id):
                run(row_id)
        except transient as error:
            retry_in: float = getattr(error, "retry_in")  # noqa: B009 - the transient errors' delay
            raise self.retry(countdown=retry_in) from None

    return task


def periodic_task(
    name: str,
    run: Callable[[], Summary],
    message: str,
    worth_saying: Callable[[Summary], object] = bool,
    level: int = logging.INFO,
) -> Any:
    """A task `name()` that runs `run()` and logs `message % summary` when `worth_saying`."""

    @shared_task(name=name, ignore_result=True)
    def task() -> None:
        summary = run()
        if worth_saying(summary):
            logger.log(level, message, summary)

    return task
