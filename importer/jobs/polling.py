"""What every periodic poll of the API's long work shares: one team at a time, each isolated.

A team whose account is slow or broken must neither stop the others nor go first every time;
whatever goes wrong is logged, and noted on the team's jobs when someone there can act on it.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any, TypeVar

from celery.exceptions import SoftTimeLimitExceeded

from importer.jobs.models import IN_PROGRESS, SubmittedJob
from importer.outscale.errors import OscApiError

logger = logging.getLogger(__name__)

Row = TypeVar("Row")
Result = TypeVar("Result")

# No new page after this long for one team: a slow account must leave time for the others.
POLL_TEAM_BUDGET_SECONDS = 30.0
# The API may not list a resource for a moment after creating it.
VANISHED_GRACE = timedelta(minutes=2)
# What the jobs' pages say when their team's poll fails on something unforeseen.
POLL_FAILED_UNEXPECTEDLY = (
    "Following progress failed on an unexpected error (logged for the operators); "
    "the portal keeps trying."
)


def by_team(rows: Iterable[Row]) -> list[list[Row]]:
    """The rows grouped by team, the teams in random order: a team whose API is slow must not
    always go first and use up the task's time."""
    teams: dict[Any, list[Row]] = {}
    for row in rows:
        teams.setdefault(getattr(row, "team_id"), []).append(row)  # noqa: B009
    groups = list(teams.values())
    random.shuffle(groups)
    return groups


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


def poll_failed(
    rows: list[Row], error: Exception, *, what: str, note: Callable[[list[Row], str], None]
) -> None:
    """The API could not say: never give up on a job for that, the next cycle asks again; a
    problem that will not pass by itself is noted on the rows."""
    logger.warning("Polling %d %s failed, will try again: %s", len(rows), what, error)
    if not (isinstance(error, OscApiError) and error.transient):
        note(rows, poll_problem(error))


def poll_isolated(
    rows: list[Row],
    poll: Callable[[], Result],
    *,
    what: str,
    failed: Result,
    note: Callable[[list[Row], str], None],
) -> Result:
    """`poll()` for one team's rows; an unforeseen error is logged, noted on the rows, and
    answered with `failed`, so that the other teams are polled all the same."""
    try:
        return poll()
    except SoftTimeLimitExceeded:
        raise  # the task's time is up: stop here, the next cycle starts over
    except Exception:
        logger.exception(
            "Polling %d %s of team %s failed; the other teams go on",
            len(rows),
            what,
            getattr(rows[0], "team").name,  # noqa: B009
        )
        note(rows, POLL_FAILED_UNEXPECTEDLY)
        return failed


def fail_vanished(
    job: SubmittedJob,
    resource_id: str,
    *,
    now: datetime,
    code: str,
    type: str,  # noqa: A002 - the API's own word
) -> bool:
    """A job whose resource the API no longer lists: failed once the API has had the time to
    list it (it may lag behind a creation), left as it is before."""
    if not (job.submitted_at and job.submitted_at < now - VANISHED_GRACE):
        return False
    return job.mark_failed(
        code=code,
        type=type,
        details=f"The API no longer lists {resource_id}.",
        from_states=(IN_PROGRESS,),
    )
