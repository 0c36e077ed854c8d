"""What a snapshot's page shows: the snapshot as the API says it now, and what was made from it."""

from __future__ import annotations

import uuid

from django.http import Http404, HttpRequest

from importer.lifecycle.models import DerivedJob, DerivedJobQuerySet
from importer.outscale.resources import SNAPSHOT_ID
from importer.teams.models import Team
from importer.teams.permissions import required_team

# The "Made from this snapshot" list shows the newest; older ones stay in the audit log.
MADE_LIST_LENGTH = 50


def team_of_snapshot(request: HttpRequest, snapshot_id: str) -> Team:
    """The current team, whose account the snapshot must be in; 404 for what is no snapshot ID.

    Whether the account has it is the API's to say (the services raise SnapshotNotInAccount).
    """
    if not SNAPSHOT_ID.match(snapshot_id):
        raise Http404("Not a snapshot ID.")
    return required_team(request)


def made_from(team: Team, snapshot_id: str) -> DerivedJobQuerySet:
    """The volumes, OMIs and copies asked of this snapshot in the team, newest first."""
    return DerivedJob.objects.made_from(team, snapshot_id).order_by("-created_at")


def made_list(team: Team, snapshot_id: str) -> list[DerivedJob]:
    return list(made_from(team, snapshot_id)[:MADE_LIST_LENGTH])


def any_in_flight(jobs: list[DerivedJob]) -> bool:
    return any(not job.is_terminal for job in jobs)


def get_derived_for_team(team: Team, job_id: uuid.UUID) -> DerivedJob:
    """A volume, OMI or copy job of the current team; another team's id answers 404."""
    job = (
        DerivedJob.objects.filter(team=team, pk=job_id)
        .select_related("team", "requested_by")
        .first()
    )
    if job is None:
        raise Http404("No such volume, OMI or copy in this team.")
    return job
