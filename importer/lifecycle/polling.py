"""Following volumes, OMIs and copies until the API says they have ended.

One cycle reads each team's in-flight jobs with one listing per kind (ReadVolumes,
ReadImages, ReadSnapshots filtered by the ids, paged and bounded): never a call per row. Each
team is polled on its own, like the imports and exports.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.utils import timezone

from importer.core.crypto import DecryptionError
from importer.imports.models import TagState
from importer.jobs.models import note_once
from importer.jobs.polling import (
    POLL_TEAM_BUDGET_SECONDS,
    by_team,
    fail_vanished,
    poll_failed,
    poll_isolated,
)
from importer.lifecycle import kinds
from importer.lifecycle.models import DerivedEvent, DerivedJob, DerivedKind, DerivedState
from importer.lifecycle.services import name_copy
from importer.outscale import accounts
from importer.outscale.client import OscClient
from importer.outscale.errors import OscApiError

# The most copies one cycle tries to tag again (a copy whose Name tag failed at first).
RENAME_BATCH = 50


@dataclass(frozen=True)
class DerivedPollSummary:
    followed: int
    changed: int
    finished: int
    failed_teams: int = 0

    def __bool__(self) -> bool:
        return bool(self.changed or self.finished or self.failed_teams)


def derived_poll(*, now: datetime | None = None) -> DerivedPollSummary:
    """One poll cycle over every team's volumes, OMIs and copies still in progress."""
    now = now or timezone.now()
    followed = changed = finished = failed = 0
    for jobs in by_team(DerivedJob.objects.in_flight().select_related("team")):
        followed += len(jobs)
        result = poll_isolated(
            jobs,
            lambda jobs=jobs: _poll_team(jobs, now=now),  # type: ignore[misc]
            what="volumes, OMIs and copies",
            failed=None,
            note=_note_on_jobs,
        )
        if result is None:
            failed += 1
        else:
            changed, finished = changed + result[0], finished + result[1]
    _name_untagged_copies()
    return DerivedPollSummary(followed, changed, finished, failed)


def _note_on_jobs(jobs: list[DerivedJob], message: str) -> None:
    note_once(DerivedEvent, "job", jobs, message)


def _poll_team(jobs: list[DerivedJob], *, now: datetime) -> tuple[int, int] | None:
    """(changed, finished) for one team's jobs; None when the API could not say."""
    try:
        client = accounts.api_client(jobs[0].team)
    except (ValueError, DecryptionError) as error:
        poll_failed(jobs, error, what="volumes, OMIs and copies", note=_note_on_jobs)
        return None
    changed = finished = 0
    for kind in DerivedKind:
        of_kind = [job for job in jobs if job.kind == kind]
        if of_kind:
            result = _poll_kind(client, kind, of_kind, now=now)
            if result is None:
                return None
            changed, finished = changed + result[0], finished + result[1]
    return changed, finished


def _poll_kind(
    client: OscClient, kind: str, jobs: list[DerivedJob], *, now: datetime
) -> tuple[int, int] | None:
    try:
        listing = kinds.read_made(
            client,
            kind,
            [job.resource_id for job in jobs],
            budget_seconds=POLL_TEAM_BUDGET_SECONDS,
        )
    except OscApiError as error:
        poll_failed(jobs, error, what="volumes, OMIs and copies", note=_note_on_jobs)
        return None
    found = {made.resource_id: made for made in listing.items}
    changed = finished = 0
    for job in jobs:
        made = found.get(job.resource_id)
        if made is None and not listing.complete:
            continue  # maybe on a page the listing did not read: not taken for vanished
        moved, ended = _apply(job, made, now=now)
        changed, finished = changed + moved, finished + ended
    return changed, finished


def _apply(job: DerivedJob, made: kinds.Made | None, *, now: datetime) -> tuple[bool, bool]:
    """Brings one job up to what the API says; returns (changed, finished)."""
    if made is None:
        ended = fail_vanished(job, job.resource_id, now=now, code="NotFound", type="Vanished")
        return ended, ended
    if made.done:
        ended = job.mark_completed(api_state=made.state)
        return ended, ended
    if made.failed:
        ended = job.mark_failed(
            code="CreationFailed",
            type=f"{job.get_kind_display()}Failed".replace(" ", ""),
            details=made.message or f"The API ended {made.resource_id} in state {made.state}.",
            api_state=made.state,
            from_states=(DerivedState.IN_PROGRESS,),
        )
        return ended, ended
    return job.follow(api_state=made.state, progress=made.progress, now=now), False


def _name_untagged_copies() -> int:
    """Copies the API made whose Name tag could not be set yet: tried again, a few a cycle."""
    untagged = (
        DerivedJob.objects.filter(kind=DerivedKind.COPY, tag_state=TagState.PENDING)
        .exclude(resource_id="")
        .exclude(state=DerivedState.ERROR)
        .select_related("team")
        .order_by("updated_at")[:RENAME_BATCH]
    )
    named = 0
    for job in untagged:
        try:
            named += name_copy(job, accounts.api_client(job.team))
        except (ValueError, DecryptionError):
            continue  # the team's credentials: its page says so already
    return named
