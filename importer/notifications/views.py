from __future__ import annotations

import uuid

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, QueryDict
from django.shortcuts import redirect
from django.views.decorators.http import require_POST

from importer.audit.addresses import client_ip
from importer.imports.selectors import get_job_for_user
from importer.notifications.models import NotifyKind
from importer.notifications.services import notification_request
from importer.teams.models import Team
from importer.teams.permissions import actor, imports_in
from importer.transfers.selectors import get_copy_for_user, get_export_for_user


def _notify_target(
    request: HttpRequest, kind: str, object_id: uuid.UUID
) -> tuple[Team, str, list[int]]:
    """The job's team, its page and the teams whose importers may ask; 404 when not visible."""
    if kind == NotifyKind.EXPORT:
        export = get_export_for_user(request, object_id)
        return export.team, f"/exports/{export.pk}", [export.team_id]
    if kind == NotifyKind.COPY:
        chain = get_copy_for_user(request, object_id)
        teams = [chain.source_team_id, chain.target_team_id]
        return chain.source_team, f"/copies/{chain.pk}", teams
    if kind == NotifyKind.IMPORT:
        job = get_job_for_user(request, object_id)
        return job.team, f"/imports/{job.pk}", [job.team_id]
    raise Http404("Nothing of that kind.")


def _ticked(data: QueryDict, name: str) -> bool:
    """A checkbox as Django's CheckboxInput reads it: posted, and neither empty nor "false"."""
    return data.get(name, "").lower() not in ("", "false")


@login_required
@require_POST
def notify_request(request: HttpRequest, kind: str, object_id: uuid.UUID) -> HttpResponse:
    team, page, teams = _notify_target(request, kind, object_id)
    if not any(imports_in(request, team_id) for team_id in teams):
        raise PermissionDenied("Auditors only read.")
    by_email = _ticked(request.POST, "by_email")
    notification_request(
        user=actor(request),
        team=team,
        kind=kind,
        object_id=object_id,
        by_email=by_email,
        by_webhook=_ticked(request.POST, "by_webhook"),
        ip=client_ip(request),
    )
    if by_email and not actor(request).email:
        messages.warning(request, "Your account has no email address: no email can be sent.")
    messages.success(request, "You will be told when it ends.")
    return redirect(page)
