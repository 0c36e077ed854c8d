from __future__ import annotations

import json
import uuid
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HTMX_STOP_POLLING

from importer.audit.addresses import client_ip
from importer.core.changes import TEAM_JOBS, poll_value, polled_tokens
from importer.core.formkeys import FormKeys
from importer.core.pages import polled_versions, version
from importer.core.sessions import cached_copy_key, is_signed_in
from importer.imports import services as imports_services
from importer.imports.forms import ImportSnapshotForm
from importer.imports.listing import (
    MAX_POLLED_ROWS,
    SORTS,
    STATE_FILTERS,
    Listing,
    dashboard_page,
    in_flight,
)
from importer.imports.models import ImportJob, JobState
from importer.imports.selectors import (
    get_job_for_user,
    jobs_for_user,
    jobs_of_current_team,
    snapshots_for_dashboard,
)
from importer.imports.services import SnapshotInUse, SnapshotNotInAccount, import_create
from importer.imports.tags import format_tag_lines
from importer.outscale.errors import OscApiError
from importer.presigned import fetch
from importer.presigned.policy import url_policy
from importer.presigned.urls import PresignedUrlError, parse_presigned_url
from importer.teams import permissions
from importer.teams.models import IMPORTERS, Role, TeamInvitation
from importer.teams.permissions import (
    actor,
    choose_team_url,
    current_team,
    memberships,
    must_choose_team,
    require_can_import,
    require_role,
    required_team,
)

# The dialog's idempotency keys (the job's id to be), signed for the user they are shown to.
IMPORT_FORM_KEYS = FormKeys("import-form")
form_key_signature = IMPORT_FORM_KEYS.signature


def _dashboard_without_team(request: HttpRequest) -> HttpResponse:
    """No current team: ask which one when there are several; else say why the page is empty.

    Nothing is listed and the API is not asked: there is no account of the user's to list.
    """
    if must_choose_team(request):
        return redirect(choose_team_url(request))
    context = {"invitations": TeamInvitation.objects.open_for(request.user.pk)}
    return render(request, "imports/no_team.html", context)


@login_required
@require_GET
def dashboard(request: HttpRequest) -> HttpResponse:
    team = current_team(request)
    if team is None:
        return _dashboard_without_team(request)
    # Before the rows are read (see importer.core.changes): what the page's poll compares.
    tokens = TEAM_JOBS.tokens([team.pk])
    listing = Listing.from_query(request.GET)
    api = snapshots_for_dashboard(team=team)
    # The dashboard is one team's account: its snapshots and its imports.
    jobs = jobs_of_current_team(request)
    page = dashboard_page(jobs, api.snapshots, listing)
    context = {
        "page": page,
        "listing": listing,
        "api": api,
        "state_filters": STATE_FILTERS,
        "sorts": SORTS,
        # Through the module, as require_can_import reads it: one place to stub it in a test.
        "can_import": permissions.can_import(request),
        "form": ImportSnapshotForm(),
        **IMPORT_FORM_KEYS.fields(request),
        "in_flight": in_flight(page.rows),
        "poll_tokens": [poll_value(owner, token) for owner, token in tokens.items()],
        "sort_toggle": listing.link(sort="oldest" if listing.newest_first else "newest"),
        # At the top of the first page only: paging on through the listing costs no more.
        "invitations": TeamInvitation.objects.open_for(
            request.user.pk if listing.cursor is None else None
        ),
    }
    return render(request, "imports/dashboard.html", context)


@never_cache
def imports_poll(request: HttpRequest) -> HttpResponse:
    """The changed rows of a page, as out-of-band swaps.

    204: nothing changed. 286 (htmx: stop polling): none of the rows is in flight any more.
    An unchanged poll is answered from the cache alone, before the user is even loaded: see
    `_nothing_changed`.
    """
    if request.method == "GET" and _nothing_changed(request):
        return HttpResponse(status=204)
    return _changed_rows(request)


def _nothing_changed(request: HttpRequest) -> bool:
    """The page's team change versions all still current: nothing it shows has changed since.

    One cache read, no query: the versions and the session's cached copy in one round trip. It
    asks a signed-in session (a logout deletes it), not the user's row: a 204 tells nothing but
    "no change", and the next change sends the poll down `_changed_rows`, which checks the user
    and their teams in full. A session whose cached copy is gone (evicted, or more than
    importer.core.sessions.CACHED_SECONDS old) goes there too, and is cached again. A page only
    carries the versions of the teams whose rows it shows.
    """
    session = cached_copy_key(request)
    if session is None or not request.GET.getlist("v"):
        return False
    same, cached_session = TEAM_JOBS.unchanged(
        polled_tokens(request.GET.getlist("tv")), along=session
    )
    return same and is_signed_in(cached_session)


@login_required
@require_GET
def _changed_rows(request: HttpRequest) -> HttpResponse:
    """From the database, in one query (two for a job's page, with its history)."""
    # Before the rows: a change committed after this read replaces these tokens (see
    # importer.core.changes), so the page can never keep a token newer than what it shows.
    tokens = TEAM_JOBS.tokens(polled_tokens(request.GET.getlist("tv")))
    versions = polled_versions(request.GET, "v", limit=MAX_POLLED_ROWS)
    detail = request.GET.get("view") == "detail"
    polled = jobs_for_user(request).select_related("submitted_by").filter(pk__in=versions)
    if detail:
        polled = polled.prefetch_related("events")
    jobs = list(polled)
    changed = [job for job in jobs if version(job) != versions[job.pk]]
    found = {job.pk for job in jobs}
    gone = [job_id for job_id in versions if job_id not in found]
    still_in_flight = any(not job.is_terminal for job in jobs)
    # Only the tokens of teams whose rows the user still sees go back to the page.
    seen_teams = {job.team_id for job in jobs}
    kept = [poll_value(team, token) for team, token in tokens.items() if team in seen_teams]
    if not changed and not gone and still_in_flight and set(kept) == set(request.GET.getlist("tv")):
        return HttpResponse(status=204)
    html = render_to_string(
        "imports/poll.html",
        # No request: the rows need no context processor, and so no query of theirs.
        {
            "changed": changed,
            # Announced in the page's live region: completion and failure are heard, not only seen.
            "ended": [job for job in changed if job.is_terminal],
            "gone": gone,
            "detail": detail,
            # Renewed where the page sent some (none is left of a team it no longer sees).
            "renew_tokens": bool(request.GET.getlist("tv")),
            "poll_tokens": kept,
        },
    )
    return HttpResponse(html, status=200 if still_in_flight else HTMX_STOP_POLLING)


NOT_YOUR_FORM = (
    "This form was opened by another user, or changed since: nothing was imported. It has been "
    "renewed for you; check the fields and press Import again."
)


def _import_fields(form: ImportSnapshotForm) -> dict[str, Any]:
    """What a valid import form asks `import_create` for."""
    assert form.parsed_url is not None  # noqa: S101 - set by a valid form
    data = form.cleaned_data
    return {
        "name": data["name"],
        "description": data["description"],
        "url": form.parsed_url,
        "snapshot_size": data["snapshot_size"],
        "dry_run": data["dry_run"],
        "tags": data["tags"],
    }


def _made_by_key(request: HttpRequest, key: uuid.UUID) -> ImportJob | None:
    """The job this user's form already made under `key` (never someone else's)."""
    return jobs_for_user(request).filter(pk=key, submitted_by=request.user.pk).first()


def _create_once(
    request: HttpRequest, form: ImportSnapshotForm, key: uuid.UUID
) -> tuple[ImportJob, bool]:
    """Creates the job under the form's key; a repeated key gets the job it already made."""
    existing = _made_by_key(request, key)
    if existing is not None:
        return existing, False
    team = current_team(request)
    if team is None:
        raise PermissionDenied("You belong to no team to import into.")
    fields = _import_fields(form)
    try:
        job = import_create(
            team=team, user=actor(request), job_id=key, ip=client_ip(request), **fields
        )
    except IntegrityError:
        if not ImportJob.objects.filter(pk=key).exists():
            raise  # not a repeated key: a real problem, not to be hidden
        # The twin request won the insert; answer with its job.
        existing = _made_by_key(request, key)
        if existing is None:
            raise PermissionDenied("This form was already used.") from None
        return existing, False
    return job, True


def _form_context(
    request: HttpRequest, form: ImportSnapshotForm, key: uuid.UUID | None, *, in_dialog: bool
) -> dict[str, object]:
    return {"form": form, **IMPORT_FORM_KEYS.fields(request, key), "in_dialog": in_dialog}


@login_required
@require_http_methods(["GET", "POST"])
def import_new(request: HttpRequest) -> HttpResponse:
    """The dialog's form over htmx, and the same form as a page without JavaScript."""
    in_dialog = bool(getattr(request, "htmx", False))
    require_can_import(request)
    form = ImportSnapshotForm(request.POST or None)
    key = IMPORT_FORM_KEYS.posted(request) if request.method == "POST" else None
    if request.method == "POST" and key is None:
        form.add_error(None, forms.ValidationError(NOT_YOUR_FORM, code="not_your_form"))
    if key is not None and form.is_valid():
        job, created = _create_once(request, form, key)
        if not in_dialog:
            return redirect("import_detail", job_id=job.pk)
        return _created_in_dialog(request, job, created=created)
    status = 422 if request.method == "POST" else 200
    template = "imports/_import_form.html" if in_dialog else "imports/import_new.html"
    context = _form_context(request, form, key, in_dialog=in_dialog)
    return render(request, template, context, status=status)


def _created_in_dialog(request: HttpRequest, job: ImportJob, *, created: bool) -> HttpResponse:
    context = _form_context(request, ImportSnapshotForm(), None, in_dialog=True)
    context.update({"job": job, "created": created})
    response = render(request, "imports/import_created.html", context)
    response["HX-Trigger"] = json.dumps({"portal:imported": {"job": str(job.pk)}})
    return response


@login_required
@require_POST
def import_inspect(request: HttpRequest) -> HttpResponse:
    """Reads the object's first bytes and says what it is and what size to use."""
    require_can_import(request)
    raw = request.POST.get("presigned_url", "").strip()
    context: dict[str, object] = {}
    if not raw:
        return render(request, "imports/inspection.html", {"empty": True})
    try:
        url = parse_presigned_url(raw, policy=url_policy(), now=timezone.now())
    except PresignedUrlError as error:
        context["error"] = str(error)
    else:
        context["url"] = url
        context["inspection"] = fetch.inspect_presigned_url(url, policy=url_policy())
    return render(request, "imports/inspection.html", context)


@login_required
@require_GET
def import_detail(request: HttpRequest, job_id: uuid.UUID) -> HttpResponse:
    # Before the job is read (see importer.core.changes); the user's teams, as the job is one's.
    tokens = TEAM_JOBS.tokens(membership.team_id for membership in memberships(request))
    job = get_job_for_user(request, job_id)
    poll_tokens = [poll_value(job.team_id, tokens[job.team_id])] if job.team_id in tokens else []
    return render(request, "imports/import_detail.html", {"job": job, "poll_tokens": poll_tokens})


@require_role(Role.ADMIN)
@require_POST
def snapshot_delete(request: HttpRequest, snapshot_id: str) -> HttpResponse:
    team = required_team(request)
    try:
        imports_services.snapshot_delete(
            team=team, actor=actor(request), snapshot_id=snapshot_id, ip=client_ip(request)
        )
    except SnapshotNotInAccount:
        raise Http404("No such snapshot in this team's account.") from None
    except (SnapshotInUse, OscApiError, ValueError) as error:
        messages.error(request, f"The snapshot was not deleted: {error}")
        return redirect("dashboard")
    messages.success(request, f"Snapshot {snapshot_id} is being deleted.")
    return redirect("dashboard")


@require_role(*IMPORTERS)
@require_http_methods(["GET", "POST"])
def import_retry(request: HttpRequest, job_id: uuid.UUID) -> HttpResponse:
    """A failed import again, with a new pre-signed URL (the old one is gone by design)."""
    job = get_job_for_user(request, job_id)
    if job.state != JobState.ERROR or job.team_id != getattr(current_team(request), "pk", None):
        raise Http404("Only a failed import of your current team can be retried.")
    initial = {
        "name": job.name,
        "description": job.description,
        "snapshot_size": job.snapshot_size,
        "tags": format_tag_lines(job.tags),
    }
    form = ImportSnapshotForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        new_job = import_create(
            team=job.team, user=actor(request), ip=client_ip(request), **_import_fields(form)
        )
        messages.success(request, f"Import of {new_job.name} queued again with the new URL.")
        return redirect("import_detail", job_id=new_job.pk)
    context = {"form": form, "job": job}
    return render(request, "imports/import_retry.html", context, status=422 if form.errors else 200)
