"""The dashboard's bulk actions: a confirm page per kind (the count, the parameters once for
all), then the action's page following each item live. Every page works without JavaScript.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from django import forms
from django.http import Http404, HttpRequest, HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods
from django_htmx.http import HTMX_STOP_POLLING

from importer.audit.addresses import client_ip
from importer.bulk.forms import BulkCopyForm, BulkTagsForm, ExportForm, copy_names
from importer.bulk.models import BulkAction, BulkKind
from importer.bulk.services import (
    CopyPlan,
    NotYourAction,
    Plan,
    SelectionRefused,
    bulk_create,
    selected_ids,
    selection_check,
)
from importer.core.crypto import DecryptionError
from importer.core.formkeys import FormKeys
from importer.outscale.errors import OscApiError
from importer.outscale.resources import Snapshot
from importer.teams.models import IMPORTERS, Role, Team
from importer.teams.permissions import actor, copy_targets, require_role, required_team

BULK_FORM_KEYS = FormKeys("bulk-form")

NOT_YOUR_FORM = (
    "This form was opened by another user, or changed since: nothing was done. It has been "
    "renewed for you; check it and confirm again."
)


@dataclass(frozen=True)
class Kind:
    kind: str
    url_name: str
    # "Delete 12 snapshots?" and the button's "Delete 12 snapshots".
    verb: str
    after: str
    build: Callable[[HttpRequest, Team, QueryDict | None], Any]
    plan: Callable[[HttpRequest, Team, Any, Sequence[Snapshot]], Plan]


def _copy_plan(request: HttpRequest, team: Team, form: Any, snapshots: Sequence[Snapshot]) -> Plan:
    target = next(
        t for t in copy_targets(request, team) if t.pk == form.cleaned_data["target_team"]
    )
    return CopyPlan(
        target_team=target,
        destination=form.destination,
        description=form.cleaned_data["description"],
        names=copy_names(snapshots),
    )


KINDS = {
    BulkKind.EXPORT: Kind(
        BulkKind.EXPORT,
        "bulk_export",
        "Export",
        " to a bucket",
        lambda request, team, data: ExportForm(data),
        lambda request, team, form, snapshots: form.destination,
    ),
    BulkKind.COPY: Kind(
        BulkKind.COPY,
        "bulk_copy",
        "Copy",
        " to another team",
        lambda request, team, data: BulkCopyForm(data, teams=copy_targets(request, team)),
        _copy_plan,
    ),
    BulkKind.TAGS: Kind(
        BulkKind.TAGS,
        "bulk_tags",
        "Edit the tags of",
        "",
        lambda request, team, data: BulkTagsForm(data),
        lambda request, team, form, snapshots: form.plan,
    ),
    BulkKind.DELETE: Kind(
        BulkKind.DELETE,
        "bulk_delete",
        "Delete",
        "",
        lambda request, team, data: forms.Form(data),
        lambda request, team, form, snapshots: None,
    ),
}


def _picked(data: QueryDict) -> list[str]:
    """The ticked rows; "select all on this page" adds every row the page offered."""
    ids = data.getlist("ids")
    if data.get("all_on_page"):
        ids += data.getlist("page_ids")
    return ids


def _selection(team: Team, data: QueryDict) -> tuple[list[Snapshot], str]:
    """The selected snapshots of the team's account, or none and what to say instead."""
    try:
        return selection_check(team=team, snapshot_ids=selected_ids(_picked(data))), ""
    except SelectionRefused as error:
        return [], str(error)
    except (OscApiError, ValueError, DecryptionError) as error:
        return [], f"The API could not say which snapshots are the team's ({error}). Try again."


def _existing_for(request: HttpRequest, team: Team, key: uuid.UUID) -> BulkAction | None:
    return BulkAction.objects.filter(pk=key, team=team, created_by=actor(request).pk).first()


def _confirm(request: HttpRequest, kind: Kind) -> HttpResponse:
    team = required_team(request)
    posting = request.method == "POST"
    key = BULK_FORM_KEYS.posted(request) if posting else None
    if key is not None and (made := _existing_for(request, team, key)) is not None:
        return redirect("bulk_detail", bulk_id=made.pk)  # the same form again: nothing new
    snapshots, refusal = _selection(team, request.POST if posting else request.GET)
    form = kind.build(request, team, request.POST if posting and snapshots else None)
    context: dict[str, Any] = {"kind": kind, "snapshots": snapshots, "refusal": refusal}
    if posting and key is None and snapshots:
        context["form_error"] = NOT_YOUR_FORM
    elif key is not None and snapshots and form.is_valid():
        try:
            action, _ = bulk_create(
                team=team,
                user=actor(request),
                kind=kind.kind,
                snapshots=snapshots,
                plan=kind.plan(request, team, form, snapshots),
                key=key,
                ip=client_ip(request),
            )
        except NotYourAction as error:
            context["form_error"] = str(error)
        else:
            return redirect("bulk_detail", bulk_id=action.pk)
    context.update(form=form, team=team, **BULK_FORM_KEYS.fields(request))
    failed = bool(refusal or context.get("form_error") or (posting and form.errors))
    return render(request, "bulk/confirm.html", context, status=422 if failed else 200)


@require_role(*IMPORTERS)
@require_http_methods(["GET", "POST"])
def bulk_export(request: HttpRequest) -> HttpResponse:
    return _confirm(request, KINDS[BulkKind.EXPORT])


@require_role(*IMPORTERS)
@require_http_methods(["GET", "POST"])
def bulk_copy(request: HttpRequest) -> HttpResponse:
    return _confirm(request, KINDS[BulkKind.COPY])


@require_role(*IMPORTERS)
@require_http_methods(["GET", "POST"])
def bulk_tags(request: HttpRequest) -> HttpResponse:
    return _confirm(request, KINDS[BulkKind.TAGS])


# Deleting a snapshot is a team admin's, as on the dashboard's own Delete.
@require_role(Role.ADMIN)
@require_http_methods(["GET", "POST"])
def bulk_delete(request: HttpRequest) -> HttpResponse:
    return _confirm(request, KINDS[BulkKind.DELETE])


def _action_of_team(request: HttpRequest, bulk_id: uuid.UUID) -> BulkAction:
    action = (
        BulkAction.objects.filter(pk=bulk_id, team=required_team(request))
        .select_related("created_by", "team")
        .first()
    )
    if action is None:
        raise Http404("No such bulk action in this team.")
    return action


@require_role(*Role.values)
@require_GET
@never_cache
def bulk_detail(request: HttpRequest, bulk_id: uuid.UUID) -> HttpResponse:
    action = _action_of_team(request, bulk_id)
    items = list(
        action.items.select_related("export", "copy", "copy__target_team").order_by("position")
    )
    ended = [item for item in items if item.is_terminal]
    context = {
        "action": action,
        "items": items,
        "kind": KINDS[BulkKind(action.kind)],
        "done": sum(1 for item in ended if item.succeeded),
        "failed": sum(1 for item in ended if not item.succeeded),
        "polling": len(ended) < len(items),
    }
    if getattr(request, "htmx", False):
        status = 200 if context["polling"] else HTMX_STOP_POLLING
        return render(request, "bulk/_bulk_progress.html", context, status=status)
    return render(request, "bulk/bulk_detail.html", context)
