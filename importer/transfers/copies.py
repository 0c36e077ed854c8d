from __future__ import annotations

import uuid
from collections.abc import Callable

from celery.exceptions import SoftTimeLimitExceeded
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from importer.audit.models import AuditAction
from importer.core.crypto import DecryptionError
from importer.imports.models import ImportJob, JobState
from importer.imports.services import import_create
from importer.outscale.accounts import presign_object
from importer.presigned.policy import url_policy
from importer.presigned.urls import parse_presigned_url
from importer.teams.models import Team
from importer.transfers.models import CopyChain, CopyState, ExportDestination, ExportState
from importer.transfers.services import _record_share, export_create, logger

# The URL handed to the other team's import: long enough for a slow import to read it all.
COPY_URL_SECONDS = 24 * 3600


class CopyNotAllowed(Exception):
    """The user may not copy into that team, or the team cannot receive a copy."""


def copy_create(
    *,
    source_team: Team,
    target_team: Team,
    user: User,
    snapshot_id: str,
    name: str,
    description: str,
    destination: ExportDestination,
    ip: str | None = None,
) -> CopyChain:
    if source_team.pk == target_team.pk:
        raise CopyNotAllowed("Choose another team than the snapshot's own.")
    with transaction.atomic():
        export = export_create(
            team=source_team, user=user, snapshot_id=snapshot_id, destination=destination, ip=ip
        )
        chain = CopyChain.objects.create(
            source_team=source_team,
            target_team=target_team,
            snapshot_id=snapshot_id,
            requested_by=user,
            export=export,
            name=name,
            description=description,
        )
        chain.record_creation(
            AuditAction.COPY_REQUESTED,
            actor=user,
            ip=ip,
            message=f"Requested by {user.get_username()}: {snapshot_id} of {source_team.name} "
            f"to {target_team.name}, through {destination}.",
            snapshot_id=snapshot_id,
            target_team=target_team.name,
            export=str(export.pk),
        )
    return chain


def copy_import_job_id(chain: CopyChain) -> uuid.UUID:
    """The import's id (and so its ClientToken), drawn with the chain: it can exist only once."""
    return chain.import_id


def copies_advance() -> int:
    """Moves every unfinished chain one step when its current step has ended; returns moves.

    Each chain moves on its own: one that fails is logged and tried again on the next poll.
    """
    moved = 0
    exporting = CopyChain.objects.filter(state=CopyState.EXPORTING).select_related(
        "export", "source_team", "target_team", "requested_by"
    )
    for chain in exporting:
        moved += _advance_isolated(chain, _advance_exporting)
    importing = CopyChain.objects.filter(state=CopyState.IMPORTING).select_related(
        "import_job", "target_team", "source_team"
    )
    for chain in importing:
        moved += _advance_isolated(chain, _advance_importing)
    return moved


def _advance_isolated(chain: CopyChain, step: Callable[[CopyChain], bool]) -> bool:
    try:
        return step(chain)
    except SoftTimeLimitExceeded:
        raise
    except Exception:
        logger.exception("Copy %s could not move on; the other copies go on", chain.pk)
        return False


def _advance_exporting(chain: CopyChain) -> bool:
    export = chain.export
    if export.state == ExportState.COMPLETED:
        return _copy_start_import(chain)
    if export.is_terminal:
        why = export.error_details or export.comment or "it was cancelled"
        return chain.mark_failed(
            details=f"The export ended {export.get_state_display().lower()}: {why}"
        )
    return False


def _advance_importing(chain: CopyChain) -> bool:
    job = chain.import_job
    if job is None:
        return False
    if job.state == JobState.COMPLETED:
        return chain.mark_completed(snapshot_id=job.snapshot_id)
    if job.state == JobState.ERROR:
        return chain.mark_failed(
            details=f"The import failed: {job.error_type or job.error_code}: {job.error_details}"
        )
    return False


def _copy_start_import(chain: CopyChain) -> bool:
    """The URL and the import, committed with the chain's step or not at all."""
    export = chain.export
    if not export.snapshot_size:
        return chain.mark_failed(details="The export's snapshot size is unknown.")
    try:
        url = presign_object(
            chain.source_team, bucket=export.bucket, key=export.object_key, seconds=COPY_URL_SECONDS
        )
        parsed = parse_presigned_url(url, policy=url_policy(), now=timezone.now())
    except (ValueError, DecryptionError) as error:  # PresignedUrlError is a ValueError
        return chain.mark_failed(details=f"No usable pre-signed URL: {error}")
    with transaction.atomic():
        locked = CopyChain.objects.select_for_update().filter(
            pk=chain.pk, state=CopyState.EXPORTING
        )
        if (
            locked.first() is None
            or ImportJob.objects.filter(pk=copy_import_job_id(chain)).exists()
        ):
            return False
        share = _record_share(
            export=export, user=chain.requested_by, url=url, seconds=COPY_URL_SECONDS, ip=None
        )
        job = import_create(
            team=chain.target_team,
            user=chain.requested_by,
            name=chain.name,
            description=chain.description,
            url=parsed,
            snapshot_size=export.snapshot_size,
            job_id=copy_import_job_id(chain),
        )
        return chain.mark_importing(share=share, import_job=job)
