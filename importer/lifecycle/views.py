"""A snapshot's page and its actions' dialogs: CREATE VOLUME, CREATE OMI, UPDATE SNAPSHOT
PERMISSIONS, COPY SNAPSHOT and EDIT TAGS.

Each dialog is loaded over htmx into the page's one action dialog, and is a page of its own
without JavaScript (the action buttons are GET forms that lead there). What a dialog shows of
the snapshot (its size, permissions, tags) is read from the API when it opens and again when it
is posted, so nothing is decided on stale data.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from django import forms
from django.contrib import messages
from django.db import IntegrityError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods
from django_htmx.http import HTMX_STOP_POLLING, HttpResponseClientRedirect

from importer.audit.addresses import client_ip
from importer.core.crypto import DecryptionError
from importer.core.formkeys import FormKeys
from importer.imports.services import SnapshotNotInAccount
from importer.lifecycle import services
from importer.lifecycle.forms import (
    BaseTagFormSet,
    CopyForm,
    ImageForm,
    PermissionsForm,
    TagFormSet,
    VolumeForm,
)
from importer.lifecycle.models import DerivedJob, DerivedKind
from importer.lifecycle.selectors import (
    any_in_flight,
    get_derived_for_team,
    made_list,
    team_of_snapshot,
)
from importer.outscale import accounts
from importer.outscale.errors import OscApiError
from importer.outscale.resources import Snapshot
from importer.teams.models import IMPORTERS, Role, Team
from importer.teams.permissions import actor, require_role, required_team

READERS = tuple(Role.values)

# The create dialogs' idempotency keys (the job's id to be), signed for their user.
LIFECYCLE_FORM_KEYS = FormKeys("lifecycle-form")

NOT_YOUR_FORM = (
    "This form was opened by someone else, or too long ago: it has been renewed for you. "
    "Check the fields and send it again."
)


def _posted(request: HttpRequest) -> Any:
    """The posted data, even empty (an empty post is a bound form that says what is missing)."""
    return request.POST if request.method == "POST" else None


def _snapshot(team: Team, snapshot_id: str) -> Snapshot:
    """The team's snapshot, fresh from the API; 404 when the account has no such snapshot."""
    try:
        return services.own_snapshot(team, snapshot_id)
    except SnapshotNotInAccount:
        raise Http404("No such snapshot in this team's account.") from None


class SnapshotNotReady(Exception):
    """Volumes, OMIs and copies are made from a completed snapshot only."""

    def __init__(self, snapshot: Snapshot) -> None:
        super().__init__(
            f"The snapshot is {snapshot.state}, not completed yet: volumes, OMIs and copies "
            "are made from it once it is."
        )


def _api_problem(error: Exception) -> str:
    if isinstance(error, SnapshotNotReady):
        return str(error)
    if isinstance(error, OscApiError):
        return f"The OUTSCALE API could not answer: {error}"
    return f"The team's API access is not usable: {error}"


# --- The snapshot's page -------------------------------------------------------------------


@require_role(*READERS)
@require_GET
def snapshot_detail(request: HttpRequest, snapshot_id: str) -> HttpResponse:
    team = team_of_snapshot(request, snapshot_id)
    context: dict[str, Any] = {"snapshot_id": snapshot_id, "made": made_list(team, snapshot_id)}
    try:
        context["snapshot"] = _snapshot(team, snapshot_id)
    except (OscApiError, ValueError, DecryptionError) as error:
        context["api_error"] = _api_problem(error)
    context["polling"] = any_in_flight(context["made"])
    return render(request, "lifecycle/snapshot_detail.html", context)


@require_role(*READERS)
@require_GET
def made_poll(request: HttpRequest, snapshot_id: str) -> HttpResponse:
    """The "Made from this snapshot" list again; 286 (stop polling) once nothing is in flight."""
    team = team_of_snapshot(request, snapshot_id)
    made = made_list(team, snapshot_id)
    polling = any_in_flight(made)
    context = {"snapshot_id": snapshot_id, "made": made, "polling": polling}
    response = render(request, "lifecycle/_made_list.html", context)
    if not polling:
        response.status_code = HTMX_STOP_POLLING
    return response


@require_role(*READERS)
@require_GET
def derived_detail(request: HttpRequest, job_id: uuid.UUID) -> HttpResponse:
    job = get_derived_for_team(required_team(request), job_id)
    return render(request, "lifecycle/derived_detail.html", {"job": job})


# --- The dialogs -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Dialog:
    """One action's dialog: its title, its submit button, and the template of its fields (the
    dialog around them is `lifecycle/_action_form.html`, the same for all)."""

    title: str
    submit: str
    url_name: str
    body: str = "lifecycle/_fields_body.html"
    form_class: str = ""
    template: str = "lifecycle/_action_form.html"


VOLUME = Dialog("CREATE VOLUME", "Create volume", "volume_new")
IMAGE = Dialog("CREATE OMI", "Create OMI", "image_new")
COPY = Dialog("COPY SNAPSHOT", "Copy", "snapshot_copy_new")
PERMISSIONS = Dialog("UPDATE SNAPSHOT PERMISSIONS", "Update permissions", "permissions_edit")
TAGS = Dialog("EDIT TAGS", "Save tags", "tags_edit", "lifecycle/_tags_body.html", "tags-form")


def _render_dialog(
    request: HttpRequest,
    dialog: Dialog,
    snapshot_id: str,
    form: Any,
    *,
    extra: dict[str, Any] | None = None,
    status: int | None = None,
) -> HttpResponse:
    in_dialog = bool(getattr(request, "htmx", False))
    context = {
        "dialog": dialog,
        "form": form,
        "snapshot_id": snapshot_id,
        "action_url": reverse(dialog.url_name, kwargs={"snapshot_id": snapshot_id}),
        "in_dialog": in_dialog,
        **(extra or {}),
    }
    if status is None:
        status = 422 if request.method == "POST" else 200
    template = dialog.template if in_dialog else "lifecycle/action_page.html"
    return render(request, template, context, status=status)


def _done(request: HttpRequest, snapshot_id: str, message: str) -> HttpResponse:
    """After an action: back to the snapshot's page, where its result shows."""
    messages.success(request, message)
    url = reverse("snapshot_detail", kwargs={"snapshot_id": snapshot_id})
    if getattr(request, "htmx", False):
        return HttpResponseClientRedirect(url)
    return redirect(url)


def _unavailable(
    request: HttpRequest, dialog: Dialog, snapshot_id: str, error: Exception
) -> HttpResponse:
    """The dialog says why it cannot be used now (in a dialog, htmx only swaps in a 2xx)."""
    status = 200 if getattr(request, "htmx", False) else 503
    extra = {"api_error": _api_problem(error)}
    return _render_dialog(request, dialog, snapshot_id, None, extra=extra, status=status)


def _create_once(
    request: HttpRequest, team: Team, snapshot_id: str, kind: str, parameters: dict[str, Any]
) -> tuple[DerivedJob | None, bool]:
    """The job under the form's key: made now, or the one a repeated post already made.

    (None, False) when the key was not signed for this user.
    """
    key = LIFECYCLE_FORM_KEYS.posted(request)
    if key is None:
        return None, False
    mine = DerivedJob.objects.filter(pk=key, team=team, requested_by=actor(request))
    existing = mine.first()
    if existing is not None:
        return existing, False
    try:
        job = services.derived_create(
            team=team,
            user=actor(request),
            snapshot_id=snapshot_id,
            kind=kind,
            parameters=parameters,
            job_id=key,
            ip=client_ip(request),
        )
    except IntegrityError:
        existing = mine.first()
        if existing is None:
            raise  # not a repeated key: a real problem, not to be hidden
        return existing, False
    return job, True


def _create_view(
    request: HttpRequest,
    snapshot_id: str,
    dialog: Dialog,
    kind: str,
    build: Callable[[Team, Snapshot], forms.Form],
) -> HttpResponse:
    """A create dialog (volume, OMI, copy): the form from the snapshot, then one job, once."""
    team = team_of_snapshot(request, snapshot_id)
    try:
        snapshot = _snapshot(team, snapshot_id)
        if not snapshot.is_completed:
            raise SnapshotNotReady(snapshot)
        form: Any = build(team, snapshot)
    except (OscApiError, ValueError, DecryptionError, SnapshotNotReady) as error:
        return _unavailable(request, dialog, snapshot_id, error)
    keys = LIFECYCLE_FORM_KEYS.fields(request)
    if request.method == "POST" and form.is_valid():
        job, created = _create_once(request, team, snapshot_id, kind, form.parameters())
        if job is None:
            form.add_error(None, forms.ValidationError(NOT_YOUR_FORM, code="not_your_form"))
        else:
            said = "requested" if created else "was already requested"
            return _done(request, snapshot_id, f"{job.get_kind_display()} {said}.")
    return _render_dialog(request, dialog, snapshot_id, form, extra=keys)


def _min_size_gib(snapshot: Snapshot) -> int:
    return max(snapshot.volume_size_gib or 1, 1)


@require_role(*IMPORTERS)
@require_http_methods(["GET", "POST"])
def volume_new(request: HttpRequest, snapshot_id: str) -> HttpResponse:
    def build(team: Team, snapshot: Snapshot) -> forms.Form:
        subregions = [
            subregion.name
            for subregion in accounts.api_client(team).read_subregions()
            if subregion.state in ("available", "")
        ]
        return VolumeForm(
            _posted(request), subregions=subregions, min_size_gib=_min_size_gib(snapshot)
        )

    return _create_view(request, snapshot_id, VOLUME, DerivedKind.VOLUME, build)


@require_role(*IMPORTERS)
@require_http_methods(["GET", "POST"])
def image_new(request: HttpRequest, snapshot_id: str) -> HttpResponse:
    def build(team: Team, snapshot: Snapshot) -> forms.Form:
        return ImageForm(_posted(request), min_size_gib=_min_size_gib(snapshot))

    return _create_view(request, snapshot_id, IMAGE, DerivedKind.IMAGE, build)


@require_role(*IMPORTERS)
@require_http_methods(["GET", "POST"])
def snapshot_copy_new(request: HttpRequest, snapshot_id: str) -> HttpResponse:
    def build(team: Team, snapshot: Snapshot) -> forms.Form:
        name = snapshot.tags.get("Name") or snapshot.snapshot_id
        initial = {"name": f"{name} (copy)"[:255], "description": snapshot.description}
        return CopyForm(_posted(request), initial=initial)

    return _create_view(request, snapshot_id, COPY, DerivedKind.COPY, build)


@require_role(*IMPORTERS)
@require_http_methods(["GET", "POST"])
def permissions_edit(request: HttpRequest, snapshot_id: str) -> HttpResponse:
    team = team_of_snapshot(request, snapshot_id)
    try:
        snapshot = _snapshot(team, snapshot_id)
    except (OscApiError, ValueError, DecryptionError) as error:
        return _unavailable(request, PERMISSIONS, snapshot_id, error)
    form = PermissionsForm(_posted(request), current=snapshot.permissions)
    if request.method == "POST" and form.is_valid():
        try:
            _, change = services.permissions_update(
                team=team,
                user=actor(request),
                snapshot_id=snapshot_id,
                add_account_ids=form.cleaned_data["add_account_ids"],
                remove_account_ids=form.cleaned_data["remove_account_ids"],
                public=form.public_change,
                read=snapshot,
                ip=client_ip(request),
            )
        except services.NothingToChange as error:
            form.add_error(None, str(error))
        except (OscApiError, ValueError, DecryptionError) as error:
            form.add_error(None, f"The permissions were not changed: {_api_problem(error)}")
        else:
            return _done(request, snapshot_id, _permission_change_said(change))
    context = {"permissions": snapshot.permissions}
    return _render_dialog(request, PERMISSIONS, snapshot_id, form, extra=context)


def _permission_change_said(change: services.PermissionChange) -> str:
    parts = []
    if change.added:
        parts.append("allowed " + ", ".join(change.added))
    if change.removed:
        parts.append("removed " + ", ".join(change.removed))
    if change.public is not None:
        parts.append("made public" if change.public else "made private")
    return "Permissions updated: " + "; ".join(parts) + "."


@require_role(*IMPORTERS)
@require_http_methods(["GET", "POST"])
def tags_edit(request: HttpRequest, snapshot_id: str) -> HttpResponse:
    team = team_of_snapshot(request, snapshot_id)
    try:
        snapshot = _snapshot(team, snapshot_id)
    except (OscApiError, ValueError, DecryptionError) as error:
        return _unavailable(request, TAGS, snapshot_id, error)
    initial = [{"key": key, "value": value} for key, value in sorted(snapshot.tags.items())]
    # Every row is checked and counted, even one left as it was shown: a row not "changed"
    # from its initial value is still a tag to keep, not an empty row to skip.
    formset = cast(
        BaseTagFormSet,
        TagFormSet(
            _posted(request),
            initial=initial,
            prefix="tags",
            form_kwargs={"empty_permitted": False},
        ),
    )
    if request.method == "POST" and formset.is_valid():
        try:
            change = services.tags_edit(
                team=team,
                user=actor(request),
                snapshot_id=snapshot_id,
                tags=formset.tags,
                read=snapshot,
                ip=client_ip(request),
            )
        except services.NothingToChange as error:
            return _render_dialog(
                request, TAGS, snapshot_id, formset, extra={"form_error": str(error)}
            )
        except (OscApiError, ValueError, DecryptionError) as error:
            said = f"The tags were not saved: {_api_problem(error)}"
            return _render_dialog(request, TAGS, snapshot_id, formset, extra={"form_error": said})
        count = len(change.set) + len(change.removed)
        return _done(request, snapshot_id, f"Tags saved ({count} changed).")
    return _render_dialog(request, TAGS, snapshot_id, formset)
