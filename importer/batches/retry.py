"""Retry failed rows: a new manifest's rows, matched by name to the batch's failed rows, imported
again in the same batch, once.

The old failed job stays as the row's history; the batch's row becomes the new job (the latest
job of each name, `progress.latest_per_name`). A manifest row whose name is not a failed row of
the batch is refused in the preview, with why: this form mends a batch, it does not grow one.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from dataclasses import replace

from django.contrib.auth.models import User
from django.db import IntegrityError, transaction

from importer.audit.chain import record
from importer.audit.models import AuditAction
from importer.batches.models import ImportBatch
from importer.batches.progress import latest_per_name
from importer.batches.rows import REFUSED, Preview, RowVerdict
from importer.imports.models import ImportJob, JobState
from importer.imports.services import import_create
from importer.imports.tags import shown
from importer.teams.models import Team


class NothingToRetry(ValueError):
    """No row of the manifest is a failed row of the batch, ready to import: nothing is made."""


def failed_jobs(batch: ImportBatch) -> list[ImportJob]:
    """The batch's rows whose latest job failed, in the batch's order."""
    rows = latest_per_name(batch.jobs.order_by("created_at", "id"))
    return [job for job in rows if job.state == JobState.ERROR]


def failed_names(batch: ImportBatch) -> set[str]:
    return {job.name for job in failed_jobs(batch)}


def failed_rows_manifest(jobs: Iterable[ImportJob]) -> str:
    """A JSON lines manifest of the failed rows with everything but the URL filled in.

    The old URL is gone by design (its signature is erased once a job ends): the person only
    pastes a new one into each row.
    """
    lines = (
        json.dumps(
            {
                "name": job.name,
                "description": job.description,
                "url": "",
                "size": job.snapshot_size,
                "tags": job.tags,
            },
            ensure_ascii=False,
        )
        for job in jobs
    )
    return "".join(f"{line}\n" for line in lines)


def match_failed(preview: Preview, failed: set[str]) -> Preview:
    """The preview with every row that is not a failed row of the batch refused, saying so."""
    if preview.problem:
        return preview
    return Preview(rows=tuple(_matched(row, failed) for row in preview.rows))


def _matched(row: RowVerdict, failed: set[str]) -> RowVerdict:
    if not row.row.name or row.row.name in failed:
        return row
    refusal = (
        f"{shown(row.row.name)} is not a failed row of this batch: only failed rows can be "
        "retried here, matched by their name. Import new snapshots with Import many."
    )
    messages = (refusal, *(m for m in row.messages if row.verdict == REFUSED))
    return replace(row, verdict=REFUSED, messages=messages, url=None, snapshot_size=None)


def retry_job_id(key: uuid.UUID, name: str) -> uuid.UUID:
    """The new job's id for one row: the same form key and name always give the same id, so
    sending the form twice finds the jobs it made (and the API gets the same ClientToken)."""
    return uuid.uuid5(key, name)


def batch_retry(
    *,
    team: Team,
    user: User,
    batch: ImportBatch,
    preview: Preview,
    key: uuid.UUID,
    ip: str | None = None,
) -> tuple[int, bool]:
    """A new job in `batch` for each ready row of `preview` that is a failed row of the batch,
    in one transaction, once per `key`. Returns (how many jobs, whether made now).

    The match is made again under a lock on the batch: two retries sent at once with different
    keys cannot both retry the same failed row.
    """
    try:
        with transaction.atomic():
            ImportBatch.objects.select_for_update().filter(pk=batch.pk).first()
            done = _already_made(batch, preview, key)
            if done:
                return done, False
            rows = match_failed(preview, failed_names(batch)).importable
            if not rows:
                raise NothingToRetry(
                    "No row of this manifest is a failed row of this batch ready to import: "
                    "nothing was imported."
                )
            for row in rows:
                _import_again(team=team, user=user, batch=batch, row=row, key=key, ip=ip)
            record(
                action=AuditAction.BATCH_RETRIED,
                actor=user,
                team=team,
                target=str(batch.pk),
                ip=ip,
                details={
                    "imports": len(rows),
                    "rows": len(preview.rows),
                    "names": [row.row.name for row in rows],
                },
            )
    except IntegrityError:
        done = _already_made(batch, preview, key)
        if not done:
            raise
        return done, False  # a twin request won the inserts
    return len(rows), True


def _already_made(batch: ImportBatch, preview: Preview, key: uuid.UUID) -> int:
    ids = [retry_job_id(key, row.row.name) for row in preview.rows if row.row.name]
    return ImportJob.objects.filter(pk__in=ids, batch=batch).count()


def _import_again(
    *, team: Team, user: User, batch: ImportBatch, row: RowVerdict, key: uuid.UUID, ip: str | None
) -> None:
    assert row.url is not None and row.snapshot_size is not None  # noqa: S101 - importable
    import_create(
        team=team,
        user=user,
        name=row.row.name,
        description=row.row.description,
        url=row.url,
        snapshot_size=row.snapshot_size,
        tags=row.row.tags,
        job_id=retry_job_id(key, row.row.name),
        batch_id=batch.pk,
        ip=ip,
    )
