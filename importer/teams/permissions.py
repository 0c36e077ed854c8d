from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar, cast
from urllib.parse import urlencode

from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django.http.response import HttpResponseBase
from django.shortcuts import redirect
from django.urls import reverse

from importer.teams.models import Membership, Role, Team
from importer.teams.services import current_team_set

NO_TEAM_MESSAGE = (
    "You are in no team yet, so there is nothing to show here: ask a team admin to invite you, "
    "then accept the invitation on the Invitations page."
)


CHOOSE_TEAM_MESSAGE = (
    "You are in several teams: choose the one to work in (Team, in the menu), then try again."
)


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
    """The membership of the team the user works in: the one they chose, or their only one.

    None for a user in no team, and for a user in several teams who has not chosen yet: they
    are asked (`must_choose_team`), never given a team picked for them.
    """
    mine = memberships(request)
    for membership in mine:
        if membership.is_current:
            return membership
    return mine[0] if len(mine) == 1 else None


def must_choose_team(request: HttpRequest) -> bool:
    """In several teams and none chosen: every team page asks which one first."""
    return current_membership(request) is None and len(memberships(request)) > 1


def in_no_team(request: HttpRequest) -> bool:
    return not memberships(request)


def current_team(request: HttpRequest) -> Team | None:
    membership = current_membership(request)
    return membership.team if membership else None


def current_role(request: HttpRequest) -> str | None:
    membership = current_membership(request)
    return membership.role if membership else None


def switch_team(request: HttpRequest, team_id: int) -> bool:
    """Remembers `team_id` as the user's current team (for every session). False if not theirs."""
    user = request.user
    if not isinstance(user, User) or not current_team_set(user=user, team_id=team_id):
        return False
    request._portal_memberships = None  # type: ignore[attr-defined]
    return True


def choose_team_url(request: HttpRequest) -> str:
    """The page that asks which team to work in, then comes back here (for a GET)."""
    url = reverse("team_choose")
    if request.method == "GET" and request.get_full_path() != reverse("dashboard"):
        url += "?" + urlencode({"next": request.get_full_path()})
    return url


def can_import(request: HttpRequest) -> bool:
    membership = current_membership(request)
    return bool(membership and membership.can_import)


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
            if must_choose_team(request):
                if request.method != "GET":
                    raise PermissionDenied(CHOOSE_TEAM_MESSAGE)
                return redirect(choose_team_url(request))
            if in_no_team(request):
                raise PermissionDenied(NO_TEAM_MESSAGE)
            if current_role(request) not in roles:
                raise PermissionDenied("Your role in this team does not allow this.")
            return view(request, *args, **kwargs)

        return cast(View, wrapped)

    return decorator


IMPORTERS = (Role.OPERATOR, Role.ADMIN)


READERS_OF_HISTORY = (Role.ADMIN, Role.AUDITOR)


EVERY_ROLE = (Role.OPERATOR, Role.ADMIN, Role.AUDITOR)


def actor(request: HttpRequest) -> User:
    assert isinstance(request.user, User)  # noqa: S101 - every caller is behind a login
    return request.user
