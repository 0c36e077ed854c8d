"""Pages of the other half of the journey: export to a bucket, share, copy, notifications.

Views never call the API, with one exception that is the user's own request: cancelling a
running export sends DeleteExportTask at once, so the user learns whether the API agreed.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HTMX_STOP_POLLING

from importer import audit, destinations, export_services, net, notifications, permissions
from importer.exports import (
    CopyChain,
    DiskImageFormat,
    ExportTask,
    NotificationRequest,
    NotifyKind,
    TeamWebhook,
)
from importer.forms import SnapshotTextForm
from importer.models import Role, Team
from importer.outscale import OscApiError
from importer.permissions import IMPORTERS, require_role

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MAX_POLLED = 50
_SNAPSHOT_ID = re.compile(r"^snap-[0-9a-f]{8,32}$")
# S3 bucket names as OOS accepts them.
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
LIFETIMES = [
    (3600, "1 hour"),
    (6 * 3600, "6 hours"),
    (24 * 3600, "1 day"),
    (3 * 24 * 3600, "3 days"),
    (7 * 24 * 3600, "7 days"),
]


def _actor(request: HttpRequest) -> User:
    assert isinstance(request.user, User)  # noqa: S101 - every caller is behind a login
    return request.user


def version(obj: ExportTask | CopyChain) -> int:
    return (obj.updated_at - EPOCH) // timedelta(microseconds=1)


# --- Forms ----------------------------------------------------------------------------------


class ExportForm(forms.Form):
    bucket = forms.CharField(max_length=63, label="Bucket")
    osu_prefix = forms.CharField(
        max_length=512,
        required=False,
        label="Prefix",
        help_text="Optional, e.g. backups/ (the object is named prefix + snapshot ID).",
    )
    disk_image_format = forms.ChoiceField(
        choices=DiskImageFormat.choices, initial=DiskImageFormat.QCOW2, label="Format"
    )

    def clean_bucket(self) -> str:
        bucket: str = self.cleaned_data["bucket"].strip()
        if not _BUCKET.match(bucket):
            raise forms.ValidationError(
                "Use 3 to 63 lower-case letters, digits, dots and hyphens, as OOS requires."
            )
        return bucket

    def clean_osu_prefix(self) -> str:
        prefix: str = self.cleaned_data["osu_prefix"].strip()
        if any(not ch.isprintable() for ch in prefix) or prefix.startswith("/"):
            raise forms.ValidationError("Use printable characters, not starting with /.")
        return prefix


class CopyForm(SnapshotTextForm, ExportForm):
    """The copy's name and description are checked as the import dialog checks them."""

    target_team = forms.TypedChoiceField(coerce=int, label="Copy to team")

    def __init__(self, *args: Any, teams: list[Team], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["name"].label = "Name of the copy"
        self.fields["name"].help_text = "The name of the copy in the other team's account."
        field = self.fields["target_team"]
        assert isinstance(field, forms.TypedChoiceField)  # noqa: S101 - declared above
        field.choices = [(team.pk, f"{team.name} ({team.region})") for team in teams]


class ShareForm(forms.Form):
    lifetime = forms.TypedChoiceField(
        choices=LIFETIMES, coerce=int, initial=24 * 3600, label="Valid for"
    )


class NotifyForm(forms.Form):
    by_email = forms.BooleanField(required=False, initial=True, label="Email me")
    by_webhook = forms.BooleanField(required=False, label="Call the team's webhook")


class TransferSettingsForm(forms.Form):
    oos_endpoint = forms.URLField(
        assume_scheme="https",
        required=False,
        max_length=255,
        label="OOS endpoint",
        help_text="Empty: https://oos.{region}.outscale.com",
    )
    webhook_url = forms.URLField(
        assume_scheme="https",
        required=False,
        max_length=2000,
        label="Webhook URL",
        help_text="https:// on a public host. Stored encrypted and never shown again: leave "
        "empty to keep the current one.",
    )
    webhook_secret = forms.CharField(
        required=False,
        min_length=16,
        max_length=200,
        label="Webhook secret",
        widget=forms.PasswordInput,
        help_text="Signs each delivery (HMAC-SHA256). Leave empty to keep the current one.",
    )
    remove_webhook = forms.BooleanField(required=False, label="Remove the webhook")

    def clean_oos_endpoint(self) -> str:
        return _checked(destinations.oos_endpoint_check, self.cleaned_data["oos_endpoint"])

    def clean_webhook_url(self) -> str:
        return _checked(destinations.webhook_url_check, self.cleaned_data["webhook_url"])


def _checked(check: Callable[[str], str], value: str) -> str:
    """A person-chosen destination, checked by the outbound guard as it is saved."""
    if not value:
        return ""
    try:
        return check(value)
    except net.DestinationRefused as refusal:
        raise forms.ValidationError(str(refusal), code="destination_refused") from None


# --- Lookups that raise 404 -----------------------------------------------------------------


def _team_ids(request: HttpRequest) -> list[int]:
    return [membership.team_id for membership in permissions.memberships(request)]


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
    if permissions.role_in_team(request, team_id) not in IMPORTERS:
        raise PermissionDenied("Your role in this team does not allow this.")


def _check_snapshot_id(snapshot_id: str) -> None:
    if not _SNAPSHOT_ID.match(snapshot_id):
        raise Http404("Not a snapshot ID.")


# --- Export ---------------------------------------------------------------------------------


@require_role(*IMPORTERS)
@require_http_methods(["GET", "POST"])
def export_new(request: HttpRequest, snapshot_id: str) -> HttpResponse:
    _check_snapshot_id(snapshot_id)
    team = permissions.current_team(request)
    assert team is not None  # noqa: S101 - require_role found a membership
    form = ExportForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        export = export_services.export_create(
            team=team,
            user=_actor(request),
            snapshot_id=snapshot_id,
            bucket=data["bucket"],
            prefix=data["osu_prefix"],
            disk_image_format=data["disk_image_format"],
            ip=audit.client_ip(request),
        )
        return redirect("export_detail", export_id=export.pk)
    context = {"form": form, "snapshot_id": snapshot_id, "team": team}
    return render(request, "exports/export_new.html", context, status=422 if form.errors else 200)


def _notify_context(request: HttpRequest, kind: str, object_id: uuid.UUID) -> dict[str, Any]:
    asked = NotificationRequest.objects.filter(
        user_id=_actor(request).pk, kind=kind, object_id=object_id
    ).first()
    return {"notify_form": NotifyForm(), "notify_kind": kind, "notification": asked}


def _annotate(request: HttpRequest, exports: list[ExportTask]) -> None:
    """What each summary shows besides the row: may the user change it, its latest shares."""
    for export in exports:
        role = permissions.role_in_team(request, export.team_id)
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
    return render(request, "exports/export_detail.html", context)


@login_required
@require_POST
def export_cancel(request: HttpRequest, export_id: uuid.UUID) -> HttpResponse:
    export = _get_export_for_user(request, export_id)
    _require_importer_in(request, export.team_id)
    if not export.can_cancel:
        messages.error(request, "This export has already ended.")
        return redirect("export_detail", export_id=export.pk)
    try:
        export_services.export_cancel(
            export=export, user=_actor(request), ip=audit.client_ip(request)
        )
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
        share, url = export_services.share_create(
            export=export,
            user=_actor(request),
            seconds=form.cleaned_data["lifetime"],
            ip=audit.client_ip(request),
        )
    except export_services.ExportNotShareable as error:
        messages.error(request, str(error))
        return redirect("export_detail", export_id=export.pk)
    response = render(
        request, "exports/share_created.html", {"export": export, "share": share, "url": url}
    )
    response["Cache-Control"] = "no-store"
    return response


# --- Copy -----------------------------------------------------------------------------------


def _copy_targets(request: HttpRequest, source: Team) -> list[Team]:
    return [
        membership.team
        for membership in permissions.memberships(request)
        if membership.team_id != source.pk and membership.role in IMPORTERS
    ]


@require_role(*IMPORTERS)
@require_http_methods(["GET", "POST"])
def copy_new(request: HttpRequest, snapshot_id: str) -> HttpResponse:
    _check_snapshot_id(snapshot_id)
    source = permissions.current_team(request)
    assert source is not None  # noqa: S101 - require_role found a membership
    targets = _copy_targets(request, source)
    form = CopyForm(request.POST or None, teams=targets)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        target = next(team for team in targets if team.pk == data["target_team"])
        chain = export_services.copy_create(
            source_team=source,
            target_team=target,
            user=_actor(request),
            snapshot_id=snapshot_id,
            name=data["name"],
            description=data["description"],
            bucket=data["bucket"],
            prefix=data["osu_prefix"],
            disk_image_format=data["disk_image_format"],
            ip=audit.client_ip(request),
        )
        return redirect("copy_detail", copy_id=chain.pk)
    context = {"form": form, "snapshot_id": snapshot_id, "team": source, "targets": targets}
    return render(request, "exports/copy_new.html", context, status=422 if form.errors else 200)


@login_required
@require_GET
def copy_detail(request: HttpRequest, copy_id: uuid.UUID) -> HttpResponse:
    chain = _get_copy_for_user(request, copy_id)
    context = {"chain": chain, **_notify_context(request, NotifyKind.COPY, chain.pk)}
    return render(request, "exports/copy_detail.html", context)


# --- Live progress --------------------------------------------------------------------------


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
        "exports/poll.html",
        {"exports": changed_exports, "chains": changed_chains, "share_form": ShareForm()},
        # The request: forms swapped in (sharing a completed export) need the CSRF token.
        request=request,
    )
    return HttpResponse(html, status=200 if live else HTMX_STOP_POLLING)


# --- Notifications and team settings --------------------------------------------------------


def _notify_target(
    request: HttpRequest, kind: str, object_id: uuid.UUID
) -> tuple[Team, str, list[int]]:
    """The job's team, its page and the teams whose importers may ask; 404 when not visible."""
    if kind == NotifyKind.EXPORT:
        export = _get_export_for_user(request, object_id)
        return export.team, f"/exports/{export.pk}", [export.team_id]
    if kind == NotifyKind.COPY:
        chain = _get_copy_for_user(request, object_id)
        teams = [chain.source_team_id, chain.target_team_id]
        return chain.source_team, f"/copies/{chain.pk}", teams
    if kind == NotifyKind.IMPORT:
        job = permissions.get_job_for_user(request, object_id)
        return job.team, f"/imports/{job.pk}", [job.team_id]
    raise Http404("Nothing of that kind.")


@login_required
@require_POST
def notify_request(request: HttpRequest, kind: str, object_id: uuid.UUID) -> HttpResponse:
    team, page, teams = _notify_target(request, kind, object_id)
    if not any(permissions.role_in_team(request, team_id) in IMPORTERS for team_id in teams):
        raise PermissionDenied("Auditors only read.")
    form = NotifyForm(request.POST)
    form.is_valid()
    data = form.cleaned_data
    notifications.notification_request(
        user=_actor(request),
        team=team,
        kind=kind,
        object_id=object_id,
        by_email=bool(data.get("by_email")),
        by_webhook=bool(data.get("by_webhook")),
        ip=audit.client_ip(request),
    )
    if data.get("by_email") and not _actor(request).email:
        messages.warning(request, "Your account has no email address: no email can be sent.")
    messages.success(request, "You will be told when it ends.")
    return redirect(page)


@require_role(Role.ADMIN)
@require_http_methods(["GET", "POST"])
def transfer_settings(request: HttpRequest) -> HttpResponse:
    team = permissions.current_team(request)
    assert team is not None  # noqa: S101 - require_role found a membership
    webhook = TeamWebhook.objects.filter(team=team).first()
    form = TransferSettingsForm(request.POST or None, initial={"oos_endpoint": team.oos_endpoint})
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        if data["webhook_url"] and not data["webhook_secret"] and webhook is None:
            form.add_error("webhook_secret", "A new webhook needs a secret.")
        else:
            notifications.webhook_set(
                team=team,
                user=_actor(request),
                url=data["webhook_url"],
                secret=data["webhook_secret"],
                oos_endpoint=data["oos_endpoint"],
                remove=data["remove_webhook"],
                ip=audit.client_ip(request),
            )
            messages.success(request, "Transfer settings saved.")
            return redirect("transfer_settings")
    context = {"form": form, "team": team, "webhook": webhook}
    return render(
        request, "exports/transfer_settings.html", context, status=422 if form.errors else 200
    )
