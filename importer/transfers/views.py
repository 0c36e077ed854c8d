from __future__ import annotations

import uuid
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HTMX_STOP_POLLING

from importer.audit.addresses import client_ip
from importer.core.pages import polled_versions, version
from importer.notifications.models import NotificationRequest, NotifyKind, TeamWebhook
from importer.notifications.services import webhook_set
from importer.outscale.errors import OscApiError
from importer.outscale.resources import SNAPSHOT_ID
from importer.teams.models import IMPORTERS, Role, Team
from importer.teams.permissions import (
    actor,
    copy_targets,
    imports_in,
    require_importer_in,
    require_role,
    required_team,
)
from importer.teams.services import oos_endpoint_set
from importer.transfers import services
from importer.transfers.copies import copy_create
from importer.transfers.forms import (
    CopyForm,
    ExportForm,
    ShareForm,
    TransferSettingsForm,
)
from importer.transfers.models import ExportTask
from importer.transfers.selectors import (
    copies_for_user,
    exports_for_user,
    get_copy_for_user,
    get_export_for_user,
)
from importer.transfers.services import ExportNotShareable, export_create, share_create

# A poll names at most this many exports, and as many copies.
MAX_POLLED = 50


def _source_team(request: HttpRequest, snapshot_id: str) -> Team:
    """The current team, whose snapshot a new export or copy starts from."""
    if not SNAPSHOT_ID.match(snapshot_id):
        raise Http404("Not a snapshot ID.")
    return required_team(request)


def _export_to_change(request: HttpRequest, export_id: uuid.UUID) -> ExportTask:
    """The export, when the user may act on it in its team (not as an auditor)."""
    export = get_export_for_user(request, export_id)
    require_importer_in(request, export.team_id)
    return export


@require_role(*IMPORTERS)
@require_http_methods(["GET", "POST"])
def export_new(request: HttpRequest, snapshot_id: str) -> HttpResponse:
    team = _source_team(request, snapshot_id)
    form = ExportForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        export = export_create(
            team=team,
            user=actor(request),
            snapshot_id=snapshot_id,
            ip=client_ip(request),
            destination=form.destination,
        )
        return redirect("export_detail", export_id=export.pk)
    context = {"form": form, "snapshot_id": snapshot_id, "team": team}
    return render(request, "transfers/export_new.html", context, status=422 if form.errors else 200)


def _notify_context(request: HttpRequest, kind: str, object_id: uuid.UUID) -> dict[str, Any]:
    asked = NotificationRequest.objects.filter(
        user_id=actor(request).pk, kind=kind, object_id=object_id
    ).first()
    return {"notify_kind": kind, "notification": asked}


def _annotate(request: HttpRequest, exports: list[ExportTask]) -> None:
    """What each summary shows besides the row: may the user change it, its latest shares."""
    for export in exports:
        export.user_can_change = imports_in(request, export.team_id)  # type: ignore[attr-defined]
        export.recent_shares = list(  # type: ignore[attr-defined]
            export.shares.select_related("created_by")[:20]
        )


@login_required
@require_GET
def export_detail(request: HttpRequest, export_id: uuid.UUID) -> HttpResponse:
    export = get_export_for_user(request, export_id)
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
    export = _export_to_change(request, export_id)
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
    export = _export_to_change(request, export_id)
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


@require_role(*IMPORTERS)
@require_http_methods(["GET", "POST"])
def copy_new(request: HttpRequest, snapshot_id: str) -> HttpResponse:
    source = _source_team(request, snapshot_id)
    targets = copy_targets(request, source)
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
            ip=client_ip(request),
            destination=form.destination,
        )
        return redirect("copy_detail", copy_id=chain.pk)
    context = {"form": form, "snapshot_id": snapshot_id, "team": source, "targets": targets}
    return render(request, "transfers/copy_new.html", context, status=422 if form.errors else 200)


@login_required
@require_GET
def copy_detail(request: HttpRequest, copy_id: uuid.UUID) -> HttpResponse:
    chain = get_copy_for_user(request, copy_id)
    context = {"chain": chain, **_notify_context(request, NotifyKind.COPY, chain.pk)}
    return render(request, "transfers/copy_detail.html", context)


@login_required
@require_GET
@never_cache
def transfers_poll(request: HttpRequest) -> HttpResponse:
    """Changed export (`e=`) and copy (`c=`) summaries as out-of-band swaps; 204 or 286."""
    export_versions = polled_versions(request.GET, "e", limit=MAX_POLLED)
    copy_versions = polled_versions(request.GET, "c", limit=MAX_POLLED)
    exports = list(exports_for_user(request).filter(pk__in=export_versions))
    chains = list(
        copies_for_user(request)
        .select_related("source_team", "target_team", "export", "import_job", "share")
        .filter(pk__in=copy_versions)
    )
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


def _transfer_settings_save(request: HttpRequest, team: Team, data: dict[str, Any]) -> None:
    # One save: the OOS endpoint and the webhook are stored both or neither, under the one
    # audit entry webhook_set writes for the team's transfer settings.
    with transaction.atomic():
        oos_endpoint_set(team=team, endpoint=data["oos_endpoint"])
        webhook_set(
            team=team,
            user=actor(request),
            url=data["webhook_url"],
            secret=data["webhook_secret"],
            remove=data["remove_webhook"],
            ip=client_ip(request),
        )


@require_role(Role.ADMIN)
@require_http_methods(["GET", "POST"])
def transfer_settings(request: HttpRequest) -> HttpResponse:
    team = required_team(request)
    webhook = TeamWebhook.objects.filter(team=team).first()
    form = TransferSettingsForm(request.POST or None, initial={"oos_endpoint": team.oos_endpoint})
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        if data["webhook_url"] and not data["webhook_secret"] and webhook is None:
            form.add_error("webhook_secret", "A new webhook needs a secret.")
        else:
            _transfer_settings_save(request, team, data)
            messages.success(request, "Transfer settings saved.")
            return redirect("transfer_settings")
    context = {"form": form, "team": team, "webhook": webhook}
    return render(
        request, "transfers/transfer_settings.html", context, status=422 if form.errors else 200
    )
