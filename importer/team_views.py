"""Pages for team admins and auditors: history, audit log, CSV exports, credentials, and the
team-level actions (deleting a snapshot, retrying an import). Members: `member_views`."""

from __future__ import annotations

import csv
import uuid
from collections.abc import Iterable, Iterator
from datetime import datetime, time, timedelta
from typing import Any

from django.contrib import messages
from django.contrib.auth.models import User
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from importer import audit, permissions, services
from importer.forms import (
    SORTS,
    AuditFilterForm,
    CredentialsForm,
    HistoryFilterForm,
    ImportSnapshotForm,
)
from importer.models import ImportJobQuerySet, JobState, Membership, Role
from importer.outscale import OscApiError
from importer.permissions import IMPORTERS, READERS_OF_HISTORY, require_role

PAGE_SIZE = 50
CSV_CHUNK = 2000


def _actor(request: HttpRequest) -> User:
    assert isinstance(request.user, User)  # noqa: S101 - every caller is behind a login
    return request.user


def _day_start(day: Any) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))


# --- History --------------------------------------------------------------------------------


def _history_jobs(request: HttpRequest, form: HistoryFilterForm) -> ImportJobQuerySet:
    jobs = permissions.jobs_of_current_team(request).select_related("submitted_by")
    if not form.is_valid():
        return jobs.order_by(*SORTS["-created"])
    data = form.cleaned_data
    if data["user"]:
        jobs = jobs.filter(submitted_by__username=data["user"])
    if data["state"]:
        jobs = jobs.filter(state=data["state"])
    if data["since"]:
        jobs = jobs.filter(created_at__gte=_day_start(data["since"]))
    if data["until"]:
        jobs = jobs.filter(created_at__lt=_day_start(data["until"]) + timedelta(days=1))
    if data["q"]:
        text = data["q"]
        jobs = jobs.filter(
            Q(name__icontains=text)
            | Q(snapshot_id__icontains=text)
            | Q(description__icontains=text)
            | Q(url_bucket__icontains=text)
        )
    return jobs.order_by(*SORTS.get(data["sort"] or "-created", SORTS["-created"]))


def _page_number(request: HttpRequest) -> int:
    raw = request.GET.get("page", "1")
    return max(1, min(int(raw), 10_000)) if raw.isdigit() else 1


def _query_without_page(request: HttpRequest) -> str:
    query = request.GET.copy()
    query.pop("page", None)
    return query.urlencode()


def _paged(request: HttpRequest, rows: QuerySet[Any]) -> dict[str, Any]:
    """One page of `rows`, and whether another follows, without counting them all."""
    page = _page_number(request)
    start = (page - 1) * PAGE_SIZE
    # One row more than shown says whether there is a next page.
    fetched = list(rows[start : start + PAGE_SIZE + 1])
    return {
        "rows": fetched[:PAGE_SIZE],
        "page": page,
        "has_next": len(fetched) > PAGE_SIZE,
        "query": _query_without_page(request),
    }


@require_role(*READERS_OF_HISTORY)
@require_GET
def history(request: HttpRequest) -> HttpResponse:
    form = HistoryFilterForm(request.GET or None)
    context = {"form": form, **_paged(request, _history_jobs(request, form))}
    return render(request, "importer/history.html", context)


class _Echo:
    """A file-like object whose write returns the line, for csv.writer in a streaming response."""

    def write(self, value: str) -> str:
        return value


HISTORY_COLUMNS = [
    "job_id",
    "submitted_at",
    "submitted_by",
    "name",
    "object_host",
    "bucket",
    "snapshot_size",
    "state",
    "api_state",
    "duration_seconds",
    "snapshot_id",
    "error_code",
    "error_type",
    "error_details",
]


def _history_lines(jobs: ImportJobQuerySet) -> Iterator[list[Any]]:
    yield HISTORY_COLUMNS
    for job in jobs.iterator(chunk_size=CSV_CHUNK):
        duration = job.duration
        yield [
            job.pk,
            job.created_at.isoformat(),
            job.submitted_by.get_username(),
            job.name,
            job.url_host,
            job.url_bucket,
            job.snapshot_size,
            job.state,
            job.api_state,
            int(duration.total_seconds()) if duration else "",
            job.snapshot_id,
            job.error_code,
            job.error_type,
            job.error_details,
        ]


def _csv_response(lines: Iterable[list[Any]], filename: str) -> StreamingHttpResponse:
    writer = csv.writer(_Echo())
    response = StreamingHttpResponse(
        (writer.writerow([_csv_safe(cell) for cell in line]) for line in lines),
        content_type="text/csv; charset=utf-8",
    )
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def _csv_safe(cell: Any) -> Any:
    # A cell starting with = + - @ would run as a formula in a spreadsheet: quote it.
    if isinstance(cell, str) and cell[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + cell
    return cell


@require_role(*READERS_OF_HISTORY)
@require_GET
def history_csv(request: HttpRequest) -> StreamingHttpResponse:
    form = HistoryFilterForm(request.GET or None)
    team = permissions.current_team(request)
    audit.record(
        action=audit.AuditAction.CSV_EXPORT,
        actor=_actor(request),
        team=team,
        target="history",
        ip=audit.client_ip(request),
        details={"filters": request.GET.dict()},
    )
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    return _csv_response(_history_lines(_history_jobs(request, form)), f"imports-{stamp}.csv")


# --- Audit log ------------------------------------------------------------------------------


def _audit_events(request: HttpRequest, form: AuditFilterForm) -> QuerySet[audit.AuditEvent]:
    team = permissions.current_team(request)
    if team is None:
        return audit.AuditEvent.objects.none()
    # The team's own entries, and its members' sign-ins (which belong to no team), but only
    # from the moment each member joined: what they did before is none of the team's business.
    member_since = Membership.objects.filter(
        team=team, user_id=OuterRef("actor_id"), created_at__lte=OuterRef("at")
    )
    events = audit.AuditEvent.objects.filter(
        Q(team=team) | (Q(team__isnull=True, actor_id__isnull=False) & Exists(member_since))
    )
    if form.is_valid():
        data = form.cleaned_data
        if data["actor"]:
            events = events.filter(actor_name=data["actor"])
        if data["action"]:
            events = events.filter(action=data["action"])
        if data["since"]:
            events = events.filter(at__gte=_day_start(data["since"]))
        if data["until"]:
            events = events.filter(at__lt=_day_start(data["until"]) + timedelta(days=1))
        if data["q"]:
            events = events.filter(target__icontains=data["q"])
    return events.order_by("-at", "-id")


@require_role(*READERS_OF_HISTORY)
@require_GET
def audit_log(request: HttpRequest) -> HttpResponse:
    form = AuditFilterForm(request.GET or None)
    context = {
        "form": form,
        "actions": audit.AuditAction.choices,
        **_paged(request, _audit_events(request, form)),
    }
    return render(request, "importer/audit_log.html", context)


@require_role(*READERS_OF_HISTORY)
@require_GET
def audit_log_csv(request: HttpRequest) -> StreamingHttpResponse:
    form = AuditFilterForm(request.GET or None)
    events = _audit_events(request, form)
    audit.record(
        action=audit.AuditAction.CSV_EXPORT,
        actor=_actor(request),
        team=permissions.current_team(request),
        target="audit log",
        ip=audit.client_ip(request),
        details={"filters": request.GET.dict()},
    )

    def lines() -> Iterator[list[Any]]:
        yield ["id", "at", "who", "action", "target", "ip", "details", "hash"]
        for event in events.iterator(chunk_size=CSV_CHUNK):
            yield [
                event.pk,
                event.at.isoformat(),
                event.actor_name,
                event.action,
                event.target,
                event.ip or "",
                event.details,
                event.hash,
            ]

    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    return _csv_response(lines(), f"audit-{stamp}.csv")


# --- Credentials ----------------------------------------------------------------------------


@require_role(Role.ADMIN)
@require_http_methods(["GET", "POST"])
def credentials(request: HttpRequest) -> HttpResponse:
    team = permissions.current_team(request)
    assert team is not None  # noqa: S101 - require_role found a membership
    form = CredentialsForm(
        request.POST or None, initial={"region": team.region, "endpoint": team.endpoint}
    )
    if request.method == "POST" and form.is_valid():
        services.team_credentials_set(
            team=team, actor=_actor(request), ip=audit.client_ip(request), **form.cleaned_data
        )
        messages.success(request, "Credentials saved. The secret key will not be shown again.")
        return redirect("team_credentials")
    context = {"form": form, "team": team}
    return render(request, "importer/credentials.html", context, status=422 if form.errors else 200)


# --- Team-level actions ---------------------------------------------------------------------


@require_role(Role.ADMIN)
@require_POST
def snapshot_delete(request: HttpRequest, snapshot_id: str) -> HttpResponse:
    team = permissions.current_team(request)
    assert team is not None  # noqa: S101 - require_role found a membership
    try:
        services.snapshot_delete(
            team=team, actor=_actor(request), snapshot_id=snapshot_id, ip=audit.client_ip(request)
        )
    except services.SnapshotNotInAccount:
        raise Http404("No such snapshot in this team's account.") from None
    except (OscApiError, ValueError) as error:
        messages.error(request, f"The snapshot was not deleted: {error}")
        return redirect("dashboard")
    messages.success(request, f"Snapshot {snapshot_id} is being deleted.")
    return redirect("dashboard")


@require_role(*IMPORTERS)
@require_http_methods(["GET", "POST"])
def import_retry(request: HttpRequest, job_id: uuid.UUID) -> HttpResponse:
    """A failed import again, with a new pre-signed URL (the old one is gone by design)."""
    job = permissions.get_job_for_user(request, job_id)
    if job.state != JobState.ERROR or job.team_id != getattr(
        permissions.current_team(request), "pk", None
    ):
        raise Http404("Only a failed import of your current team can be retried.")
    initial = {"name": job.name, "description": job.description, "snapshot_size": job.snapshot_size}
    form = ImportSnapshotForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        assert form.parsed_url is not None  # noqa: S101 - set by a valid form
        new_job = services.import_create(
            team=job.team,
            user=_actor(request),
            name=form.cleaned_data["name"],
            description=form.cleaned_data["description"],
            url=form.parsed_url,
            snapshot_size=form.cleaned_data["snapshot_size"],
            dry_run=form.cleaned_data["dry_run"],
            ip=audit.client_ip(request),
        )
        messages.success(request, f"Import of {new_job.name} queued again with the new URL.")
        return redirect("import_detail", job_id=new_job.pk)
    context = {"form": form, "job": job}
    return render(
        request, "importer/import_retry.html", context, status=422 if form.errors else 200
    )
