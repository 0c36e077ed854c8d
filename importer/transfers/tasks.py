"""The exports' and copies' Celery tasks: thin wrappers taking primary keys (see jobs.runners)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

from celery.exceptions import SoftTimeLimitExceeded

from importer.jobs.retry import TransientSubmitError
from importer.jobs.runners import periodic_task, row_task
from importer.transfers.copies import copies_advance
from importer.transfers.polling import ExportPollSummary, exports_poll
from importer.transfers.services import export_submit, exports_sweep

logger = logging.getLogger(__name__)
T = TypeVar("T")


def _step(name: str, run: Callable[[], T]) -> T | None:
    """One step of the poll; its failure is logged and the next steps run all the same."""
    try:
        return run()
    except SoftTimeLimitExceeded:
        raise
    except Exception:
        logger.exception("%s failed; the poll goes on with its next step", name)
        return None


def _poll_and_advance() -> tuple[ExportPollSummary | None, int | None]:
    """Exports' progress, then the copy chains' next steps."""
    return _step("Polling exports", exports_poll), _step("Advancing copies", copies_advance)


submit_export = row_task(
    "importer.export_tasks.submit_export",
    lambda export_id: export_submit(export_id=export_id),
    TransientSubmitError,
)
poll_exports = periodic_task(
    "importer.export_tasks.poll_exports",
    _poll_and_advance,
    "Polled exports and copy steps: %s",
    lambda done: (done[0] and done[0].followed) or done[1],
)
sweep_exports = periodic_task(
    "importer.export_tasks.sweep_exports",
    exports_sweep,
    "Sweeper re-sent %d exports",
    bool,
    logging.WARNING,
)
