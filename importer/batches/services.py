"""Bulk import: the ready rows of a previewed manifest imported as one batch, once."""

from __future__ import annotations

import uuid

from django.contrib.auth.models import User
from django.db import IntegrityError, transaction

from importer.audit.chain import record
from importer.audit.models import AuditAction
from importer.batches.models import ImportBatch
from importer.batches.rows import REFUSED, Preview, RowVerdict
from importer.imports.services import NewImport, imports_create_many
from importer.teams.models import Team


class NothingToImport(ValueError):
    """No row of the preview is ready: no batch is made."""


def batch_create(
    *,
    team: Team,
    user: User,
    preview: Preview,
    key: uuid.UUID,
    source_name: str = "",
    ip: str | None = None,
) -> tuple[ImportBatch, bool]:
    """The batch and one import job per ready row, in one transaction, once per `key`.

    Returns (batch, created); the same key again returns the batch it made. Refused rows are
    left out whole: nothing of them is saved.
    """
    rows = preview.importable
    if not rows:
        raise NothingToImport("No row of this manifest is ready to import.")
    existing = ImportBatch.objects.filter(pk=key, team=team, created_by=user).first()
    if existing is not None:
        return existing, False
    try:
        with transaction.atomic():
            batch = ImportBatch.objects.create(
                id=key, team=team, created_by=user, source_name=source_name[:255]
            )
            imports_create_many(
                team=team,
                user=user,
                imports=[_new_import(row) for row in rows],
                batch_id=batch.pk,
                ip=ip,
            )
            record(
                action=AuditAction.BATCH_SUBMITTED,
                actor=user,
                team=team,
                target=str(batch.pk),
                ip=ip,
                details={
                    "rows": len(preview.rows),
                    "imports": len(rows),
                    "refused": preview.count(REFUSED),
                    "source": batch.source_name,
                },
            )
    except IntegrityError:
        again = ImportBatch.objects.filter(pk=key, team=team, created_by=user).first()
        if again is None:
            raise
        return again, False  # a twin request won the insert
    return batch, True


def _new_import(row: RowVerdict) -> NewImport:
    assert row.url is not None and row.snapshot_size is not None  # noqa: S101 - importable
    return NewImport(
        name=row.row.name,
        description=row.row.description,
        url=row.url,
        snapshot_size=row.snapshot_size,
        tags=row.row.tags,
    )
