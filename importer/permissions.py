"""Who may see and do what: a user's team memberships and roles, and the current team.

Every view reads jobs and teams through these functions, so that another team's job or
snapshot answers 404 and an auditor's state-changing request answers 403.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar, cast

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest
from django.http.response import HttpResponseBase

from importer.models import ImportJob, ImportJobQuerySet, Membership, Role, Team

SESSION_TEAM_KEY = "current_team_id"
View = TypeVar("View", bound=Callable[..., HttpResponseBase])


def memberships(request: HttpRequest) -> list[Membership]:
    """The user's memberships, read once per request."""
    cached: list[Membership] | None = getattr(request, "_portal_memberships", None)
    if cached is None:
        if not request.user.is_authenticated:
            cached = []
        else:
            cached = list(Membership.objects.filter(user=request.user).select_related("team"))
        request._portal_memberships = cached  # type: ignore[attr-defined]
    return cached


def current_membership(request: HttpRequest) -> Membership | None:
    """The membership of the team the user is looking at: chosen in the session, else the first."""
    mine = memberships(request)
    chosen = request.session.get(SESSION_TEAM_KEY)
    for membership in mine:
        if membership.team_id == chosen:
            return membership
    return mine[0] if mine else None


def current_team(request: HttpRequest) -> Team | None:
    membership = current_membership(request)
    return membership.team if membership else None


def current_role(request: HttpRequest) -> str | None:
    membership = current_membership(request)
    return membership.role if membership else None


def switch_team(request: HttpRequest, team_id: int) -> bool:
    if any(membership.team_id == team_id for membership in memberships(request)):
        request.session[SESSION_TEAM_KEY] = team_id
        return True
    return False


def can_import(request: HttpRequest) -> bool:
    membership = current_membership(request)
    return bool(membership and membership.can_import)


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


def role_in_team(request: HttpRequest, team_id: int) -> str | None:
    for membership in memberships(request):
        if membership.team_id == team_id:
            return membership.role
    return None


def require_role(*roles: str) -> Callable[[View], View]:
    """The view needs a login and one of `roles` in the current team; otherwise 403."""

    def decorator(view: View) -> View:
        @login_required
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            if current_role(request) not in roles:
                raise PermissionDenied("Your role in this team does not allow this.")
            return view(request, *args, **kwargs)

        return cast(View, wrapped)

    return decorator


IMPORTERS = (Role.OPERATOR, Role.ADMIN)
READERS_OF_HISTORY = (Role.ADMIN, Role.AUDITOR)
EVERY_ROLE = (Role.OPERATOR, Role.ADMIN, Role.AUDITOR)
