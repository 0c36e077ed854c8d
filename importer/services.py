"""Workflows that span the job rows, the queue and the OUTSCALE API.

The import path: view -> form -> `import_create` -> job row -> `submit_import` task ->
`import_submit` -> client -> API; then `imports_poll` (periodic) follows progress and
`imports_sweep` (periodic) re-sends whatever the broker or a dead worker lost.
"""

from __future__ import annotations

import hashlib
import logging
import random
import threading
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.contrib.auth.models import User
from django.core.cache import cache as django_cache
from django.db import transaction
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerError

from importer import audit, destinations, net
from importer.crypto import DecryptionError, decrypt_text, encrypt_text
from importer.listings import Listing, pages_for, read_snapshots_bounded
from importer.models import (
    ImportJob,
    ImportJobEvent,
    JobState,
    Membership,
    TagState,
    Team,
    clip_text,
    note_once,
)
from importer.outscale import OscApiError, OscClient, OscCredentials, Snapshot
from importer.presigned import PresignedUrl

logger = logging.getLogger(__name__)

MAX_SUBMIT_ATTEMPTS = 8
MAX_TAG_ATTEMPTS = 5
RETRY_BASE_SECONDS = 2.0
RETRY_MAX_SECONDS = 120.0
# A job queued this long past its due time was lost by the broker (or never reached it).
LOST_IN_QUEUE_AFTER = timedelta(minutes=2)
# Past the task's hard time limit the worker holding a claim is dead.
STUCK_SUBMITTING_AFTER = timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT + 60)
UNTAGGED_AFTER = timedelta(minutes=5)
# The API may not list a snapshot for a moment after creating it.
VANISHED_GRACE = timedelta(minutes=2)
SWEEP_BATCH = 500
# Publishing must not hang a web request when the broker is down: one quick retry, then the
# job stays queued in the database for the sweeper.
PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.5}


class TransientSubmitError(Exception):
    """The API had a passing problem; the job is queued again and the task should retry."""

    def __init__(self, retry_in: float) -> None:
        super().__init__(f"retry in {retry_in:.1f} s")
        self.retry_in = retry_in


class TransientTagError(Exception):
    """Tagging hit a passing problem; retry the tag task."""


def retry_delay(attempt: int) -> float:
    """Exponential backoff with full jitter, capped."""
    ceiling = min(RETRY_MAX_SECONDS, RETRY_BASE_SECONDS * 2 ** max(attempt - 1, 0))
    return random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not a secret


@cache
def _client(
    endpoint: str, region: str, access_key: str, secret_key: str, policy: net.Policy
) -> OscClient:
    # Every call goes through the outbound guard: a team's endpoint is chosen by its admin.
    return OscClient(
        credentials=OscCredentials(access_key=access_key, secret_key=secret_key),
        region=region,
        endpoint=endpoint,
        connect_timeout=settings.OSC_CONNECT_TIMEOUT,
        read_timeout=settings.OSC_READ_TIMEOUT,
        session=net.guarded_session(policy),
    )


def api_client(team: Team | None) -> OscClient:
    """The client for a team's account; a team set to use the environment gets the OSC_* one.

    Raises ValueError when there is no team (never the environment's account by default) or
    the team has no usable credentials.
    """
    if team is None:
        raise ValueError("no team: join a team to reach an OUTSCALE account")
    if team.uses_environment_credentials:
        return _client(
            settings.OSC_ENDPOINT_API,
            settings.OSC_REGION,
            settings.OSC_ACCESS_KEY,
            settings.OSC_SECRET_KEY,
            destinations.api_policy(),
        )
    if not team.secret_key_encrypted:
        raise ValueError(f"team {team.name} has no OUTSCALE credentials yet")
    endpoint = team.endpoint or f"https://api.{team.region}.outscale.com/api/v1"
    policy = destinations.api_policy()
    # The value as stored, before requests normalises it (a fragment, a leading-zero port):
    # what was saved is what is checked. Raises DestinationRefused, a ValueError.
    net.check_url(endpoint, policy)
    return _client(
        endpoint,
        team.region,
        decrypt_text(team.access_key_encrypted),
        decrypt_text(team.secret_key_encrypted),
        policy,
    )


# --- Submission ---------------------------------------------------------------------------


def import_create(
    *,
    team: Team,
    user: User,
    name: str,
    description: str,
    url: PresignedUrl,
    snapshot_size: int,
    dry_run: bool = False,
    job_id: uuid.UUID | None = None,
    ip: str | None = None,
) -> ImportJob:
    """Saves the job (URL encrypted), then queues it once the row is committed.

    `job_id` lets the form's idempotency key become the job's id (and so its ClientToken).
    """
    with transaction.atomic():
        job = ImportJob.objects.create(
            id=job_id or uuid.uuid4(),
            team=team,
            name=name,
            description=description,
            snapshot_size=snapshot_size,
            dry_run=dry_run,
            submitted_by=user,
            url_redacted=url.redacted,
            url_host=url.host,
            url_bucket=url.bucket,
            url_key=url.key[:1024],
            url_expires_at=url.expires_at,
            url_encrypted=encrypt_text(url.secret_url),
        )
        ImportJobEvent.objects.create(
            job=job,
            state=JobState.QUEUED,
            message=f"Submitted by {user.get_username()}" + (" as a dry run." if dry_run else "."),
        )
        audit.record(
            action=audit.AuditAction.IMPORT_SUBMITTED,
            actor=user,
            team=team,
            target=str(job.pk),
            ip=ip,
            details={
                "name": name,
                "object": job.url_redacted,
                "snapshot_size": snapshot_size,
                "dry_run": dry_run,
            },
        )
        transaction.on_commit(lambda: import_enqueue(job_id=job.pk))
    return job


def import_enqueue(*, job_id: uuid.UUID, countdown: float = 0) -> bool:
    """Sends the job to the queue. False when the broker is down: the sweeper sends it later."""
    from importer.tasks import submit_import

    try:
        submit_import.apply_async(
            args=(str(job_id),), countdown=countdown, retry=True, retry_policy=PUBLISH_RETRY_POLICY
        )
    except (BrokerError, OSError) as error:
        logger.warning("Broker unreachable, job %s stays queued for the sweeper: %s", job_id, error)
        return False
    return True


def import_submit(*, job_id: str) -> None:
    """Claims a queued job and sends CreateSnapshot, never creating a second snapshot."""
    job = ImportJob.objects.select_related("team").filter(pk=job_id).first()
    if job is None or not job.claim_for_submission():
        return  # already taken by another worker, finished, or deleted
    try:
        client = api_client(job.team)
        if job.attempts > 1 and not job.dry_run:
            # An earlier attempt may have reached the API before its worker or answer was lost.
            existing = client.read_snapshots(client_tokens=[str(job.pk)])
            if existing:
                _accept(job, existing[0], request_id="")
                return
        file_location = decrypt_text(job.url_encrypted)
        # Checked when the form took it, and again now: the allow-list may have changed since.
        net.check_url(file_location, destinations.presigned_url_policy().outbound())
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
    except net.DestinationRefused as error:
        job.mark_failed(code="UrlRefused", type="PortalError", details=str(error))
        return
    except ValueError as error:  # the team has no credentials: nothing to retry until it has
        job.mark_failed(code="NoCredentials", type="PortalError", details=str(error))
        return
    except OscApiError as error:
        _submit_failed(job, error)
        return
    if job.dry_run:
        job.mark_dry_run_passed(request_id=result.request_id)
    elif result.snapshot is not None:
        _accept(job, result.snapshot, request_id=result.request_id)


def _accept(job: ImportJob, snapshot: Snapshot, *, request_id: str) -> None:
    if job.mark_accepted(
        snapshot_id=snapshot.snapshot_id,
        api_state=snapshot.state,
        progress=snapshot.progress,
        request_id=request_id,
    ):
        transaction.on_commit(lambda: snapshot_tag_enqueue(job_id=job.pk))


def _submit_failed(job: ImportJob, error: OscApiError) -> None:
    if not error.transient:
        job.mark_failed(
            code=error.code or str(error.http_status or ""),
            type=error.type,
            details=error.details or str(error),
            request_id=error.request_id,
        )
        return
    if job.attempts >= MAX_SUBMIT_ATTEMPTS:
        job.mark_failed(
            code=error.code or str(error.http_status or ""),
            type=error.type or "Unavailable",
            details=f"Gave up after {job.attempts} attempts; last answer: {error}",
            request_id=error.request_id,
        )
        return
    delay = retry_delay(job.attempts)
    job.requeue_after_transient_error(
        summary=str(error),
        request_id=error.request_id,
        retry_at=timezone.now() + timedelta(seconds=delay),
    )
    raise TransientSubmitError(delay)


# --- Tagging ------------------------------------------------------------------------------


def snapshot_tag_enqueue(*, job_id: uuid.UUID, countdown: float = 0) -> bool:
    from importer.tasks import tag_snapshot

    try:
        tag_snapshot.apply_async(
            args=(str(job_id),), countdown=countdown, retry=True, retry_policy=PUBLISH_RETRY_POLICY
        )
    except (BrokerError, OSError) as error:
        logger.warning("Broker unreachable, tag of job %s left to the sweeper: %s", job_id, error)
        return False
    return True


def snapshot_tag(*, job_id: str, final_attempt: bool) -> None:
    """Tags the snapshot `Name`; a failure is shown on the job and does not fail the import."""
    pending = ImportJob.objects.select_related("team").filter(pk=job_id, tag_state=TagState.PENDING)
    job = pending.first()
    if job is None or not job.snapshot_id:
        return
    try:
        request_id = api_client(job.team).create_tags(
            resource_ids=[job.snapshot_id], tags={"Name": job.name}
        )
    except OscApiError as error:
        if error.transient and not final_attempt:
            raise TransientTagError(str(error)) from None
        _set_tag_state(job, TagState.FAILED, f"Tagging Name failed: {error}", error=str(error))
        return
    _set_tag_state(job, TagState.DONE, f"Tagged Name={job.name} (request {request_id}).")


def _set_tag_state(job: ImportJob, tag_state: str, message: str, *, error: str = "") -> None:
    with transaction.atomic():
        updated = ImportJob.objects.filter(pk=job.pk, tag_state=TagState.PENDING).update(
            tag_state=tag_state, tag_error=error[:1000], updated_at=timezone.now()
        )
        if updated == 1:
            ImportJobEvent.objects.create(job=job, state=job.state, message=message[:2500])
            audit.record(
                action=audit.AuditAction.TAG_RESULT,
                team=job.team,
                target=str(job.pk),
                details={
                    "snapshot_id": job.snapshot_id,
                    "tag_state": tag_state,
                    "message": message,
                },
            )


# --- Following progress ---------------------------------------------------------------------


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
            api_client(jobs[0].team),
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


# --- The sweeper --------------------------------------------------------------------------


@dataclass(frozen=True)
class SweepSummary:
    requeued_stuck: int
    resent_queued: int
    resent_tags: int


def imports_sweep(*, now: datetime | None = None) -> SweepSummary:
    """Re-sends what a dead worker or an unreachable broker lost. The row is the truth."""
    now = now or timezone.now()
    resent = 0
    lost = ImportJob.objects.lost_in_queue(now=now, after=LOST_IN_QUEUE_AFTER)
    for job_id in list(lost.values_list("pk", flat=True)[:SWEEP_BATCH]):
        if ImportJob.objects.filter(pk=job_id, state=JobState.QUEUED).update(enqueued_at=now):
            resent += import_enqueue(job_id=job_id)
    # After the lost ones, so that a job requeued just now is not sent twice.
    stuck = 0
    for job in ImportJob.objects.stuck_submitting(now=now, after=STUCK_SUBMITTING_AFTER)[
        :SWEEP_BATCH
    ]:
        if job.requeue_stuck():
            stuck += import_enqueue(job_id=job.pk)
    tags = 0
    untagged = ImportJob.objects.untagged(now=now, after=UNTAGGED_AFTER)
    for job_id in list(untagged.values_list("pk", flat=True)[:SWEEP_BATCH]):
        tags += snapshot_tag_enqueue(job_id=job_id)
    return SweepSummary(requeued_stuck=stuck, resent_queued=resent, resent_tags=tags)


# --- Dashboard listing ----------------------------------------------------------------------

# The dashboard waits this long for the API, then shows the local jobs with a banner.
DASHBOARD_API_DEADLINE_SECONDS = 4.0
# A listing is reused this long, so paging and filtering do not list the account again.
DASHBOARD_CACHE_SECONDS = 15
# The dashboard lists at most this many pages of 1000 snapshots, and stops asking for more
# after this long: past either, it shows what it read and says the list is incomplete.
DASHBOARD_MAX_PAGES = 10
DASHBOARD_LISTING_BUDGET_SECONDS = 60.0
_listing_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="dashboard-listing")
# One listing per team at a time in this process (the pool is per process too): a team whose
# API is slow holds one of the pool's threads, never all of them. Team id -> (cache key, run).
_listings_lock = threading.RLock()
_listings_running: dict[int, tuple[str, Future[DashboardSnapshots]]] = {}


@dataclass(frozen=True)
class DashboardSnapshots:
    """The account's snapshots as the API lists them, or why they could not be listed."""

    snapshots: tuple[Snapshot, ...]
    problem: str = ""
    # Set when the snapshots are shown but are not all of them.
    notice: str = ""

    @property
    def ok(self) -> bool:
        return not self.problem


def _listing_cache_key(team: Team) -> str:
    # Per team, endpoint and account: nobody sees a listing made with other credentials.
    team_part = f"{team.pk}|{team.credentials_updated_at}"
    digest = hashlib.sha256(
        f"{team_part}|{settings.OSC_ENDPOINT_API}|{settings.OSC_ACCESS_KEY}".encode()
    ).hexdigest()[:24]
    return f"dashboard-listing:{digest}"


def _list_account_snapshots(client: OscClient, cache_key: str) -> DashboardSnapshots:
    listing = read_snapshots_bounded(
        client,
        Listing(),
        max_pages=DASHBOARD_MAX_PAGES,
        budget_seconds=DASHBOARD_LISTING_BUDGET_SECONDS,
    )
    notice = ""
    if listing.truncated:
        notice = (
            f"Only the first {len(listing.items):,} snapshots of the account are listed "
            f"({listing.stopped}). Search by name or snapshot ID to find the others among "
            "the imports made here."
        )
    result = DashboardSnapshots(snapshots=tuple(listing.items), notice=notice)
    # Stored even when the page gave up waiting: the next page load gets it at once.
    django_cache.set(cache_key, result, DASHBOARD_CACHE_SECONDS)
    return result


def _listing_for(
    team: Team, client: OscClient, cache_key: str
) -> tuple[Future[DashboardSnapshots] | None, bool]:
    """The team's listing and whether it was already running (else it is started here).

    None when the team's one listing runs with other credentials (they changed meanwhile).
    """
    with _listings_lock:
        running = _listings_running.get(team.pk)
        if running is not None and not running[1].done():
            return (running[1] if running[0] == cache_key else None), True
        future = _listing_pool.submit(_list_account_snapshots, client, cache_key)
        _listings_running[team.pk] = (cache_key, future)

    def forget(done: Future[DashboardSnapshots]) -> None:
        with _listings_lock:
            current = _listings_running.get(team.pk)
            if current is not None and current[1] is done:
                del _listings_running[team.pk]

    future.add_done_callback(forget)
    return future, False


def snapshots_for_dashboard(*, team: Team, deadline: float | None = None) -> DashboardSnapshots:
    """Every snapshot of the team's account, never raising and never waiting past `deadline`
    seconds. A team is required: a user in no team has no account to list (never the OSC_* one).
    """
    cache_key = _listing_cache_key(team)
    cached = django_cache.get(cache_key)
    if isinstance(cached, DashboardSnapshots):
        return cached
    try:
        client = api_client(team)
    except ValueError as error:  # credentials missing: a configuration problem, shown as such
        return DashboardSnapshots(snapshots=(), problem=f"The API is not configured: {error}.")
    except Exception:
        logger.exception("Dashboard: no API client")
        return DashboardSnapshots(snapshots=(), problem="The API client could not be set up.")
    busy = DashboardSnapshots(
        snapshots=(),
        problem="A listing of this account is already under way and the OUTSCALE API is slow: "
        "reload the page in a moment.",
    )
    future, joined = _listing_for(team, client, cache_key)
    if future is None:
        return busy
    wait = DASHBOARD_API_DEADLINE_SECONDS if deadline is None else deadline
    try:
        return future.result(timeout=wait)
    except FutureTimeout:
        logger.warning("Dashboard: ReadSnapshots took longer than %.1f s", wait)
        if joined:
            return busy
        return DashboardSnapshots(
            snapshots=(), problem=f"The OUTSCALE API did not answer within {wait:g} seconds."
        )
    except OscApiError as error:
        logger.warning("Dashboard: ReadSnapshots failed: %s", error)
        return DashboardSnapshots(snapshots=(), problem=f"The OUTSCALE API failed: {error}")
    except Exception:  # a bug in the listing must not take the dashboard down with it
        logger.exception("Dashboard: listing snapshots failed")
        return DashboardSnapshots(snapshots=(), problem="Listing the API's snapshots failed.")


# --- Teams: credentials, members, snapshots ---------------------------------------------------


class SnapshotNotInAccount(Exception):
    """The team's account has no such snapshot (it may be another team's)."""


def team_credentials_set(
    *,
    team: Team,
    actor: User,
    region: str,
    endpoint: str,
    access_key: str,
    secret_key: str,
    ip: str | None,
) -> None:
    with transaction.atomic():
        Team.objects.filter(pk=team.pk).update(
            region=region,
            endpoint=endpoint,
            uses_environment_credentials=False,
            access_key_encrypted=encrypt_text(access_key),
            secret_key_encrypted=encrypt_text(secret_key),
            access_key_hint=access_key[-4:],
            credentials_updated_at=timezone.now(),
        )
        audit.record(
            action=audit.AuditAction.CREDENTIALS_CHANGED,
            actor=actor,
            team=team,
            target=team.name,
            ip=ip,
            details={
                "region": region,
                "endpoint": endpoint,
                "access_key_ends_with": access_key[-4:],
            },
        )
    team.refresh_from_db()


def membership_set(*, team: Team, actor: User, user: User, role: str, ip: str | None) -> bool:
    """Changes the role of a member of the team. False when nothing changed.

    Nobody is added here: a new member joins by accepting an invitation
    (`team_services.invitation_accept`), never without saying yes.
    """
    with transaction.atomic():
        mine = Membership.objects.select_for_update().filter(team=team, user=user)
        membership = mine.order_by("pk").first()  # no join: lock this row only
        if membership is None or membership.role == role:
            return False
        previous = membership.role
        Membership.objects.filter(pk=membership.pk).update(role=role)
        audit.record(
            action=audit.AuditAction.MEMBERSHIP_CHANGED,
            actor=actor,
            team=team,
            target=user.get_username(),
            ip=ip,
            details={"role": role, "previous_role": previous},
        )
    return True


def membership_remove(*, team: Team, actor: User, membership: Membership, ip: str | None) -> None:
    with transaction.atomic():
        membership.delete()
        audit.record(
            action=audit.AuditAction.MEMBERSHIP_CHANGED,
            actor=actor,
            team=team,
            target=membership.user.get_username(),
            ip=ip,
            details={"role": None, "previous_role": membership.role},
        )


def snapshot_delete(*, team: Team, actor: User, snapshot_id: str, ip: str | None) -> str:
    """Deletes a snapshot of the team's account; raises SnapshotNotInAccount or OscApiError."""
    client = api_client(team)
    if not client.read_snapshots(snapshot_ids=[snapshot_id]):
        raise SnapshotNotInAccount(snapshot_id)
    request_id = client.delete_snapshot(snapshot_id=snapshot_id)
    audit.record(
        action=audit.AuditAction.SNAPSHOT_DELETED,
        actor=actor,
        team=team,
        target=snapshot_id,
        ip=ip,
        details={"request_id": request_id},
    )
    return request_id
