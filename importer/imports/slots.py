"""The team's queue of imports: a few in flight at once, the others waiting their turn.

A team (one OUTSCALE account) lets at most `Team.imports_in_flight_limit` of its imports be
with the API at once (being sent, or importing); the others wait in `waiting`, and start oldest
first as slots free up. While the API throttles the account, none is sent: the whole account
pauses, each throttling answer in a row doubling the pause.

Enforced in the database, so that workers on any host agree: a claim locks the team's row
(`SELECT ... FOR NO KEY UPDATE`; SQLite serialises its writers anyway), counts the team's jobs
holding a slot and takes one only when one is free and no older job is waiting for it. Not
`FOR UPDATE`: that would also block every insert referring to the team (an audit entry taking
the audit chain's lock first, say), and a claim recording its own audit entry would deadlock.
"""

from __future__ import annotations

import logging
import random
import uuid
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from importer.core.metrics import API_THROTTLED
from importer.imports.models import ImportJob, ImportJobEvent, ImportJobQuerySet, JobState
from importer.jobs.queue import enqueue
from importer.outscale.errors import OscApiError
from importer.teams.models import Team

logger = logging.getLogger(__name__)

# A job holds a slot from the moment it is queued (a worker is about to send it) while a
# worker sends it and while the API imports it; a job queued again after an attempt keeps it
# too (a lost answer may mean the API has it): the portal never counts fewer than the API.
HOLDING_A_SLOT = (JobState.QUEUED, JobState.SUBMITTING, JobState.IN_PROGRESS)
# The whole account's pause after a throttling answer: doubled by each one in a row (answers
# to requests sent before the pause began count once), capped.
THROTTLE_BASE_SECONDS = 2.0
THROTTLE_MAX_SECONDS = 120.0
# A job throttled this many times gives up with the API's words: every retry is bounded.
MAX_THROTTLED_ATTEMPTS = 40
THROTTLED_PREFIX = "Throttled:"
SLOT_FREE = "A slot is free: queued for sending."
NO_SLOT = "Every slot of the team is taken: waiting for one."


def holding_slots(team_id: int) -> ImportJobQuerySet:
    # Dry runs import nothing: they never take a slot, and never wait for one.
    return ImportJob.objects.filter(team_id=team_id, state__in=HOLDING_A_SLOT, dry_run=False)


def waiting(team_id: int) -> ImportJobQuerySet:
    return ImportJob.objects.filter(team_id=team_id, state=JobState.WAITING)


def paused_for(team: Team, *, now: datetime | None = None) -> float:
    """Seconds until the account's throttling pause ends (0 when it is not paused)."""
    until = team.api_throttled_until
    now = now or timezone.now()
    return max((until - now).total_seconds(), 0.0) if until else 0.0


def slot_for_new(team_id: int) -> bool:
    """Whether a new import may be queued at once (a slot is free, no older job waits, the
    account is not paused); the caller's transaction keeps the team locked until it commits."""
    with transaction.atomic():
        team = Team.objects.select_for_update(no_key=True).get(pk=team_id)
        return (
            not paused_for(team)
            and _free_slots(team, holding_slots(team_id).count()) > 0
            and not waiting(team_id).exists()
        )


def claim_with_slot(job: ImportJob) -> bool:
    """Claims a queued job for sending when its team has a free slot and no older job is
    waiting for one; otherwise the job waits (and the oldest waiting ones are let in)."""
    if job.dry_run:
        return job.claim_for_submission()
    with transaction.atomic():
        team = Team.objects.select_for_update(no_key=True).get(pk=job.team_id)
        pause = paused_for(team)
        busy = holding_slots(team.pk).exclude(pk=job.pk).count()
        free = _free_slots(team, busy, exclude=job)
        # Sent before (its slot kept meanwhile), or next in line with a slot free.
        mine = job.attempts > 0 or (
            free > 0 and not waiting(team.pk).filter(created_at__lt=job.created_at).exists()
        )
        if not pause and mine:
            return job.claim_for_submission()
        if pause:
            message = (
                f"Waiting: the API is throttling this account; sending resumes in about "
                f"{pause:.0f} s."
            )
        elif team.api_throttle_streak:
            message = "Waiting: the API throttled this account; imports go one at a time."
        else:
            message = (
                f"Waiting for a slot: {busy} of the team's {team.imports_in_flight_limit} "
                "imports in flight at once are taken."
            )
        job.transition(from_states=(JobState.QUEUED,), message=message, state=JobState.WAITING)
        if not pause and free > 0:
            _admit(team, free)
    return False


def _free_slots(team: Team, busy: int, *, exclude: ImportJob | None = None) -> int:
    """The slots a job may take now. Right after throttling (until the API takes an import
    again) the account is probed with one import at a time, not the whole limit at once."""
    free = team.imports_in_flight_limit - busy
    if not team.api_throttle_streak or free <= 0:
        return free
    sending = ImportJob.objects.filter(
        team_id=team.pk, state__in=(JobState.QUEUED, JobState.SUBMITTING), dry_run=False
    )
    if exclude is not None:
        sending = sending.exclude(pk=exclude.pk)
    return 0 if sending.exists() else 1


def admit_waiting(team_id: int) -> int:
    """Lets the team's oldest waiting jobs in, as many as it has free slots (none while the
    account is paused); each is queued and sent once the admission has committed."""
    with transaction.atomic():
        team = Team.objects.select_for_update(no_key=True).get(pk=team_id)
        if paused_for(team):
            return 0
        free = _free_slots(team, holding_slots(team.pk).count())
        return _admit(team, free) if free > 0 else 0


def admit_everywhere() -> int:
    """`admit_waiting` for every team with jobs waiting: what the poll cycle runs, so that a
    slot freed by any path (and a pause that ended) is taken within one cycle."""
    teams = ImportJob.objects.filter(state=JobState.WAITING).values_list("team_id", flat=True)
    return sum(admit_waiting(team_id) for team_id in set(teams))


def _admit(team: Team, free: int) -> int:
    """Moves the `free` oldest waiting jobs back to the queue (the caller holds the team's
    lock) and sends them once that commits."""
    admitted = list(
        waiting(team.pk).order_by("created_at", "id").values_list("pk", flat=True)[:free]
    )
    now = timezone.now()
    moved = ImportJob.objects.filter(pk__in=admitted, state=JobState.WAITING).update(
        state=JobState.QUEUED, enqueued_at=now, updated_at=now
    )
    ImportJobEvent.objects.bulk_create(
        ImportJobEvent(job_id=job_id, state=JobState.QUEUED, at=now, message=SLOT_FREE)
        for job_id in admitted
    )
    transaction.on_commit(lambda: _send(admitted))
    return moved


def _send(job_ids: list[uuid.UUID]) -> None:
    for job_id in job_ids:
        enqueue("importer.tasks.submit_import", row_id=job_id)


def slot_freed(team_id: int) -> None:
    """After a job left its slot (accepted jobs keep theirs): the next waiting ones may go."""
    transaction.on_commit(lambda: admit_waiting(team_id))


def throttled(job: ImportJob, error: OscApiError) -> None:
    """The API throttled the account while this job was being sent: the whole account pauses
    (longer after each throttling answer in a row), and the job waits for the pause to end.
    It gives up only after MAX_THROTTLED_ATTEMPTS throttling answers."""
    API_THROTTLED.inc()
    answers = job.events.filter(message__startswith=THROTTLED_PREFIX).count() + 1
    if answers >= MAX_THROTTLED_ATTEMPTS:
        job.mark_failed(
            code=error.code or str(error.http_status or ""),
            type=error.type or "Throttled",
            details=f"Gave up after {answers} throttling answers; last answer: {error}",
            request_id=error.request_id,
        )
        slot_freed(job.team_id)
        return
    with transaction.atomic():
        team = Team.objects.select_for_update(no_key=True).get(pk=job.team_id)
        now = timezone.now()
        if team.api_throttled_until and team.api_throttled_until > now:
            # Sent before the pause began: the same burst, the pause already stands for it.
            until, streak = team.api_throttled_until, team.api_throttle_streak
        else:
            streak = team.api_throttle_streak + 1
            until = now + _throttle_pause(streak)
            Team.objects.filter(pk=team.pk).update(
                api_throttled_until=until, api_throttle_streak=streak
            )
        job.transition(
            from_states=(JobState.SUBMITTING,),
            message=(
                f"{THROTTLED_PREFIX} the API asked the account to slow down ({error}); every "
                f"import of the team waits about {(until - now).total_seconds():.0f} s."
            ),
            state=JobState.WAITING,
            # This attempt was the API's refusal to listen, not the job's failure.
            attempts=F("attempts") - 1,
            request_ids=job.with_request_id(error.request_id),
        )
    logger.warning(
        "Account of team %s throttled until %s (%d in a row): %s", team.name, until, streak, error
    )


def not_throttled(team_id: int) -> None:
    """The API took an import: the account is out of its throttling, the next answer of the
    kind starts from the shortest pause, and the waiting jobs may take every free slot."""
    if Team.objects.filter(pk=team_id, api_throttle_streak__gt=0).update(api_throttle_streak=0):
        transaction.on_commit(lambda: admit_waiting(team_id))


def _throttle_pause(streak: int) -> timedelta:
    ceiling = min(THROTTLE_MAX_SECONDS, THROTTLE_BASE_SECONDS * 2 ** max(streak - 1, 0))
    return timedelta(seconds=random.uniform(ceiling / 2, ceiling))  # noqa: S311 - jitter
