from __future__ import annotations

import hashlib
import logging
import threading
import uuid
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.cache import cache as django_cache
from django.db.models import Q
from django.http import Http404, HttpRequest

from importer.core.pages import Keyset, filtered
from importer.imports.models import ImportJob, ImportJobQuerySet
from importer.outscale import accounts
from importer.outscale.client import OscClient
from importer.outscale.errors import OscApiError
from importer.outscale.paginator import Listing, read_snapshots_bounded
from importer.outscale.resources import Snapshot
from importer.teams.models import Team
from importer.teams.permissions import current_team

# The dashboard waits this long for the API, then shows the local jobs with a banner.
DASHBOARD_API_DEADLINE_SECONDS = 4.0

logger = logging.getLogger(__name__)


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
        client = accounts.api_client(team)
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


def jobs_for_user(request: HttpRequest) -> ImportJobQuerySet:
    """Jobs of every team the user belongs to (a join: no query of its own, for the poll)."""
    if not request.user.is_authenticated:
        return ImportJob.objects.none()
    return ImportJob.objects.filter(team__memberships__user_id=request.user.pk)


def jobs_of_current_team(request: HttpRequest) -> ImportJobQuerySet:
    team = current_team(request)
    return ImportJob.objects.filter(team=team) if team else ImportJob.objects.none()


def get_job_for_user(request: HttpRequest, job_id: uuid.UUID | str) -> ImportJob:
    job = jobs_for_user(request).select_related("submitted_by", "team").filter(pk=job_id).first()
    if job is None:
        raise Http404("No such import in your teams.")
    return job


# History's orders, by the sort filter's value: each ends on the id, so ties keep one order.
HISTORY_SORTS = {
    "-created": ("-created_at", "-id"),
    "created": ("created_at", "id"),
    "name": ("name", "id"),
    "-name": ("-name", "-id"),
    "-size": ("-snapshot_size", "-id"),
    "size": ("snapshot_size", "id"),
}


DEFAULT_HISTORY_SORT = "-created"


def history_keyset(sort: str) -> Keyset:
    """The history's order for the sort filter's value (the default for any other), as pages
    walk it: the `after` and `before` cursors hold a row's key in this order."""
    return Keyset(ImportJob, HISTORY_SORTS.get(sort, HISTORY_SORTS[DEFAULT_HISTORY_SORT]))


# The history filter form's exact fields, and what each looks for (its search is below).
HISTORY_FILTERS = {"user": "submitted_by__username", "state": "state"}


def history_jobs(
    request: HttpRequest, data: Mapping[str, Any] | None, *, batch_id: uuid.UUID | None = None
) -> ImportJobQuerySet:
    """The current team's imports as the history's filters ask; `batch_id` keeps one batch's
    (by its id: `imports` knows nothing of batches but the column)."""
    jobs = jobs_of_current_team(request).select_related("submitted_by", "batch")
    if batch_id is not None:
        jobs = jobs.filter(batch_id=batch_id)
    if data is None:  # no filter, or one that is not valid: the whole history, newest first
        return jobs.order_by(*HISTORY_SORTS[DEFAULT_HISTORY_SORT])
    jobs = filtered(jobs, data, HISTORY_FILTERS, day_field="created_at")
    if data["q"]:
        text = data["q"]
        jobs = jobs.filter(
            Q(name__icontains=text)
            | Q(snapshot_id__icontains=text)
            | Q(description__icontains=text)
            | Q(url_bucket__icontains=text)
        )
    return jobs.order_by(*history_keyset(data["sort"]).fields)
