from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from importer.audit.addresses import client_ip
from importer.teams import services as teams_services
from importer.teams.forms import CredentialsForm, ImportQueueForm, MemberForm, RoleForm
from importer.teams.models import InvitationState, Membership, Role, Team, TeamInvitation
from importer.teams.permissions import (
    actor,
    current_team,
    forget_memberships,
    require_role,
    required_team,
    switch_team,
)
from importer.teams.services import (
    InvitationNotFound,
    InvitationRefused,
    invitable_user,
    invitation_send,
    membership_remove,
    membership_set,
    team_credentials_set,
)


def _team_memberships(request: HttpRequest) -> QuerySet[Membership]:
    return Membership.objects.filter(team=current_team(request)).select_related("user")


def _team_pending_invitations(request: HttpRequest) -> QuerySet[TeamInvitation]:
    return (
        TeamInvitation.objects.filter(team=current_team(request), state=InvitationState.PENDING)
        .select_related("user", "invited_by")
        .order_by("created_at", "id")
    )


def _invite(request: HttpRequest, form: MemberForm) -> bool:
    """Sends the invitation the valid form asks for; False with the reason on the form."""
    team = required_team(request)
    user = invitable_user(form.cleaned_data["username"])
    if user is None:
        form.add_error(
            "username",
            "No active user has this user name or email address: check the spelling, or have "
            "the account created first.",
        )
        return False
    try:
        invitation_send(
            team=team,
            actor=actor(request),
            user=user,
            role=form.cleaned_data["role"],
            ip=client_ip(request),
        )
    except InvitationRefused as refused:
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
        "team": current_team(request),
    }
    return render(request, "teams/members.html", context, status=422 if form.errors else 200)


@require_role(Role.ADMIN)
@require_POST
def member_role(request: HttpRequest, membership_id: int) -> HttpResponse:
    membership = get_object_or_404(_team_memberships(request), pk=membership_id)
    form = RoleForm(request.POST)
    if form.is_valid():
        membership_set(
            team=membership.team,
            actor=actor(request),
            user=membership.user,
            role=form.cleaned_data["role"],
            ip=client_ip(request),
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
        membership_remove(
            team=membership.team,
            actor=actor(request),
            membership=membership,
            ip=client_ip(request),
        )
        messages.success(request, f"{membership.user.get_username()} left the team.")
    return redirect("team_members")


@require_role(Role.ADMIN)
@require_POST
def invitation_revoke(request: HttpRequest, invitation_id: int) -> HttpResponse:
    try:
        invitation = teams_services.invitation_revoke(
            team=required_team(request),
            actor=actor(request),
            invitation_id=invitation_id,
            ip=client_ip(request),
        )
    except InvitationNotFound:
        raise Http404("No such invitation in this team.") from None
    except InvitationRefused as refused:
        messages.error(request, str(refused))
    else:
        messages.success(request, f"Invitation of {invitation.user.get_username()} revoked.")
    return redirect("team_members")


@login_required
@require_GET
def invitations(request: HttpRequest) -> HttpResponse:
    context = {"invitations": TeamInvitation.objects.open_for(request.user.pk)}
    return render(request, "teams/invitations.html", context)


Answer = TypeVar("Answer", TeamInvitation, Membership)


def _answer(request: HttpRequest, say: Callable[..., Answer], invitation_id: int) -> Answer | None:
    """The user's answer to an invitation of theirs; None, with the reason shown, if refused."""
    try:
        return say(user=actor(request), invitation_id=invitation_id, ip=client_ip(request))
    except InvitationNotFound:
        raise Http404("No such invitation for you.") from None
    except InvitationRefused as refused:
        messages.error(request, str(refused))
        return None


@login_required
@require_POST
def invitation_accept(request: HttpRequest, invitation_id: int) -> HttpResponse:
    membership = _answer(request, teams_services.invitation_accept, invitation_id)
    if membership is None:
        return redirect("invitations")
    forget_memberships(request)
    joined = f"You joined {membership.team.name} as {membership.get_role_display()}."
    if current_team(request) != membership.team:
        joined += " Choose it under Team, in the menu, to work in it."
    messages.success(request, joined)
    return redirect("dashboard")


@login_required
@require_POST
def invitation_decline(request: HttpRequest, invitation_id: int) -> HttpResponse:
    invitation = _answer(request, teams_services.invitation_decline, invitation_id)
    if invitation is not None:
        messages.success(request, f"You declined the invitation to {invitation.team.name}.")
    return redirect("invitations")


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
        "current": current_team(request),
        "invitations": TeamInvitation.objects.open_for(request.user.pk),
    }
    return render(request, "teams/team_choose.html", context)


@login_required
@require_POST
def team_switch(request: HttpRequest) -> HttpResponse:
    raw = request.POST.get("team", "")
    if not raw:
        messages.error(request, "Choose one of your teams in the list.")
        return redirect("team_choose")
    if not raw.isdigit() or not switch_team(request, int(raw)):
        raise Http404("You are not in that team.")
    return redirect(_next_page(request, request.POST.get("next", "")))


@require_role(Role.ADMIN)
@require_http_methods(["GET", "POST"])
def credentials(request: HttpRequest) -> HttpResponse:
    team = required_team(request)
    form = CredentialsForm(
        request.POST or None, initial={"region": team.region, "endpoint": team.endpoint}
    )
    if request.method == "POST" and form.is_valid():
        team_credentials_set(
            team=team, actor=actor(request), ip=client_ip(request), **form.cleaned_data
        )
        messages.success(request, "Credentials saved. The secret key will not be shown again.")
        return redirect("team_credentials")
    context = {"form": form, "team": team, "queue_form": _queue_form(team)}
    return render(request, "teams/credentials.html", context, status=422 if form.errors else 200)


def _queue_form(team: Team, data: Any = None) -> ImportQueueForm:
    return ImportQueueForm(data, initial={"imports_in_flight_limit": team.imports_in_flight_limit})


@require_role(Role.ADMIN)
@require_POST
def import_queue(request: HttpRequest) -> HttpResponse:
    """The team's import queue: how many imports may be in flight at once."""
    team = required_team(request)
    queue_form = _queue_form(team, request.POST)
    if queue_form.is_valid():
        limit = queue_form.cleaned_data["imports_in_flight_limit"]
        teams_services.import_queue_set(
            team=team, actor=actor(request), limit=limit, ip=client_ip(request)
        )
        messages.success(request, f"Up to {limit} imports of the team now run at once.")
        return redirect("team_credentials")
    context = {
        "form": CredentialsForm(initial={"region": team.region, "endpoint": team.endpoint}),
        "team": team,
        "queue_form": queue_form,
    }
    return render(request, "teams/credentials.html", context, status=422)
