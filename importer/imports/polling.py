from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from celery.exceptions import SoftTimeLimitExceeded
from django.db import transaction
from django.utils import timezone

from importer.core.crypto import DecryptionError
from importer.imports.models import ImportJob, ImportJobEvent, JobState
from importer.imports.services import logger
from importer.jobs.models import clip_text, note_once
from importer.outscale import accounts
from importer.outscale.errors import OscApiError
from importer.outscale.paginator import Listing, pages_for, read_snapshots_bounded
from importer.outscale.resources import Snapshot

# The API may not list a snapshot for a moment after creating it.
VANISHED_GRACE = timedelta(minutes=2)


@dataclass(frozen=True)
class PollSummary:
    followed: int
    changed: int
    finished: int
    api_calls: int
    # Teams whose poll failed (recorded, the others went on) or read an incomplete listing.
    failed_teams: int = 0
    truncated_teams: int = 0


# No new page after this long for one team: a slow account must leave time for the others.
POLL_TEAM_BUDGET_SECONDS = 30.0


# What the jobs' pages say when their team's poll fails on something unforeseen.
POLL_FAILED_UNEXPECTEDLY = (
    "Following progress failed on an unexpected error (logged for the operators); "
    "the portal keeps trying."
)


def imports_poll(*, now: datetime | None = None) -> PollSummary:
    """One poll cycle: every in-flight job, per team, in as few ReadSnapshots calls as possible.

    Each team is polled on its own: whatever goes wrong with one team is logged (and noted on
    its jobs when someone can act on it) and the others are polled all the same.
    """
    now = now or timezone.now()
    by_team: dict[int, list[ImportJob]] = {}
    for job in ImportJob.objects.in_flight().select_related("team"):
        by_team.setdefault(job.team_id, []).append(job)
    teams = list(by_team.values())
    # A team whose API is slow must not always go first and use up the task's time.
    random.shuffle(teams)
    summaries = [_poll_team_isolated(jobs, now=now) for jobs in teams]
    return PollSummary(
        followed=sum(summary.followed for summary in summaries),
        changed=sum(summary.changed for summary in summaries),
        finished=sum(summary.finished for summary in summaries),
        api_calls=sum(summary.api_calls for summary in summaries),
        failed_teams=sum(summary.failed_teams for summary in summaries),
        truncated_teams=sum(summary.truncated_teams for summary in summaries),
    )


def _poll_team_isolated(jobs: list[ImportJob], *, now: datetime) -> PollSummary:
    try:
        return _poll_team(jobs, now=now)
    except SoftTimeLimitExceeded:
        raise  # the task's time is up: stop here, the next cycle starts over
    except Exception:
        logger.exception(
            "Polling %d imports of team %s failed; the other teams go on",
            len(jobs),
            jobs[0].team.name,
        )
        _note_on_jobs(jobs, POLL_FAILED_UNEXPECTEDLY)
        return PollSummary(followed=len(jobs), changed=0, finished=0, api_calls=0, failed_teams=1)


def poll_problem(error: Exception) -> str:
    """What a job's page says when its team's poll fails in a way someone must fix."""
    if isinstance(error, OscApiError):
        label = " ".join(part for part in (error.code, error.type) if part)
        label = label or f"HTTP {error.http_status}"
        # No details or request id: the same problem reads the same on every cycle.
        return (
            f"Following progress failed: the API refused {error.action} ({label}). A team "
            "admin can check the team's credentials and endpoint; the portal keeps trying."
        )
    return (
        f"Following progress failed: {error}. A team admin can set the team's credentials "
        "again; the portal keeps trying."
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
        # Never give up on an import because one poll failed: the next cycle asks again.
        logger.warning("Polling %d imports failed, will try again: %s", len(jobs), error)
        if not (isinstance(error, OscApiError) and error.transient):
            _note_on_jobs(jobs, poll_problem(error))
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
        # Only rows still in progress: a row finished meanwhile keeps its final state.
        ImportJob.objects.bulk_update(progressed, ["api_state", "progress", "updated_at"])
        ImportJobEvent.objects.bulk_create(events)
    return len(progressed) + finished, finished
