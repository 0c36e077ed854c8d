"""Volumes, OMIs and copies made from a team's snapshot: saved, sent once, swept.

Each is a tracked job on the shared machinery (importer.jobs): saved with its audit entry in
one transaction and queued once committed; a worker claims it, and before sending again after
a lost answer or a dead worker it looks for what the earlier attempt made (kinds.find_made),
so a volume, an OMI or a copy is never made twice.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from importer.audit.chain import record
from importer.audit.models import AuditAction
from importer.core.crypto import DecryptionError
from importer.imports.models import TagState
from importer.imports.services import SnapshotNotInAccount
from importer.jobs.models import clip_text
from importer.jobs.queue import enqueue
from importer.jobs.retry import fail_or_requeue, sweep_submissions
from importer.lifecycle import kinds
from importer.lifecycle.models import DerivedEvent, DerivedJob, DerivedKind
from importer.outscale import accounts
from importer.outscale.client import OscClient
from importer.outscale.errors import OscApiError
from importer.outscale.resources import Snapshot
from importer.teams.models import Team

logger = logging.getLogger(__name__)


_REQUESTED = {
    DerivedKind.VOLUME: AuditAction.VOLUME_REQUESTED,
    DerivedKind.IMAGE: AuditAction.IMAGE_REQUESTED,
    DerivedKind.COPY: AuditAction.SNAPSHOT_COPY_REQUESTED,
}


def derived_create(
    *,
    team: Team,
    user: User,
    snapshot_id: str,
    kind: str,
    parameters: dict[str, Any],
    job_id: uuid.UUID | None = None,
    ip: str | None = None,
) -> DerivedJob:
    """Saves the request with its audit entry, then queues it once the row is committed.

    `parameters` are the dialog's checked values, sent as they are on every attempt; `job_id`
    lets the form's idempotency key become the job's id (and so its ClientToken).
    """
    kind_name = DerivedKind(kind).label
    return DerivedJob.submit_new(
        audit=_REQUESTED[DerivedKind(kind)],
        actor=user,
        ip=ip,
        message=f"{kind_name} requested by {user.get_username()} from {snapshot_id}.",
        details={"snapshot_id": snapshot_id, **parameters},
        send=lambda derived_id: derived_enqueue(job_id=derived_id),
        id=job_id or uuid.uuid4(),
        team=team,
        requested_by=user,
        source_snapshot_id=snapshot_id,
        kind=kind,
        parameters=parameters,
    )


def derived_enqueue(*, job_id: uuid.UUID, countdown: float = 0) -> bool:
    """Sends the job to the queue. False when the broker is down: the sweeper sends it later."""
    return enqueue("importer.lifecycle.submit_derived", row_id=job_id, countdown=countdown)


def derived_submit(*, job_id: str) -> None:
    """Claims a queued job and asks the API for its volume, OMI or copy, exactly once."""
    job = DerivedJob.objects.select_related("team").filter(pk=job_id).first()
    if job is None or not job.claim_for_submission():
        return  # taken by another worker, finished, or deleted
    try:
        client = accounts.api_client(job.team)
        made = kinds.find_made(client, job) if job.attempts > 1 else None
        request_id = ""
        if made is None:
            try:
                sent = kinds.send(client, job)
                made, request_id = sent.made, sent.request_id
            except OscApiError as error:
                made = _made_meanwhile(client, job, error)
                if made is None:
                    raise
    except (ValueError, DecryptionError) as error:
        job.mark_failed(code="NoCredentials", type="PortalError", details=str(error))
        return
    except OscApiError as error:
        fail_or_requeue(job, error)
        return
    job.mark_accepted(
        resource_id=made.resource_id,
        api_state=made.state,
        progress=made.progress,
        request_id=request_id,
    )
    if job.kind == DerivedKind.COPY:
        name_copy(job, client)


def _made_meanwhile(client: OscClient, job: DerivedJob, error: OscApiError) -> kinds.Made | None:
    """A retry refused for good may be refused because the lost attempt has succeeded since
    it was looked for (an OMI's name is then taken by the OMI itself): look once more."""
    if error.transient or job.attempts <= 1:
        return None
    try:
        return kinds.find_made(client, job)
    except OscApiError:
        return None


def name_copy(job: DerivedJob, client: OscClient) -> bool:
    """Gives a copy its Name tag. A passing problem leaves it pending (the poll tries again);
    a refusal is said on the copy's page once, and not tried again."""
    name = str(job.parameters.get("name", ""))
    try:
        request_id = client.create_tags(resource_ids=[job.resource_id], tags={"Name": name})
    except OscApiError as error:
        if error.transient:
            logger.warning("Tagging copy %s with its Name failed, will retry: %s", job.pk, error)
            return False
        return _set_tag_state(job, TagState.FAILED, f"Tagging Name failed: {error}")
    return _set_tag_state(job, TagState.DONE, f"Tagged Name={name} (request {request_id or '-'}).")


def _set_tag_state(job: DerivedJob, tag_state: str, message: str) -> bool:
    with transaction.atomic():
        pending = DerivedJob.objects.filter(pk=job.pk, tag_state=TagState.PENDING)
        if not pending.update(tag_state=tag_state, updated_at=timezone.now()):
            return False
        job.events.create(state=job.state, message=clip_text(DerivedEvent, "message", message))
    job.tag_state = tag_state
    return tag_state == TagState.DONE


def derived_sweep(*, now: datetime | None = None) -> int:
    """Sends again the jobs the broker lost and those a dead worker held."""
    resent, requeued = sweep_submissions(
        DerivedJob, lambda job_id: derived_enqueue(job_id=job_id), now=now or timezone.now()
    )
    return resent + requeued


# --- What changes at once: who may use the snapshot, and its tags -------------------------


class NothingToChange(ValueError):
    """The request would leave the snapshot as it is: said to the user, nothing sent."""


def own_snapshot(team: Team, snapshot_id: str, client: OscClient | None = None) -> Snapshot:
    """The team's snapshot as the API says it now; raises SnapshotNotInAccount."""
    client = client or accounts.api_client(team)
    found = client.read_snapshots(snapshot_ids=[snapshot_id])
    if not found:
        raise SnapshotNotInAccount(snapshot_id)
    return found[0]


@dataclass(frozen=True)
class PermissionChange:
    added: tuple[str, ...]
    removed: tuple[str, ...]
    # True: made public, False: made private, None: left as it was.
    public: bool | None


def permissions_update(
    *,
    team: Team,
    user: User,
    snapshot_id: str,
    add_account_ids: Sequence[str] = (),
    remove_account_ids: Sequence[str] = (),
    public: bool | None = None,
    read: Snapshot | None = None,
    ip: str | None = None,
) -> tuple[Snapshot, PermissionChange]:
    """Adds and removes the accounts that may create volumes from the snapshot (and its public
    permission), from what the API says now; audited with the ids added and removed.

    Raises NothingToChange, SnapshotNotInAccount or OscApiError.
    """
    client = accounts.api_client(team)
    # `read`: the snapshot as the dialog's request just read it, not asked for a second time.
    now = (read or own_snapshot(team, snapshot_id, client)).permissions
    change = PermissionChange(
        added=tuple(sorted(set(add_account_ids) - set(now.account_ids))),
        removed=tuple(sorted(set(remove_account_ids) & set(now.account_ids))),
        public=public if public is not None and public != now.public else None,
    )
    if not (change.added or change.removed or change.public is not None):
        raise NothingToChange("These permissions are already the snapshot's.")
    # The API takes additions or removals in one call, not both: additions first, so that a
    # failure between the two never leaves an account without the access it was given.
    request_ids = []
    snapshot = None
    if change.added or change.public is True:
        result = client.update_snapshot_permissions(
            snapshot_id=snapshot_id, add_account_ids=change.added, make_public=change.public or None
        )
        snapshot = result.snapshot
        request_ids.append(result.request_id)
    if change.removed or change.public is False:
        result = client.update_snapshot_permissions(
            snapshot_id=snapshot_id,
            remove_account_ids=change.removed,
            make_public=False if change.public is False else None,
        )
        snapshot = result.snapshot
        request_ids.append(result.request_id)
    assert snapshot is not None  # noqa: S101 - one of the two ran, the change is not empty
    record(
        action=AuditAction.PERMISSIONS_CHANGED,
        actor=user,
        team=team,
        target=snapshot_id,
        ip=ip,
        details={**asdict(change), "request_ids": request_ids},
    )
    return snapshot, change


@dataclass(frozen=True)
class TagChange:
    set: dict[str, str]
    removed: tuple[str, ...]


def tags_edit(
    *,
    team: Team,
    user: User,
    snapshot_id: str,
    tags: Mapping[str, str],
    read: Snapshot | None = None,
    ip: str | None = None,
) -> TagChange:
    """Makes the snapshot's tags exactly `tags`: CreateTags for the new and changed ones, then
    DeleteTags for the ones left out (in that order, so a failure midway loses no tag).

    Raises NothingToChange, SnapshotNotInAccount or OscApiError.
    """
    client = accounts.api_client(team)
    now = (read or own_snapshot(team, snapshot_id, client)).tags
    change = TagChange(
        set={key: value for key, value in tags.items() if now.get(key) != value},
        removed=tuple(sorted(key for key in now if key not in tags)),
    )
    if not (change.set or change.removed):
        raise NothingToChange("These tags are already the snapshot's.")
    request_ids = []
    if change.set:
        request_ids.append(client.create_tags(resource_ids=[snapshot_id], tags=change.set))
    if change.removed:
        removed = {key: now[key] for key in change.removed}
        request_ids.append(client.delete_tags(resource_ids=[snapshot_id], tags=removed))
    record(
        action=AuditAction.TAGS_EDITED,
        actor=user,
        team=team,
        target=snapshot_id,
        ip=ip,
        details={"set": change.set, "removed": list(change.removed), "request_ids": request_ids},
    )
    return change
