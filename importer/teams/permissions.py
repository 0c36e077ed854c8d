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

from importer.teams.models import IMPORTERS, Membership, Team
from importer.teams.services import current_team_set

NO_TEAM_MESSAGE = (
    "You are in no team yet, so there is nothing to show here: ask a team admin to invite you, "
    "then accept the invitation on the Invitations page."
)


CHOOSE_TEAM_MESSAGE = (
    "You are in several teams: choose the one to work in (Team, in the menu), then try again."
)


ROLE_REFUSED_MESSAGE = "Your role in this team does not allow this."


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


def copy_targets(request: HttpRequest, source: Team | None = None) -> list[Team]:
    """The teams the user may import into, other than `source` (by default the current team):
    where a copy of one of its snapshots can go. Empty: "Copy to another team" is not offered."""
    source = source or current_team(request)
    return [
        membership.team
        for membership in memberships(request)
        if membership.team_id != getattr(source, "pk", None) and membership.can_import
    ]


def current_team(request: HttpRequest) -> Team | None:
    membership = current_membership(request)
    return membership.team if membership else None


def required_team(request: HttpRequest) -> Team:
    """The current team of a view behind `require_role`, which found the user's membership."""
    team = current_team(request)
    assert team is not None  # noqa: S101 - require_role answered 403 without one
    return team


def current_role(request: HttpRequest) -> str | None:
    membership = current_membership(request)
    return membership.role if membership else None


def switch_team(request: HttpRequest, team_id: int) -> bool:
    """Remembers `team_id` as the user's current team (for every session). False if not theirs."""
    user = request.user
    if not isinstance(user, User) or not current_team_set(user=user, team_id=team_id):
        return False
    forget_memberships(request)
    return True


def forget_memberships(request: HttpRequest) -> None:
    """The user's memberships changed during this request: read them again when next asked."""
    request._portal_memberships = None  # type: ignore[attr-defined]


def choose_team_url(request: HttpRequest) -> str:
    """The page that asks which team to work in, then comes back here (for a GET)."""
    url = reverse("team_choose")
    if request.method == "GET" and request.get_full_path() != reverse("dashboard"):
        url += "?" + urlencode({"next": request.get_full_path()})
    return url


def can_import(request: HttpRequest) -> bool:
    """Operators and team admins of the current team import; auditors only read."""
    membership = current_membership(request)
    return bool(membership and membership.can_import)


def require_can_import(request: HttpRequest) -> None:
    """403 unless the user may import into the current team.

    Never a redirect to the team choice: the import dialog's posts need an answer in place.
    """
    if in_no_team(request):
        raise PermissionDenied(NO_TEAM_MESSAGE)
    if must_choose_team(request):
        raise PermissionDenied(CHOOSE_TEAM_MESSAGE)
    if not can_import(request):
        raise PermissionDenied("You may not import snapshots.")


def team_ids(request: HttpRequest) -> list[int]:
    """Every team the user is a member of, whatever their role."""
    return [membership.team_id for membership in memberships(request)]


def role_in_team(request: HttpRequest, team_id: int) -> str | None:
    for membership in memberships(request):
        if membership.team_id == team_id:
            return membership.role
    return None


def imports_in(request: HttpRequest, team_id: int) -> bool:
    """May the user change things in this team (any of theirs, not only the current one)."""
    return role_in_team(request, team_id) in IMPORTERS


def require_importer_in(request: HttpRequest, team_id: int) -> None:
    if not imports_in(request, team_id):
        raise PermissionDenied(ROLE_REFUSED_MESSAGE)


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
                raise PermissionDenied(ROLE_REFUSED_MESSAGE)
            return view(request, *args, **kwargs)

        return cast(View, wrapped)

    return decorator


def actor(request: HttpRequest) -> User:
    assert isinstance(request.user, User)  # noqa: S101 - every caller is behind a login
    return request.user
