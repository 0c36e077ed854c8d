from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from importer.teams.models import READERS_OF_HISTORY, Role
from importer.teams.permissions import (
    can_import,
    copy_targets,
    current_role,
    current_team,
    memberships,
)


def portal(request: HttpRequest) -> dict[str, Any]:
    """The current team and role, for the header, the team switcher and the navigation.

    Lazy: a fragment that shows none of them (the poll) costs no query for them.
    """
    if not getattr(request, "user", None) or not request.user.is_authenticated:
        return {}

    def role() -> str | None:
        return current_role(request)

    def role_name() -> str:
        current = role()
        return Role(current).label if current else ""

    return {
        "team": SimpleLazyObject(lambda: current_team(request)),
        "role_name": SimpleLazyObject(role_name),
        "memberships": SimpleLazyObject(lambda: memberships(request)),
        "can_import": SimpleLazyObject(lambda: can_import(request)),
        # Another team of the user's to copy the current team's snapshots into.
        "can_copy_to_team": SimpleLazyObject(lambda: bool(copy_targets(request))),
        "can_read_history": SimpleLazyObject(lambda: role() in READERS_OF_HISTORY),
        "is_team_admin": SimpleLazyObject(lambda: role() == Role.ADMIN),
    }
