from __future__ import annotations

from django.http import HttpRequest

from importer import permissions
from importer.models import Role


def portal(request: HttpRequest) -> dict[str, object]:
    """The current team and role, for the header, the team switcher and the navigation."""
    if not getattr(request, "user", None) or not request.user.is_authenticated:
        return {}
    membership = permissions.current_membership(request)
    role = membership.role if membership else None
    return {
        "team": membership.team if membership else None,
        "role": role,
        "role_name": Role(role).label if role else "",
        "memberships": permissions.memberships(request),
        "can_import": bool(membership and membership.can_import),
        "can_read_history": role in permissions.READERS_OF_HISTORY,
        "is_team_admin": role == Role.ADMIN,
    }
