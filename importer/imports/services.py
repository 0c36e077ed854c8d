from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from importer.audit.chain import Entry, record, record_many
from importer.audit.models import AuditAction
from importer.core.crypto import DecryptionError, decrypt_text, encrypt_text
from importer.core.logs import bind as log_context_bind
from importer.core.net.guard import DestinationRefused, check_url
from importer.imports import slots
from importer.imports.models import ImportJob, ImportJobEvent, JobState, TagState
from importer.jobs.models import clip_text
from importer.jobs.queue import enqueue
from importer.jobs.retry import (
    SWEEP_BATCH,
    fail_or_requeue,
    sweep_submissions,
)
from importer.outscale import accounts
from importer.outscale.client import OscClient
from importer.outscale.errors import OscApiError
from importer.outscale.lifecycle_resources import Image
from importer.outscale.resources import Snapshot
from importer.presigned.policy import presigned_url_policy
from importer.presigned.urls import PresignedUrl
from importer.teams.models import Team

logger = logging.getLogger(__name__)


MAX_TAG_ATTEMPTS = 5


UNTAGGED_AFTER = timedelta(minutes=5)


class TransientTagError(Exception):
    """Tagging hit a passing problem; retry the tag task."""


@dataclass(frozen=True)
class NewImport:
    """What one import is made of, as the dialog's form (or a manifest's row) gives it."""

    name: str
    description: str
    url: PresignedUrl
    snapshot_size: int
    dry_run: bool = False
    tags: Mapping[str, str] | None = None


def _submission(user: User, new: NewImport) -> tuple[str, dict[str, object]]:
    """The new job's first line of history and its audit entry's details."""
    message = f"Submitted by {user.get_username()}" + (" as a dry run." if new.dry_run else ".")
    details: dict[str, object] = {
        "name": new.name,
        "object": new.url.redacted,
        "snapshot_size": new.snapshot_size,
        "dry_run": new.dry_run,
        "tags": dict(new.tags or {}),
    }
    return message, details


def _job_fields(
    *, team: Team, user: User, new: NewImport, job_id: uuid.UUID, batch_id: uuid.UUID | None
) -> dict[str, object]:
    """The job row's columns: the URL in clear only encrypted, its signature nowhere else."""
    url = new.url
    return {
        "id": job_id,
        "team": team,
        "name": new.name,
        "description": new.description,
        "snapshot_size": new.snapshot_size,
        "dry_run": new.dry_run,
        "submitted_by": user,
        "url_redacted": url.redacted,
        "url_host": url.host,
        "url_bucket": url.bucket,
        "url_key": url.key[:1024],
        "url_expires_at": url.expires_at,
        "url_encrypted": encrypt_text(url.secret_url),
        "tags": dict(new.tags or {}),
        "batch_id": batch_id,
    }


def import_create(
    *,
    team: Team,
    user: User,
    name: str,
    description: str,
    url: PresignedUrl,
    snapshot_size: int,
    dry_run: bool = False,
    tags: Mapping[str, str] | None = None,
    job_id: uuid.UUID | None = None,
    batch_id: uuid.UUID | None = None,
    ip: str | None = None,
) -> ImportJob:
    """Saves the job (URL encrypted), then queues it once the row is committed; when the team
    has no free slot, the job waits for one instead (and is queued when its turn comes).

    `job_id` lets the form's idempotency key become the job's id (and so its ClientToken).
    """
    new = NewImport(name, description, url, snapshot_size, dry_run, tags)
    message, details = _submission(user, new)
    with transaction.atomic():
        state = JobState.QUEUED if dry_run or slots.slot_for_new(team.pk) else JobState.WAITING
        return ImportJob.submit_new(
            audit=AuditAction.IMPORT_SUBMITTED,
            actor=user,
            ip=ip,
            message=message if state == JobState.QUEUED else f"{message} {slots.NO_SLOT}",
            details=details,
            send=lambda job_id: import_enqueue(job_id=job_id) if state == JobState.QUEUED else None,
            state=state,
            **_job_fields(
                team=team, user=user, new=new, job_id=job_id or uuid.uuid4(), batch_id=batch_id
            ),
        )


def imports_create_many(
    *,
    team: Team,
    user: User,
    imports: Sequence[NewImport],
    batch_id: uuid.UUID | None = None,
    ip: str | None = None,
) -> list[ImportJob]:
    """What `import_create` does, for many jobs at once (a batch): the same rows, first lines
    of history and one audit entry per job, but one INSERT for all the rows and one for all
    the events instead of one each.

    The imports start waiting for a slot, and only as many as the team has free slots are
    queued (once the caller's transaction commits): a batch of 500 sends a handful of messages,
    the others follow as slots free up, oldest first."""
    jobs: list[ImportJob] = []
    events: list[ImportJobEvent] = []
    audits: list[dict[str, object]] = []
    for new in imports:
        job = ImportJob(
            **_job_fields(team=team, user=user, new=new, job_id=uuid.uuid4(), batch_id=batch_id),
            state=JobState.QUEUED if new.dry_run else JobState.WAITING,
        )
        message, details = _submission(user, new)
        jobs.append(job)
        events.append(
            ImportJobEvent(
                job=job, state=job.state, message=clip_text(ImportJobEvent, "message", message)
            )
        )
        audits.append(details)
    with transaction.atomic():
        ImportJob.objects.bulk_create(jobs)
        ImportJobEvent.objects.bulk_create(events)
        record_many(
            [
                Entry(
                    AuditAction.IMPORT_SUBMITTED,
                    actor=user,
                    team=team,
                    target=str(job.pk),
                    ip=ip,
                    details=details,
                )
                for job, details in zip(jobs, audits, strict=True)
            ]
        )
        dry_runs = [job for job in jobs if job.dry_run]
        transaction.on_commit(lambda: _enqueue_all(dry_runs))
        slots.admit_waiting(team.pk)
    return jobs


def _enqueue_all(jobs: Sequence[ImportJob]) -> None:
    # One failed publish does not stop the others: each job left queued is the sweeper's.
    for job in jobs:
        import_enqueue(job_id=job.pk)


def import_enqueue(*, job_id: uuid.UUID, countdown: float = 0) -> bool:
    """Sends the job to the queue. False when the broker is down: the sweeper sends it later."""
    return enqueue("importer.tasks.submit_import", row_id=job_id, countdown=countdown)


def import_submit(*, job_id: str) -> None:
    """Claims a queued job and sends CreateSnapshot, never creating a second snapshot."""
    job = ImportJob.objects.select_related("team").filter(pk=job_id).first()
    if job is not None:
        log_context_bind(team=job.team.name)
    if job is None or not slots.claim_with_slot(job):
        return  # taken by another worker, waiting for a slot, finished, or deleted
    try:
        _send_claimed(job)
    finally:
        if job.state != JobState.IN_PROGRESS:
            # Failed, or back in the queue: its slot may go to the next waiting job.
            slots.slot_freed(job.team_id)


def _send_claimed(job: ImportJob) -> None:
    try:
        client = accounts.api_client(job.team)
        if job.attempts > 1 and not job.dry_run:
            # An earlier attempt may have reached the API before its worker or answer was lost.
            existing = client.read_snapshots(client_tokens=[str(job.pk)])
            if existing:
                _accept(job, existing[0], request_id="")
                return
        file_location = decrypt_text(job.url_encrypted)
        # Checked when the form took it, and again now: the allow-list may have changed since.
        check_url(file_location, presigned_url_policy().outbound())
        result = client.create_snapshot(
            file_location=file_location,
            snapshot_size=job.snapshot_size,
            description=job.description or None,
            client_token=str(job.pk),
            dry_run=job.dry_run,
        )
    except DecryptionError as error:
        job.mark_failed(code="UrlUnreadable", type="PortalError", details=f"{error}; import again.")
        return
    except DestinationRefused as error:
        job.mark_failed(code="UrlRefused", type="PortalError", details=str(error))
        return
    except ValueError as error:  # the team has no credentials: nothing to retry until it has
        job.mark_failed(code="NoCredentials", type="PortalError", details=str(error))
        return
    except OscApiError as error:
        if error.throttling and not job.dry_run:
            slots.throttled(job, error)
            return
        fail_or_requeue(job, error)
        return
    if job.dry_run:
        job.mark_dry_run_passed(request_id=result.request_id)
    elif result.snapshot is not None:
        _accept(job, result.snapshot, request_id=result.request_id)


def _accept(job: ImportJob, snapshot: Snapshot, *, request_id: str) -> None:
    slots.not_throttled(job.team_id)
    if job.mark_accepted(
        snapshot_id=snapshot.snapshot_id,
        api_state=snapshot.state,
        progress=snapshot.progress,
        request_id=request_id,
    ):
        transaction.on_commit(lambda: snapshot_tag_enqueue(job_id=job.pk))


def snapshot_tag_enqueue(*, job_id: uuid.UUID, countdown: float = 0) -> bool:
    return enqueue("importer.tasks.tag_snapshot", row_id=job_id, countdown=countdown)


def snapshot_tag(*, job_id: str, final_attempt: bool) -> None:
    """Tags the snapshot `Name`; a failure is shown on the job and does not fail the import."""
    pending = ImportJob.objects.select_related("team").filter(pk=job_id, tag_state=TagState.PENDING)
    job = pending.first()
    if job is None or not job.snapshot_id:
        return
    try:
        request_id = accounts.api_client(job.team).create_tags(
            resource_ids=[job.snapshot_id], tags=job.all_tags
        )
    except OscApiError as error:
        if error.transient and not final_attempt:
            raise TransientTagError(str(error)) from None
        _set_tag_state(job, TagState.FAILED, f"Tagging Name failed: {error}", error=str(error))
        return
    more = f" and {len(job.tags)} more tag{'s' if len(job.tags) > 1 else ''}" if job.tags else ""
    _set_tag_state(job, TagState.DONE, f"Tagged Name={job.name}{more} (request {request_id}).")


def _set_tag_state(job: ImportJob, tag_state: str, message: str, *, error: str = "") -> None:
    with transaction.atomic():
        updated = ImportJob.objects.filter(pk=job.pk, tag_state=TagState.PENDING).update(
            tag_state=tag_state, tag_error=error[:1000], updated_at=timezone.now()
        )
        if updated == 1:
            ImportJobEvent.objects.create(job=job, state=job.state, message=message[:2500])
            record(
                action=AuditAction.TAG_RESULT,
                team=job.team,
                target=str(job.pk),
                details={
                    "snapshot_id": job.snapshot_id,
                    "tag_state": tag_state,
                    "message": message,
                },
            )


@dataclass(frozen=True)
class SweepSummary:
    requeued_stuck: int
    resent_queued: int
    resent_tags: int


def imports_sweep(*, now: datetime | None = None) -> SweepSummary:
    """Re-sends what a dead worker or an unreachable broker lost. The row is the truth."""
    now = now or timezone.now()
    resent, stuck = sweep_submissions(
        ImportJob, lambda job_id: import_enqueue(job_id=job_id), now=now
    )
    tags = 0
    untagged = ImportJob.objects.untagged(now=now, after=UNTAGGED_AFTER)
    for job_id in list(untagged.values_list("pk", flat=True)[:SWEEP_BATCH]):
        tags += snapshot_tag_enqueue(job_id=job_id)
    return SweepSummary(requeued_stuck=stuck, resent_queued=resent, resent_tags=tags)


class SnapshotNotInAccount(Exception):
    """The team's account has no such snapshot (it may be another team's)."""


class SnapshotInUse(Exception):
    """The API refused to delete the snapshot because OMIs still use it: names them."""

    def __init__(self, snapshot_id: str, images: list[Image]) -> None:
        self.images = images
        named = ", ".join(f"{image.image_id} ({image.image_name})" for image in images)
        omis = "OMI" if len(images) == 1 else "OMIs"
        super().__init__(
            f"The {omis} {named} still uses {snapshot_id}. Delete the {omis} first (or make "
            "them from another snapshot), then delete the snapshot."
        )


def _images_using(client: OscClient, snapshot_id: str) -> list[Image]:
    """The account's OMIs made from the snapshot; none when the API cannot say."""
    try:
        return client.read_images(snapshot_ids=[snapshot_id])
    except OscApiError:
        return []


def snapshot_delete(*, team: Team, actor: User, snapshot_id: str, ip: str | None) -> str:
    """Deletes a snapshot of the team's account; raises SnapshotNotInAccount or OscApiError."""
    client = accounts.api_client(team)
    if not client.read_snapshots(snapshot_ids=[snapshot_id]):
        raise SnapshotNotInAccount(snapshot_id)
    try:
        request_id = client.delete_snapshot(snapshot_id=snapshot_id)
    except OscApiError as error:
        users = [] if error.transient else _images_using(client, snapshot_id)
        if users:
            raise SnapshotInUse(snapshot_id, users) from error
        raise
    record(
        action=AuditAction.SNAPSHOT_DELETED,
        actor=actor,
        team=team,
        target=snapshot_id,
        ip=ip,
        details={"request_id": request_id},
    )
    return request_id
