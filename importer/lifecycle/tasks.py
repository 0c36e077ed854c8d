"""The volumes', OMIs' and copies' Celery tasks: thin wrappers taking primary keys."""

from __future__ import annotations

import logging

from importer.jobs.retry import TransientSubmitError
from importer.jobs.runners import periodic_task, row_task
from importer.lifecycle.polling import derived_poll
from importer.lifecycle.services import derived_submit, derived_sweep

submit_derived = row_task(
    "importer.lifecycle.submit_derived",
    lambda job_id: derived_submit(job_id=job_id),
    TransientSubmitError,
)
poll_derived = periodic_task(
    "importer.lifecycle.poll_derived",
    derived_poll,
    "Polled volumes, OMIs and copies: %s",
)
sweep_derived = periodic_task(
    "importer.lifecycle.sweep_derived",
    derived_sweep,
    "Sweeper re-sent %d volume, OMI or copy requests",
    bool,
    logging.WARNING,
)
