from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HTMX_STOP_POLLING

from importer.audit.addresses import client_ip
from importer.notifications.models import NotificationRequest, NotifyKind, TeamWebhook
from importer.notifications.services import webhook_set
from importer.outscale.errors import OscApiError
from importer.teams.models import Role, Team
from importer.teams.permissions import (
    IMPORTERS,
    actor,
    current_team,
    memberships,
    require_role,
    role_in_team,
)
from importer.transfers import services
from importer.transfers.copies import copy_create
from importer.transfers.forms import (
    _SNAPSHOT_ID,
    CopyForm,
    ExportForm,
    NotifyForm,
    ShareForm,
    TransferSettingsForm,
)
from importer.transfers.models import CopyChain, ExportTask
from importer.transfers.services import ExportNotShareable, export_create, share_create

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


MAX_POLLED = 50


def version(obj: ExportTask | CopyChain) -> int:
    return (obj.updated_at - EPOCH) // timedelta(microseconds=1)


def _team_ids(request: HttpRequest) -> list[int]:
    return [membership.team_id for membership in memberships(request)]


def _get_export_for_user(request: HttpRequest, export_id: uuid.UUID) -> ExportTask:
    export = (
        ExportTask.objects.select_related("team", "requested_by")
        .filter(pk=export_id, team_id__in=_team_ids(request))
        .first()
    )
    if export is None:
        raise Http404("No such export in your teams.")
    return export


def _get_copy_for_user(request: HttpRequest, copy_id: uuid.UUID) -> CopyChain:
    teams = _team_ids(request)
    chain = (
        CopyChain.objects.select_related(
            "source_team", "target_team", "export", "import_job", "requested_by", "share"
        )
        .filter(pk=copy_id)
        .first()
    )
    if chain is None or (chain.source_team_id not in teams and chain.target_team_id not in teams):
        raise Http404("No such copy in your teams.")
    return chain


def _require_importer_in(request: HttpRequest, team_id: int) -> None:
    if role_in_team(request, team_id) not in IMPORTERS:
        raise PermissionDenied("Your role in this team does not allow this.")


def _check_snapshot_id(snapshot_id: str) -> None:
    if not _SNAPSHOT_ID.match(snapshot_id):
        raise Http404("Not a snapshot ID.")


@require_role(*IMPORTERS)
@require_http_methods(["GET", "POST"])
def export_new(request: HttpRequest, snapshot_id: str) -> HttpResponse:
    _check_snapshot_id(snapshot_id)
    team = current_team(request)
    assert team is not None  # noqa: S101 - require_role found a membership
    form = ExportForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        export = export_create(
            team=team,
            user=actor(request),
            snapshot_id=snapshot_id,
            bucket=data["bucket"],
            prefix=data["osu_prefix"],
            disk_image_format=data["disk_image_format"],
            ip=client_ip(request),
        )
        return redirect("export_detail", export_id=export.pk)
    context = {"form": form, "snapshot_id": snapshot_id, "team": team}
    return render(request, "transfers/export_new.html", context, status=422 if form.errors else 200)


def _notify_context(request: HttpRequest, kind: str, object_id: uuid.UUID) -> dict[str, Any]:
    asked = NotificationRequest.objects.filter(
        user_id=actor(request).pk, kind=kind, object_id=object_id
    ).first()
    return {"notify_form": NotifyForm(), "notify_kind": kind, "notification": asked}


def _annotate(request: HttpRequest, exports: list[ExportTask]) -> None:
    """What each summary shows besides the row: may the user change it, its latest shares."""
    for export in exports:
        role = role_in_team(request, export.team_id)
        export.user_can_change = role in IMPORTERS  # type: ignore[attr-defined]
        export.recent_shares = list(  # type: ignore[attr-defined]
            export.shares.select_related("created_by")[:20]
        )


@login_required
@require_GET
def export_detail(request: HttpRequest, export_id: uuid.UUID) -> HttpResponse:
    export = _get_export_for_user(request, export_id)
    _annotate(request, [export])
    context = {
        "export": export,
        "share_form": ShareForm(),
        "can_change": export.user_can_change,  # type: ignore[attr-defined]
        **_notify_context(request, NotifyKind.EXPORT, export.pk),
    }
    return render(request, "transfers/export_detail.html", context)


@login_required
@require_POST
def export_cancel(request: HttpRequest, export_id: uuid.UUID) -> HttpResponse:
    export = _get_export_for_user(request, export_id)
    _require_importer_in(request, export.team_id)
    if not export.can_cancel:
        messages.error(request, "This export has already ended.")
        return redirect("export_detail", export_id=export.pk)
    try:
        services.export_cancel(export=export, user=actor(request), ip=client_ip(request))
    except (OscApiError, ValueError) as error:
        messages.error(request, f"The API did not cancel the export: {error}")
    else:
        messages.success(request, "The export is cancelled.")
    return redirect("export_detail", export_id=export.pk)


@login_required
@require_POST
@never_cache
def export_share(request: HttpRequest, export_id: uuid.UUID) -> HttpResponse:
    """Makes a pre-signed URL and shows it in this answer only: it is stored nowhere."""
    export = _get_export_for_user(request, export_id)
    _require_importer_in(request, export.team_id)
    form = ShareForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose how long the URL stays valid (at most 7 days).")
        return redirect("export_detail", export_id=export.pk)
    try:
        share, url = share_create(
            export=export,
            user=actor(request),
            seconds=form.cleaned_data["lifetime"],
            ip=client_ip(request),
        )
    except ExportNotShareable as error:
        messages.error(request, str(error))
        return redirect("export_detail", export_id=export.pk)
    response = render(
        request, "transfers/share_created.html", {"export": export, "share": share, "url": url}
    )
    response["Cache-Control"] = "no-store"
    return response


def _copy_targets(request: HttpRequest, source: Team) -> list[Team]:
    return [
        membership.team
        for membership in memberships(request)
        if membership.team_id != source.pk and membership.role in IMPORTERS
    ]


@require_role(*IMPORTERS)
@require_http_methods(["GET", "POST"])
def copy_new(request: HttpRequest, snapshot_id: str) -> HttpResponse:
    _check_snapshot_id(snapshot_id)
    source = current_team(request)
    assert source is not None  # noqa: S101 - require_role found a membership
    targets = _copy_targets(request, source)
    form = CopyForm(request.POST or None, teams=targets)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        target = next(team for team in targets if team.pk == data["target_team"])
        chain = copy_create(
            source_team=source,
            target_team=target,
            user=actor(request),
            snapshot_id=snapshot_id,
            name=data["name"],
            description=data["description"],
            bucket=data["bucket"],
            prefix=data["osu_prefix"],
            disk_image_format=data["disk_image_format"],
            ip=client_ip(request),
        )
        return redirect("copy_detail", copy_id=chain.pk)
    context = {"form": form, "snapshot_id": snapshot_id, "team": source, "targets": targets}
    return render(request, "transfers/copy_new.html", context, status=422 if form.errors else 200)


@login_required
@require_GET
def copy_detail(request: HttpRequest, copy_id: uuid.UUID) -> HttpResponse:
    chain = _get_copy_for_user(request, copy_id)
    context = {"chain": chain, **_notify_context(request, NotifyKind.COPY, chain.pk)}
    return render(request, "transfers/copy_detail.html", context)


def _versions(query: QueryDict, name: str) -> dict[uuid.UUID, int]:
    found: dict[uuid.UUID, int] = {}
    for raw in query.getlist(name)[:MAX_POLLED]:
        object_id, _, number = raw.partition(".")
        try:
            found[uuid.UUID(object_id)] = int(number)
        except ValueError:
            continue
    return found


@login_required
@require_GET
@never_cache
def transfers_poll(request: HttpRequest) -> HttpResponse:
    """Changed export (`e=`) and copy (`c=`) summaries as out-of-band swaps; 204 or 286."""
    teams = _team_ids(request)
    export_versions, copy_versions = _versions(request.GET, "e"), _versions(request.GET, "c")
    exports = list(ExportTask.objects.filter(pk__in=export_versions, team_id__in=teams))
    chains = [
        chain
        for chain in CopyChain.objects.select_related(
            "source_team", "target_team", "export", "import_job", "share"
        ).filter(pk__in=copy_versions)
        if chain.source_team_id in teams or chain.target_team_id in teams
    ]
    changed_exports = [e for e in exports if version(e) != export_versions[e.pk]]
    changed_chains = [c for c in chains if version(c) != copy_versions[c.pk]]
    live = any(not e.is_terminal for e in exports) or any(not c.is_terminal for c in chains)
    if not changed_exports and not changed_chains and live:
        return HttpResponse(status=204)
    _annotate(request, changed_exports)
    html = render_to_string(
        "transfers/poll.html",
        {"exports": changed_exports, "chains": changed_chains, "share_form": ShareForm()},
        # The request: forms swapped in (sharing a completed export) need the CSRF token.
        request=request,
    )
    return HttpResponse(html, status=200 if live else HTMX_STOP_POLLING)


@require_role(Role.ADMIN)
@require_http_methods(["GET", "POST"])
def transfer_settings(request: HttpRequest) -> HttpResponse:
    team = current_team(request)
    assert team is not None  # noqa: S101 - require_role found a membership
    webhook = TeamWebhook.objects.filter(team=team).first()
    form = TransferSettingsForm(request.POST or None, initial={"oos_endpoint": team.oos_endpoint})
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        if data["webhook_url"] and not data["webhook_secret"] and webhook is None:
            form.add_error("webhook_secret", "A new webhook needs a secret.")
        else:
            webhook_set(
                team=team,
                user=actor(request),
                url=data["webhook_url"],
                secret=data["webhook_secret"],
                oos_endpoint=data["oos_endpoint"],
                remove=data["remove_webhook"],
                ip=client_ip(request),
            )
            messages.success(request, "Transfer settings saved.")
            return redirect("transfer_settings")
    context = {"form": form, "team": team, "webhook": webhook}
    return render(
        request, "transfers/transfer_settings.html", context, status=422 if form.errors else 200
    )
