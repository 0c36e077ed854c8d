"""The bulk items' Celery tasks: thin wrappers taking primary keys."""

from __future__ import annotations

import logging

from importer.bulk.services import item_run, items_sweep
from importer.jobs.retry import TransientSubmitError
from importer.jobs.runners import periodic_task, row_task

run_item = row_task(
    "importer.bulk.run_item", lambda item_id: item_run(item_id=item_id), TransientSubmitError
)
sweep_items = periodic_task(
    "importer.bulk.sweep_items",
    items_sweep,
    "Sweeper re-sent %d bulk items",
    bool,
    logging.WARNING,
)
