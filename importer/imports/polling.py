from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from importer.core.crypto import DecryptionError
from importer.core.metrics import POLL_CYCLE_SECONDS
from importer.imports import slots
from importer.imports.models import ImportJob, ImportJobEvent, JobState
from importer.jobs.models import clip_text, note_once
from importer.jobs.polling import (
    POLL_TEAM_BUDGET_SECONDS,
    VANISHED_GRACE,
    by_team,
    poll_failed,
    poll_isolated,
)
from importer.outscale import accounts
from importer.outscale.errors import OscApiError
from importer.outscale.paginator import Listing, pages_for, read_snapshots_bounded
from importer.outscale.resources import Snapshot


@dataclass(frozen=True)
class PollSummary:
    followed: int
    changed: int
    finished: int
    api_calls: int
    # Teams whose poll failed (recorded, the others went on) or read an incomplete listing.
    failed_teams: int = 0
    truncated_teams: int = 0
    # Waiting jobs let in because slots freed up (or the account's pause ended).
    admitted: int = 0


def imports_poll(*, now: datetime | None = None) -> PollSummary:
    """One poll cycle: every in-flight job, per team, in as few ReadSnapshots calls as possible.

    Each team is polled on its own: whatever goes wrong with one team is logged (and noted on
    its jobs when someone can act on it) and the others are polled all the same.
    """
    with POLL_CYCLE_SECONDS.time():
        now = now or timezone.now()
        teams = by_team(ImportJob.objects.in_flight().select_related("team"))
        summaries = [_poll_team_isolated(jobs, now=now) for jobs in teams]
        # After the poll: the imports it saw end have freed their slots.
        admitted = slots.admit_everywhere()
    return PollSummary(
        followed=sum(summary.followed for summary in summaries),
        changed=sum(summary.changed for summary in summaries),
        finished=sum(summary.finished for summary in summaries),
        api_calls=sum(summary.api_calls for summary in summaries),
        failed_teams=sum(summary.failed_teams for summary in summaries),
        truncated_teams=sum(summary.truncated_teams for summary in summaries),
        admitted=admitted,
    )


def _poll_team_isolated(jobs: list[ImportJob], *, now: datetime) -> PollSummary:
    return poll_isolated(
        jobs,
        lambda: _poll_team(jobs, now=now),
        what="imports",
        failed=PollSummary(followed=len(jobs), changed=0, finished=0, api_calls=0, failed_teams=1),
        note=_note_on_jobs,
    )


def _poll_team(jobs: list[ImportJob], *, now: datetime) -> PollSummary:
    ids = sorted({job.snapshot_id for job in jobs})
    listing: Listing[Snapshot] = Listing()
    try:
        read_snapshots_bounded(
            accounts.api_client(jobs[0].team),
            listing,
            snapshot_ids=ids,
            max_pages=pages_for(ids),
            budget_seconds=POLL_TEAM_BUDGET_SECONDS,
        )
    except (OscApiError, ValueError, DecryptionError) as error:
        poll_failed(jobs, error, what="imports", note=_note_on_jobs)
        return PollSummary(
            followed=len(jobs), changed=0, finished=0, api_calls=listing.pages, failed_teams=1
        )
    snapshots = {snapshot.snapshot_id: snapshot for snapshot in listing.items}
    changed, finished = _apply_snapshots(jobs, snapshots, now=now, complete=listing.complete)
    return PollSummary(
        followed=len(jobs),
        changed=changed,
        finished=finished,
        api_calls=listing.pages,
        truncated_teams=int(listing.truncated),
    )


def _note_on_jobs(jobs: list[ImportJob], message: str) -> None:
    note_once(ImportJobEvent, "job", jobs, message)


def _apply_snapshots(
    jobs: list[ImportJob], snapshots: dict[str, Snapshot], *, now: datetime, complete: bool = True
) -> tuple[int, int]:
    """Brings the jobs up to what the listing says; `complete=False`: a job the listing did not
    show may be on a page it did not read, so it is not taken for vanished."""
    progressed: list[ImportJob] = []
    events: list[ImportJobEvent] = []
    finished = 0
    for job in jobs:
        snapshot = snapshots.get(job.snapshot_id)
        if snapshot is None:
            if complete and job.submitted_at and job.submitted_at < now - VANISHED_GRACE:
                finished += job.mark_failed(
                    code="SnapshotNotFound",
                    type="SnapshotVanished",
                    details=f"The API no longer lists {job.snapshot_id}: it was deleted or its "
                    "import was cancelled.",
                    from_states=(JobState.IN_PROGRESS,),
                )
        elif snapshot.is_completed:
            finished += job.mark_completed(api_state=snapshot.state)
        elif snapshot.is_failed:
            finished += job.mark_failed(
                code="SnapshotError",
                type="ImportFailed",
                details=f"The API ended the import of {job.snapshot_id} in state error: check "
                "that the URL had not expired and that the Snapshot Size is at least the "
                "image's uncompressed size.",
                from_states=(JobState.IN_PROGRESS,),
            )
        elif (snapshot.state, snapshot.progress) != (job.api_state, job.progress):
            if snapshot.state != job.api_state:
                message = clip_text(ImportJobEvent, "message", f"API state: {snapshot.state}.")
                events.append(ImportJobEvent(job=job, state=job.state, at=now, message=message))
            job.api_state = clip_text(ImportJob, "api_state", snapshot.state)
            job.progress = min(max(snapshot.progress, 0), 100)
            job.updated_at = now
            progressed.append(job)
    with transaction.atomic():
        _record_progress(progressed, now=now)
        ImportJobEvent.objects.bulk_create(events)
    return len(progressed) + finished, finished


# Ids per UPDATE: well under every database's limit on a statement's parameters.
PROGRESS_UPDATE_CHUNK = 2000


def _record_progress(progressed: list[ImportJob], *, now: datetime) -> None:
    """One UPDATE per (API state, progress) the jobs reached, not one CASE per job: imports move
    in step (a hundred progress values, a few states), so 10,000 jobs are a few dozen statements
    that cost milliseconds, where `bulk_update`'s CASE of 10,000 branches took seconds of CPU
    to build and tens of seconds for PostgreSQL to run."""
    steps: dict[tuple[str, int], list[Any]] = defaultdict(list)
    for job in progressed:
        steps[(job.api_state, job.progress)].append(job.pk)
    teams = {job.team_id for job in progressed}
    for (api_state, progress), ids in steps.items():
        for start in range(0, len(ids), PROGRESS_UPDATE_CHUNK):
            # Only rows still in progress: a row finished meanwhile keeps its final state.
            ImportJob.objects.filter(
                pk__in=ids[start : start + PROGRESS_UPDATE_CHUNK], state=JobState.IN_PROGRESS
            ).update_of_teams(teams, api_state=api_state, progress=progress, updated_at=now)
