"""Who is in a team and how they got there: the members page (invitations, roles, removal),
the invited user's answer, and the team a user chooses to work in."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from importer import audit, permissions, services, team_services
from importer.forms import MemberForm, RoleForm
from importer.invitations import InvitationState, TeamInvitation
from importer.models import Membership, Role
from importer.permissions import require_role


def _actor(request: HttpRequest) -> User:
    assert isinstance(request.user, User)  # noqa: S101 - every caller is behind a login
    return request.user


# --- The members page -----------------------------------------------------------------------


def _team_memberships(request: HttpRequest) -> QuerySet[Membership]:
    return Membership.objects.filter(team=permissions.current_team(request)).select_related("user")


def _team_pending_invitations(request: HttpRequest) -> QuerySet[TeamInvitation]:
    return (
        TeamInvitation.objects.filter(
            team=permissions.current_team(request), state=InvitationState.PENDING
        )
        .select_related("user", "invited_by")
        .order_by("created_at", "id")
    )


def _invite(request: HttpRequest, form: MemberForm) -> bool:
    """Sends the invitation the valid form asks for; False with the reason on the form."""
    team = permissions.current_team(request)
    assert team is not None  # noqa: S101 - require_role found a membership
    user = team_services.invitable_user(form.cleaned_data["username"])
    if user is None:
        form.add_error(
            "username",
            "No active user has this user name or email address: check the spelling, or have "
            "the account created first.",
        )
        return False
    try:
        team_services.invitation_send(
            team=team,
            actor=_actor(request),
            user=user,
            role=form.cleaned_data["role"],
            ip=audit.client_ip(request),
        )
    except team_services.InvitationRefused as refused:
        form.add_error("username", str(refused))
        return False
    messages.success(
        request,
        f"{user.get_username()} is invited as {Role(form.cleaned_data['role']).label}; they "
        "join the team once they accept.",
    )
    return True


@require_role(Role.ADMIN)
@require_http_methods(["GET", "POST"])
def members(request: HttpRequest) -> HttpResponse:
    form = MemberForm(request.POST or None)
    if request.method == "POST" and form.is_valid() and _invite(request, form):
        return redirect("team_members")
    context = {
        "form": form,
        "memberships": _team_memberships(request),
        "invitations": _team_pending_invitations(request),
        "team": permissions.current_team(request),
    }
    return render(request, "importer/members.html", context, status=422 if form.errors else 200)


@require_role(Role.ADMIN)
@require_POST
def member_role(request: HttpRequest, membership_id: int) -> HttpResponse:
    membership = get_object_or_404(_team_memberships(request), pk=membership_id)
    form = RoleForm(request.POST)
    if form.is_valid():
        services.membership_set(
            team=membership.team,
            actor=_actor(request),
            user=membership.user,
            role=form.cleaned_data["role"],
            ip=audit.client_ip(request),
        )
        messages.success(request, f"Role of {membership.user.get_username()} changed.")
    else:
        messages.error(request, "Choose one of the roles offered.")
    return redirect("team_members")


@require_role(Role.ADMIN)
@require_POST
def member_remove(request: HttpRequest, membership_id: int) -> HttpResponse:
    membership = get_object_or_404(_team_memberships(request), pk=membership_id)
    if membership.user_id == request.user.pk:
        messages.error(request, "You cannot remove yourself; ask another team admin.")
    else:
        services.membership_remove(
            team=membership.team,
            actor=_actor(request),
            membership=membership,
            ip=audit.client_ip(request),
        )
        messages.success(request, f"{membership.user.get_username()} left the team.")
    return redirect("team_members")


@require_role(Role.ADMIN)
@require_POST
def invitation_revoke(request: HttpRequest, invitation_id: int) -> HttpResponse:
    team = permissions.current_team(request)
    assert team is not None  # noqa: S101 - require_role found a membership
    try:
        invitation = team_services.invitation_revoke(
            team=team,
            actor=_actor(request),
            invitation_id=invitation_id,
            ip=audit.client_ip(request),
        )
    except team_services.InvitationNotFound:
        raise Http404("No such invitation in this team.") from None
    except team_services.InvitationRefused as refused:
        messages.error(request, str(refused))
    else:
        messages.success(request, f"Invitation of {invitation.user.get_username()} revoked.")
    return redirect("team_members")


# --- The invited user's answer --------------------------------------------------------------


@login_required
@require_GET
def invitations(request: HttpRequest) -> HttpResponse:
    context = {"invitations": TeamInvitation.objects.open_for(request.user.pk)}
    return render(request, "importer/invitations.html", context)


@login_required
@require_POST
def invitation_accept(request: HttpRequest, invitation_id: int) -> HttpResponse:
    try:
        membership = team_services.invitation_accept(
            user=_actor(request), invitation_id=invitation_id, ip=audit.client_ip(request)
        )
    except team_services.InvitationNotFound:
        raise Http404("No such invitation for you.") from None
    except team_services.InvitationRefused as refused:
        messages.error(request, str(refused))
        return redirect("invitations")
    # The memberships read for this request changed: read them again.
    request._portal_memberships = None  # type: ignore[attr-defined]
    joined = f"You joined {membership.team.name} as {membership.get_role_display()}."
    if permissions.current_team(request) != membership.team:
        joined += " Choose it under Team, in the menu, to work in it."
    messages.success(request, joined)
    return redirect("dashboard")


@login_required
@require_POST
def invitation_decline(request: HttpRequest, invitation_id: int) -> HttpResponse:
    try:
        invitation = team_services.invitation_decline(
            user=_actor(request), invitation_id=invitation_id, ip=audit.client_ip(request)
        )
    except team_services.InvitationNotFound:
        raise Http404("No such invitation for you.") from None
    except team_services.InvitationRefused as refused:
        messages.error(request, str(refused))
    else:
        messages.success(request, f"You declined the invitation to {invitation.team.name}.")
    return redirect("invitations")


# --- The current team -----------------------------------------------------------------------


def _next_page(request: HttpRequest, raw: str) -> str:
    """Where to go after choosing: a page of this site only, else the dashboard."""
    if raw and url_has_allowed_host_and_scheme(
        raw, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return raw
    return "/"


@login_required
@require_GET
def team_choose(request: HttpRequest) -> HttpResponse:
    """Asks a user in several teams which one to work in; nothing is chosen for them."""
    context = {
        "next": _next_page(request, request.GET.get("next", "")),
        "current": permissions.current_team(request),
        "invitations": TeamInvitation.objects.open_for(request.user.pk),
    }
    return render(request, "importer/team_choose.html", context)


@login_required
@require_POST
def team_switch(request: HttpRequest) -> HttpResponse:
    raw = request.POST.get("team", "")
    if not raw:
        messages.error(request, "Choose one of your teams in the list.")
        return redirect("team_choose")
    if not raw.isdigit() or not permissions.switch_team(request, int(raw)):
        raise Http404("You are not in that team.")
    return redirect(_next_page(request, request.POST.get("next", "")))
