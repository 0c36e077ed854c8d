"""Workflows of the other half of the journey: export, share, copy to another team.

The export path mirrors the import path: view -> `export_create` -> row -> `submit_export` task
-> `export_submit` -> client -> API; then `exports_poll` (periodic, batched per team) follows
progress and finds the exported object in the bucket, and `exports_sweep` re-sends what was
lost. A copy is a chain: its export runs as above, then `copies_advance` makes the pre-signed
URL and the import in one transaction, then follows the import to its end.
"""

from __future__ import annotations

import io
import logging
import random
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import boto3
import requests
from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerError

from importer import audit, destinations, net, presigned, services
from importer.crypto import DecryptionError, decrypt_text
from importer.exports import (
    CopyChain,
    CopyEvent,
    CopyState,
    ExportEvent,
    ExportState,
    ExportTask,
    SharedUrl,
)
from importer.forms import url_policy
from importer.listings import Listing, read_export_tasks_bounded
from importer.models import (
    GIB,
    ImportJob,
    JobState,
    Team,
    clip_text,
    clip_to_fields,
    note_once,
)
from importer.outscale import OscApiError, OscClient, SnapshotExportTask

logger = logging.getLogger(__name__)

MAX_SUBMIT_ATTEMPTS = services.MAX_SUBMIT_ATTEMPTS
MAX_SHARE_SECONDS = 7 * 24 * 3600  # SigV4 pre-signed URLs last at most 7 days
# The URL handed to the other team's import: long enough for a slow import to read it all.
COPY_URL_SECONDS = 24 * 3600
# The API said completed but the object is not in the bucket (yet): give up after this long.
OBJECT_GRACE = timedelta(minutes=10)
S3_TIMEOUTS = (5, 30)
SWEEP_BATCH = 500


class ExportNotShareable(Exception):
    """The export has no object to share (not completed, or its object was not found)."""


class CopyNotAllowed(Exception):
    """The user may not copy into that team, or the team cannot receive a copy."""


# --- The team's object storage --------------------------------------------------------------


def oos_endpoint(team: Team) -> str:
    return (team.oos_endpoint or f"https://oos.{team.region}.outscale.com").rstrip("/")


def _oos_keys(team: Team) -> tuple[str, str]:
    """OOS takes the account's API access key; raises ValueError when the team has none."""
    if team.uses_environment_credentials:
        return settings.OSC_ACCESS_KEY, settings.OSC_SECRET_KEY
    if not team.secret_key_encrypted:
        raise ValueError(f"team {team.name} has no OUTSCALE credentials yet")
    return decrypt_text(team.access_key_encrypted), decrypt_text(team.secret_key_encrypted)


def _region(team: Team) -> str:
    return settings.OSC_REGION if team.uses_environment_credentials else team.region


class OutboundRefusedError(BotoCoreError):
    """The outbound guard refused the OOS endpoint at send time (never retried)."""

    fmt = "{message}"


def s3_client(team: Team) -> Any:
    """A boto3 S3 client on the team's OOS endpoint: SigV4, path-style, timeouts, 2 attempts.

    Its requests go through the outbound guard (a team admin chose the endpoint): the endpoint
    is checked here (DestinationRefused, a ValueError) and every request again as it is sent.
    """
    endpoint = oos_endpoint(team)
    policy = destinations.object_store_policy()
    net.check_url(endpoint, policy)
    access_key, secret_key = _oos_keys(team)
    connect, read = S3_TIMEOUTS
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=_region(team),
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        config=Config(
            signature_version="s3v4",
            s3={"addressing_style": "path"},
            connect_timeout=connect,
            read_timeout=read,
            retries={"max_attempts": 2, "mode": "standard"},
            proxies={},
        ),
    )
    # A handler's answer replaces botocore's own send (its documented before-send hook).
    client.meta.events.register("before-send.s3", _guarded_sender(policy))  # type: ignore[arg-type]
    return client


class _Body(io.BytesIO):
    """What botocore reads an answer from (``stream()`` for content, ``read()`` for bodies)."""

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.getvalue()


def _guarded_sender(policy: net.Policy) -> Callable[..., AWSResponse]:
    """botocore's before-send hook: the request leaves through the guarded session instead."""

    def send(request: AWSPreparedRequest, **_: Any) -> AWSResponse:
        session = net.guarded_session(policy)
        try:
            response = session.request(
                request.method,
                request.url,
                data=request.body,
                headers={name: str(value) for name, value in request.headers.items()},
                timeout=S3_TIMEOUTS,
            )
        except net.GuardRefusal as refusal:
            raise OutboundRefusedError(message=str(refusal)) from None
        except requests.ConnectTimeout:
            raise ConnectTimeoutError(endpoint_url=request.url) from None
        except requests.ReadTimeout:
            raise ReadTimeoutError(endpoint_url=request.url) from None
        except requests.RequestException:
            raise EndpointConnectionError(endpoint_url=request.url) from None
        headers = dict(response.headers)
        return AWSResponse(request.url, response.status_code, headers, _Body(response.content))  # type: ignore[arg-type]

    return send


def presign_object(team: Team, *, bucket: str, key: str, seconds: int) -> str:
    """A SigV4 pre-signed GET of the object, made locally (no request is sent). A secret."""
    if not 1 <= seconds <= MAX_SHARE_SECONDS:
        raise ValueError("a pre-signed URL lasts between 1 second and 7 days")
    url: str = s3_client(team).generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=seconds
    )
    return url


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


# --- Export: create, submit, cancel ---------------------------------------------------------


def export_create(
    *,
    team: Team,
    user: User,
    snapshot_id: str,
    bucket: str,
    prefix: str,
    disk_image_format: str,
    ip: str | None = None,
) -> ExportTask:
    with transaction.atomic():
        export = ExportTask.objects.create(
            team=team,
            snapshot_id=snapshot_id,
            bucket=bucket,
            prefix=prefix,
            disk_image_format=disk_image_format,
            requested_by=user,
        )
        ExportEvent.objects.create(
            export=export,
            state=ExportState.QUEUED,
            message=f"Requested by {user.get_username()}: {snapshot_id} to {bucket}/{prefix}"
            f" as {disk_image_format}.",
        )
        audit.record(
            action=audit.AuditAction.EXPORT_REQUESTED,
            actor=user,
            team=team,
            target=str(export.pk),
            ip=ip,
            details={
                "snapshot_id": snapshot_id,
                "bucket": bucket,
                "prefix": prefix,
                "format": disk_image_format,
            },
        )
        transaction.on_commit(lambda: export_enqueue(export_id=export.pk))
    return export


def export_enqueue(*, export_id: uuid.UUID, countdown: float = 0) -> bool:
    from importer.export_tasks import submit_export

    try:
        submit_export.apply_async(
            args=(str(export_id),),
            countdown=countdown,
            retry=True,
            retry_policy=services.PUBLISH_RETRY_POLICY,
        )
    except (BrokerError, OSError) as error:
        logger.warning("Broker unreachable, export %s left to the sweeper: %s", export_id, error)
        return False
    return True


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
        client = services.api_client(export.team)
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
        _submit_failed(export, error)
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


def _submit_failed(export: ExportTask, error: OscApiError) -> None:
    code = error.code or str(error.http_status or "")
    if not error.transient:
        export.mark_failed(
            code=code,
            type=error.type,
            details=error.details or str(error),
            request_id=error.request_id,
        )
        return
    if export.attempts >= MAX_SUBMIT_ATTEMPTS:
        export.mark_failed(
            code=code,
            type=error.type or "Unavailable",
            details=f"Gave up after {export.attempts} attempts; last answer: {error}",
            request_id=error.request_id,
        )
        return
    delay = services.retry_delay(export.attempts)
    export.requeue_after_transient_error(
        summary=str(error),
        request_id=error.request_id,
        retry_at=timezone.now() + timedelta(seconds=delay),
    )
    raise services.TransientSubmitError(delay)


def export_cancel(*, export: ExportTask, user: User, ip: str | None = None) -> None:
    """Stops an export: a queued one at once, a running one with DeleteExportTask.

    Raises OscApiError when the API refuses (the task has already ended, for instance).
    """
    audit.record(
        action=audit.AuditAction.EXPORT_CANCELLED,
        actor=user,
        team=export.team,
        target=str(export.pk),
        ip=ip,
        details={"task_id": export.task_id, "state": export.state},
    )
    ExportTask.objects.filter(pk=export.pk).update(cancel_requested=True)
    if export.state == ExportState.QUEUED or not export.task_id:
        export.mark_cancelled(message=f"Cancelled by {user.get_username()} before it started.")
        return
    request_id = services.api_client(export.team).delete_export_task(task_id=export.task_id)
    export.mark_cancelled(
        message=f"Cancelled by {user.get_username()} (request {request_id or '-'}).",
        api_state="cancelled",
    )


# --- Following exports ----------------------------------------------------------------------


@dataclass(frozen=True)
class ExportPollSummary:
    followed: int
    changed: int
    finished: int
    failed_teams: int = 0


def exports_poll(*, now: datetime | None = None) -> ExportPollSummary:
    """One poll cycle: every in-flight export, one ReadSnapshotExportTasks (paged) per team.

    Each team is polled on its own, like the imports: a failure is logged (and noted on the
    team's exports when someone can act on it) and the other teams are polled all the same.
    """
    now = now or timezone.now()
    by_team: dict[int, list[ExportTask]] = {}
    for export in ExportTask.objects.in_flight().select_related("team"):
        by_team.setdefault(export.team_id, []).append(export)
    teams = list(by_team.values())
    random.shuffle(teams)  # a slow team must not always go first
    followed = changed = finished = failed = 0
    for exports in teams:
        followed += len(exports)
        result = _poll_team_exports_isolated(exports, now=now)
        if result is None:
            failed += 1
        else:
            changed += result[0]
            finished += result[1]
    return ExportPollSummary(
        followed=followed, changed=changed, finished=finished, failed_teams=failed
    )


def _poll_team_exports_isolated(
    exports: list[ExportTask], *, now: datetime
) -> tuple[int, int] | None:
    try:
        return _poll_team_exports(exports, now=now)
    except SoftTimeLimitExceeded:
        raise  # the task's time is up: the next cycle starts over
    except Exception:
        logger.exception(
            "Polling %d exports of team %s failed; the other teams go on",
            len(exports),
            exports[0].team.name,
        )
        _note_on_exports(exports, services.POLL_FAILED_UNEXPECTEDLY)
        return None


def _poll_team_exports(exports: list[ExportTask], *, now: datetime) -> tuple[int, int] | None:
    """(changed, finished) for one team's exports; None when the API could not say."""
    listing: Listing[SnapshotExportTask] = Listing()
    try:
        read_export_tasks_bounded(
            services.api_client(exports[0].team),
            listing,
            task_ids=[export.task_id for export in exports],
            budget_seconds=services.POLL_TEAM_BUDGET_SECONDS,
        )
    except (OscApiError, ValueError, DecryptionError) as error:
        logger.warning("Polling %d exports failed, will try again: %s", len(exports), error)
        if not (isinstance(error, OscApiError) and error.transient):
            _note_on_exports(exports, services.poll_problem(error))
        return None
    tasks = {task.task_id: task for task in listing.items}
    changed = finished = 0
    for export in exports:
        task = tasks.get(export.task_id)
        if task is None and not listing.complete:
            continue  # maybe on a page the listing did not read: not taken for vanished
        moved, ended = _apply_task(export, task, now=now)
        changed += moved
        finished += ended
    return changed, finished


def _note_on_exports(exports: list[ExportTask], message: str) -> None:
    note_once(ExportEvent, "export", exports, message)


def _apply_task(
    export: ExportTask, task: SnapshotExportTask | None, *, now: datetime
) -> tuple[bool, bool]:
    """Brings one export row up to what the API says; returns (changed, finished)."""
    if task is None:
        if export.submitted_at and export.submitted_at < now - services.VANISHED_GRACE:
            ended = export.mark_failed(
                code="ExportTaskNotFound",
                type="ExportVanished",
                details=f"The API no longer lists {export.task_id}.",
                from_states=(ExportState.IN_PROGRESS,),
            )
            return ended, ended
        return False, False
    if task.is_completed:
        return _complete(export, task, now=now)
    if task.is_failed:
        ended = export.mark_failed(
            code="ExportFailed",
            type="ExportFailed",
            details=task.comment or "The API ended the export in state failed.",
            comment=task.comment,
            api_state=task.state,
            from_states=(ExportState.IN_PROGRESS,),
        )
        return ended, ended
    if task.is_cancelled:
        ended = export.mark_cancelled(
            message="The API reports the export cancelled.", api_state=task.state
        )
        return ended, ended
    if (task.state, task.progress) == (export.api_state, export.progress):
        return False, False
    if task.state != export.api_state:
        message = clip_text(ExportEvent, "message", f"API state: {task.state}.")
        ExportEvent.objects.create(export=export, state=export.state, at=now, message=message)
    fields = {
        "api_state": task.state,
        "progress": min(max(task.progress, 0), 100),
        "comment": task.comment,
        "updated_at": now,
    }
    updated = ExportTask.objects.filter(pk=export.pk, state=ExportState.IN_PROGRESS).update(
        **clip_to_fields(ExportTask, fields)
    )
    return bool(updated), False


def _complete(export: ExportTask, task: SnapshotExportTask, *, now: datetime) -> tuple[bool, bool]:
    try:
        found = find_exported_object(export.team, export)
    except (ClientError, BotoCoreError, ValueError, DecryptionError) as error:
        logger.warning("Export %s: listing its bucket failed: %s", export.pk, type(error).__name__)
        found = None
    if found is None:
        if export.submitted_at and export.submitted_at < now - OBJECT_GRACE:
            ended = export.mark_failed(
                code="ObjectNotFound",
                type="ExportObjectMissing",
                details=f"The API says the export ended, but no object starting with "
                f"{export.prefix}{export.snapshot_id} is in the bucket {export.bucket}.",
                api_state=task.state,
                from_states=(ExportState.IN_PROGRESS,),
            )
            return ended, ended
        return False, False  # the next poll looks again
    ended = export.mark_completed(
        api_state=task.state, object_key=found.key, object_size=found.size
    )
    return ended, ended


def exports_sweep(*, now: datetime | None = None) -> int:
    """Re-sends exports the broker lost or whose worker died; returns how many."""
    now = now or timezone.now()
    resent = 0
    lost = ExportTask.objects.lost_in_queue(now=now, after=services.LOST_IN_QUEUE_AFTER)
    for export_id in list(lost.values_list("pk", flat=True)[:SWEEP_BATCH]):
        if ExportTask.objects.filter(pk=export_id, state=ExportState.QUEUED).update(
            enqueued_at=now
        ):
            resent += export_enqueue(export_id=export_id)
    stuck = ExportTask.objects.stuck_submitting(now=now, after=services.STUCK_SUBMITTING_AFTER)
    for export in stuck[:SWEEP_BATCH]:
        if export.requeue_stuck():
            resent += export_enqueue(export_id=export.pk)
    return resent


# --- Share ----------------------------------------------------------------------------------


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
            url_redacted=presigned.redact_url(url),
            expires_at=timezone.now() + timedelta(seconds=seconds),
            lifetime_seconds=seconds,
        )
        audit.record(
            action=audit.AuditAction.URL_SHARED,
            actor=user,
            team=export.team,
            target=str(export.pk),
            ip=ip,
            details={"object": share.url_redacted, "lifetime_seconds": seconds},
        )
    return share


# --- Copy to another team -------------------------------------------------------------------


def copy_create(
    *,
    source_team: Team,
    target_team: Team,
    user: User,
    snapshot_id: str,
    name: str,
    description: str,
    bucket: str,
    prefix: str,
    disk_image_format: str,
    ip: str | None = None,
) -> CopyChain:
    if source_team.pk == target_team.pk:
        raise CopyNotAllowed("Choose another team than the snapshot's own.")
    with transaction.atomic():
        export = export_create(
            team=source_team,
            user=user,
            snapshot_id=snapshot_id,
            bucket=bucket,
            prefix=prefix,
            disk_image_format=disk_image_format,
            ip=ip,
        )
        chain = CopyChain.objects.create(
            source_team=source_team,
            target_team=target_team,
            snapshot_id=snapshot_id,
            name=name,
            description=description,
            requested_by=user,
            export=export,
        )
        CopyEvent.objects.create(
            chain=chain,
            state=CopyState.EXPORTING,
            message=f"Requested by {user.get_username()}: {snapshot_id} of {source_team.name} "
            f"to {target_team.name}, through {bucket}/{prefix}.",
        )
        audit.record(
            action=audit.AuditAction.COPY_REQUESTED,
            actor=user,
            team=source_team,
            target=str(chain.pk),
            ip=ip,
            details={
                "snapshot_id": snapshot_id,
                "target_team": target_team.name,
                "export": str(export.pk),
            },
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
            from_state=CopyState.EXPORTING,
            details=f"The export ended {export.get_state_display().lower()}: {why}",
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
            from_state=CopyState.IMPORTING,
            details=f"The import failed: {job.error_type or job.error_code}: {job.error_details}",
        )
    return False


def _copy_start_import(chain: CopyChain) -> bool:
    """The URL and the import, committed with the chain's step or not at all."""
    export = chain.export
    if not export.snapshot_size:
        return chain.mark_failed(
            from_state=CopyState.EXPORTING, details="The export's snapshot size is unknown."
        )
    try:
        url = presign_object(
            chain.source_team, bucket=export.bucket, key=export.object_key, seconds=COPY_URL_SECONDS
        )
        parsed = presigned.parse_presigned_url(url, policy=url_policy(), now=timezone.now())
    except (ValueError, DecryptionError) as error:  # PresignedUrlError is a ValueError
        return chain.mark_failed(
            from_state=CopyState.EXPORTING, details=f"No usable pre-signed URL: {error}"
        )
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
        job = services.import_create(
            team=chain.target_team,
            user=chain.requested_by,
            name=chain.name,
            description=chain.description,
            url=parsed,
            snapshot_size=export.snapshot_size,
            job_id=copy_import_job_id(chain),
        )
        return chain.mark_importing(share=share, import_job=job)
