from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

from celery import Task, shared_task
from celery.exceptions import SoftTimeLimitExceeded

from importer.jobs.retry import TransientSubmitError
from importer.transfers.copies import copies_advance
from importer.transfers.polling import exports_poll
from importer.transfers.services import export_submit, exports_sweep

logger = logging.getLogger(__name__)


T = TypeVar("T")


@shared_task(
    name="importer.export_tasks.submit_export",
    bind=True,
    ignore_result=True,
    acks_late=True,
    max_retries=None,
)
def submit_export(self: Task[[str], None], export_id: str) -> None:
    try:
        export_submit(export_id=export_id)
    except TransientSubmitError as error:
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


@shared_task(name="importer.export_tasks.poll_exports", ignore_result=True)
def poll_exports() -> None:
    """Exports' progress, then the copy chains' next steps."""
    summary = _step("Polling exports", exports_poll)
    moved = _step("Advancing copies", copies_advance)
    if (summary and summary.followed) or moved:
        logger.info("Polled %s; copy steps %s", summary, moved)


@shared_task(name="importer.export_tasks.sweep_exports", ignore_result=True)
def sweep_exports() -> None:
    resent = exports_sweep()
    if resent:
        logger.warning("Sweeper re-sent %d exports", resent)
