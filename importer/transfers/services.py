from __future__ import annotations

import logging
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from importer.audit.models import AuditAction
from importer.core.crypto import DecryptionError
from importer.core.redaction import redact_url
from importer.core.units import GIB
from importer.jobs.queue import enqueue
from importer.jobs.retry import (
    fail_or_requeue,
    sweep_submissions,
)
from importer.outscale import accounts
from importer.outscale.accounts import presign_object, s3_client
from importer.outscale.client import OscClient
from importer.outscale.errors import OscApiError
from importer.outscale.resources import SnapshotExportTask
from importer.teams.models import Team
from importer.transfers.models import ExportDestination, ExportState, ExportTask, SharedUrl

logger = logging.getLogger(__name__)


# The API said completed but the object is not in the bucket (yet): give up after this long.
OBJECT_GRACE = timedelta(minutes=10)


class ExportNotShareable(Exception):
    """The export has no object to share (not completed, or its object was not found)."""


@dataclass(frozen=True)
class FoundObject:
    key: str
    size: int | None


def find_exported_object(team: Team, export: ExportTask) -> FoundObject | None:
    """The newest object the export wrote: `{prefix}{snapshot id}...{format}.gz`."""
    listed = s3_client(team).list_objects_v2(
        Bucket=export.bucket, Prefix=f"{export.prefix}{export.snapshot_id}", MaxKeys=1000
    )
    candidates = [
        item
        for item in listed.get("Contents", [])
        if f".{export.disk_image_format}" in item.get("Key", "")
    ]
    if not candidates:
        return None
    newest = max(candidates, key=lambda item: item["LastModified"])
    size = newest.get("Size")
    return FoundObject(key=newest["Key"], size=int(size) if size is not None else None)


def export_create(
    *,
    team: Team,
    user: User,
    snapshot_id: str,
    destination: ExportDestination,
    ip: str | None = None,
) -> ExportTask:
    return ExportTask.submit_new(
        audit=AuditAction.EXPORT_REQUESTED,
        actor=user,
        ip=ip,
        message=f"Requested by {user.get_username()}: {snapshot_id} to {destination}"
        f" as {destination.disk_image_format}.",
        details={"snapshot_id": snapshot_id, **destination.audit_details()},
        send=lambda export_id: export_enqueue(export_id=export_id),
        team=team,
        snapshot_id=snapshot_id,
        requested_by=user,
        **asdict(destination),
    )


def export_enqueue(*, export_id: uuid.UUID, countdown: float = 0) -> bool:
    return enqueue("importer.export_tasks.submit_export", row_id=export_id, countdown=countdown)


def _same_destination(task: SnapshotExportTask, export: ExportTask) -> bool:
    return (task.bucket, task.prefix, task.disk_image_format) == (
        export.bucket,
        export.prefix,
        export.disk_image_format,
    )


def _adoptable_task(client: OscClient, export: ExportTask) -> SnapshotExportTask | None:
    """A task an earlier attempt created before its answer or worker was lost.

    CreateSnapshotExportTask has no ClientToken: look for a live task of the same snapshot to
    the same place that no other export of ours has claimed.
    """
    claimed = set(
        ExportTask.objects.exclude(pk=export.pk)
        .exclude(task_id="")
        .filter(snapshot_id=export.snapshot_id)
        .values_list("task_id", flat=True)
    )
    for task in client.read_snapshot_export_tasks(snapshot_ids=[export.snapshot_id]):
        live = task.is_in_progress or task.is_completed
        if live and task.task_id not in claimed and _same_destination(task, export):
            return task
    return None


def export_submit(*, export_id: str) -> None:
    """Claims a queued export and sends CreateSnapshotExportTask, never creating two tasks."""
    export = ExportTask.objects.select_related("team").filter(pk=export_id).first()
    if export is None or not export.claim_for_submission():
        return
    try:
        client = accounts.api_client(export.team)
        if export.attempts > 1:
            existing = _adoptable_task(client, export)
            if existing is not None:
                _accept(export, existing, request_id="")
                return
        if export.snapshot_size is None:
            snapshots = client.read_snapshots(snapshot_ids=[export.snapshot_id])
            if not snapshots:
                export.mark_failed(
                    code="SnapshotNotFound",
                    type="InvalidResource",
                    details=f"The account has no snapshot {export.snapshot_id}.",
                )
                return
            size = (snapshots[0].volume_size_gib or 0) * GIB or None
            ExportTask.objects.filter(pk=export.pk).update(snapshot_size=size)
        result = client.create_snapshot_export_task(
            snapshot_id=export.snapshot_id,
            bucket=export.bucket,
            disk_image_format=export.disk_image_format,
            prefix=export.prefix,
        )
    except (ValueError, DecryptionError) as error:
        export.mark_failed(code="NoCredentials", type="PortalError", details=str(error))
        return
    except OscApiError as error:
        fail_or_requeue(export, error)
        return
    _accept(export, result.task, request_id=result.request_id)


def _accept(export: ExportTask, task: SnapshotExportTask, *, request_id: str) -> None:
    export.mark_accepted(
        task_id=task.task_id,
        api_state=task.state,
        progress=task.progress,
        comment=task.comment,
        request_id=request_id,
    )


def export_cancel(*, export: ExportTask, user: User, ip: str | None = None) -> None:
    """Stops an export: a queued one at once, a running one with DeleteExportTask.

    Raises OscApiError when the API refuses (the task has already ended, for instance).
    """
    export.audit(
        AuditAction.EXPORT_CANCELLED, actor=user, ip=ip, task_id=export.task_id, state=export.state
    )
    ExportTask.objects.filter(pk=export.pk).update(cancel_requested=True)
    if export.state == ExportState.QUEUED or not export.task_id:
        export.mark_cancelled(message=f"Cancelled by {user.get_username()} before it started.")
        return
    request_id = accounts.api_client(export.team).delete_export_task(task_id=export.task_id)
    export.mark_cancelled(
        message=f"Cancelled by {user.get_username()} (request {request_id or '-'}).",
        api_state="cancelled",
    )


def exports_sweep(*, now: datetime | None = None) -> int:
    """Re-sends exports the broker lost or whose worker died; returns how many."""
    now = now or timezone.now()

    def send(export_id: uuid.UUID) -> bool:
        return export_enqueue(export_id=export_id)

    resent, requeued = sweep_submissions(ExportTask, send, now=now)
    return resent + requeued


def share_create(
    *, export: ExportTask, user: User, seconds: int, ip: str | None = None
) -> tuple[SharedUrl, str]:
    """Makes a pre-signed URL of the exported object; returns the record and the URL.

    The URL is returned to be shown once and is not stored anywhere: only its redacted form.
    """
    if export.state != ExportState.COMPLETED or not export.object_key:
        raise ExportNotShareable("Only a completed export has an object to share.")
    url = presign_object(export.team, bucket=export.bucket, key=export.object_key, seconds=seconds)
    return _record_share(export=export, user=user, url=url, seconds=seconds, ip=ip), url


def _record_share(
    *, export: ExportTask, user: User, url: str, seconds: int, ip: str | None
) -> SharedUrl:
    with transaction.atomic():
        share = SharedUrl.objects.create(
            export=export,
            created_by=user,
            url_redacted=redact_url(url),
            expires_at=timezone.now() + timedelta(seconds=seconds),
            lifetime_seconds=seconds,
        )
        export.audit(
            AuditAction.URL_SHARED,
            actor=user,
            ip=ip,
            object=share.url_redacted,
            lifetime_seconds=seconds,
        )
    return share
