from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django import forms
from django.contrib.auth.decorators import login_required
from django.core import signing
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError
from django.db.models import Q
from django.http import HttpRequest, HttpResponse, JsonResponse, QueryDict
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HTMX_STOP_POLLING

from importer import audit, permissions, presigned, services
from importer.forms import ImportSnapshotForm, url_policy
from importer.health import health_report
from importer.invitations import TeamInvitation
from importer.models import (
    TERMINAL_STATES,
    ImportJob,
    ImportJobQuerySet,
    JobState,
    Team,
)
from importer.outscale import Snapshot

PAGE_SIZE = 25
# A poll names at most this many rows: more than a page ever holds in flight.
MAX_POLLED_ROWS = 200
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Every job id (a UUID in text) sorts between these two; snapshot ids ("snap-...") sort after.
_LOWEST_UUID = "00000000-0000-0000-0000-000000000000"
_HIGHEST_UUID = "ffffffff-ffff-ffff-ffff-ffffffffffff"

STATE_FILTERS = {
    "active": "In progress",
    "completed": "Completed",
    "error": "Failed",
}
SORTS = {"newest": "Newest first", "oldest": "Oldest first"}


@require_GET
@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    status, body = health_report(request)
    return JsonResponse(body, status=status)


# --- Who sees and does what (the one seam the team permissions replace) ----------------------


def _jobs_for_user(request: HttpRequest) -> ImportJobQuerySet:
    """Every import of the user's teams: another team's job answers 404."""
    return permissions.jobs_for_user(request)


def _get_job_for_user(request: HttpRequest, job_id: uuid.UUID) -> ImportJob:
    return permissions.get_job_for_user(request, job_id)


def _current_team(request: HttpRequest) -> Team | None:
    """The team whose account the dashboard lists and new imports go to."""
    return permissions.current_team(request)


def _can_import(request: HttpRequest) -> bool:
    """Operators and team admins of the current team import; auditors only read."""
    return permissions.can_import(request)


def _require_import_permission(request: HttpRequest) -> None:
    if permissions.in_no_team(request):
        raise PermissionDenied(permissions.NO_TEAM_MESSAGE)
    if permissions.must_choose_team(request):
        raise PermissionDenied(permissions.CHOOSE_TEAM_MESSAGE)
    if not _can_import(request):
        raise PermissionDenied("You may not import snapshots.")


# --- Rows of the dashboard ------------------------------------------------------------------


def job_version(job: ImportJob) -> int:
    """`updated_at` in whole microseconds: what the page last saw of a row, compared exactly."""
    return (job.updated_at - EPOCH) // timedelta(microseconds=1)


@dataclass(frozen=True)
class SnapshotState:
    state: str
    label: str


def snapshot_state(snapshot: Snapshot) -> SnapshotState:
    """The API's state in the portal's words, for snapshots the portal did not import."""
    if snapshot.is_completed:
        return SnapshotState(JobState.COMPLETED, "Completed")
    if snapshot.is_failed:
        return SnapshotState(JobState.ERROR, "Failed")
    return SnapshotState(JobState.IN_PROGRESS, snapshot.state.capitalize() or "Importing")


@dataclass(frozen=True)
class Row:
    """One line of the dashboard: an import job of ours, or a snapshot only the API knows."""

    key: str
    created_at: datetime
    job: ImportJob | None = None
    snapshot: Snapshot | None = None

    @property
    def sort_key(self) -> tuple[datetime, str]:
        return (self.created_at, self.key)

    @property
    def name(self) -> str:
        if self.job is not None:
            return self.job.name
        return self.snapshot.tags.get("Name", "") if self.snapshot else ""

    @property
    def state(self) -> SnapshotState:
        if self.job is not None:
            return SnapshotState(self.job.state, self.job.get_state_display())
        assert self.snapshot is not None  # noqa: S101 - a row holds one or the other
        return snapshot_state(self.snapshot)


@dataclass(frozen=True)
class Cursor:
    at: datetime
    key: str

    def encode(self) -> str:
        return f"{self.at.isoformat()}~{self.key}"

    @classmethod
    def decode(cls, raw: str) -> Cursor | None:
        at_text, _, key = raw.partition("~")
        try:
            at = datetime.fromisoformat(at_text)
        except ValueError:
            return None
        if not key or len(key) > 100:
            return None
        return cls(at=at if at.tzinfo else at.replace(tzinfo=UTC), key=key)


@dataclass(frozen=True)
class Listing:
    q: str
    state: str
    sort: str
    after: Cursor | None
    before: Cursor | None

    @classmethod
    def from_query(cls, query: QueryDict) -> Listing:
        state = query.get("state", "")
        sort = query.get("sort", "newest")
        return cls(
            # NUL and other controls match nothing and PostgreSQL refuses NUL outright.
            q="".join(ch for ch in query.get("q", "") if ch.isprintable()).strip()[:200],
            state=state if state in STATE_FILTERS else "",
            sort=sort if sort in SORTS else "newest",
            after=Cursor.decode(query.get("after", "")),
            before=Cursor.decode(query.get("before", "")),
        )

    @property
    def newest_first(self) -> bool:
        return self.sort == "newest"

    @property
    def backwards(self) -> bool:
        return self.before is not None and self.after is None

    @property
    def cursor(self) -> Cursor | None:
        return self.before if self.backwards else self.after

    @property
    def descending(self) -> bool:
        """The order rows are read in: reversed when paging back."""
        return self.newest_first != self.backwards

    def link(self, **changes: str) -> str:
        params = {"q": self.q, "state": self.state, "sort": self.sort, **changes}
        query = QueryDict(mutable=True)
        query.update({key: value for key, value in params.items() if value})
        return "?" + query.urlencode() if query else "?"


def _filter_jobs(jobs: ImportJobQuerySet, listing: Listing) -> ImportJobQuerySet:
    if listing.state == "active":
        jobs = jobs.unfinished()
    elif listing.state:
        jobs = jobs.filter(state=listing.state)
    if listing.q:
        jobs = jobs.filter(
            Q(name__icontains=listing.q)
            | Q(snapshot_id__icontains=listing.q)
            | Q(description__icontains=listing.q)
        )
    return jobs


def _job_keyset(cursor: Cursor, *, descending: bool) -> Q:
    """Rows past `cursor` in (created_at, id) order: an index range scan, however deep the page."""
    op = "lt" if descending else "gt"
    try:
        tie = Q(**{f"id__{op}": uuid.UUID(cursor.key)})
    except ValueError:
        # The cursor is an API snapshot's id: decide for all tied job ids at once.
        every_id_passes = cursor.key > _HIGHEST_UUID if descending else cursor.key < _LOWEST_UUID
        tie = Q() if every_id_passes else Q(pk__in=[])
    return Q(**{f"created_at__{op}": cursor.at}) | (Q(created_at=cursor.at) & tie)


def _job_rows(jobs: ImportJobQuerySet, listing: Listing, limit: int) -> list[Row]:
    jobs = _filter_jobs(jobs, listing)
    if listing.cursor is not None:
        jobs = jobs.filter(_job_keyset(listing.cursor, descending=listing.descending))
    order = ("-created_at", "-id") if listing.descending else ("created_at", "id")
    return [
        Row(key=str(job.pk), created_at=job.created_at, job=job)
        for job in jobs.select_related("submitted_by").order_by(*order)[:limit]
    ]


def _snapshot_matches(snapshot: Snapshot, listing: Listing) -> bool:
    state = snapshot_state(snapshot).state
    if listing.state == "active" and state in TERMINAL_STATES:
        return False
    if listing.state in (JobState.COMPLETED, JobState.ERROR) and state != listing.state:
        return False
    if listing.q:
        needle = listing.q.casefold()
        haystack = (snapshot.tags.get("Name", ""), snapshot.snapshot_id, snapshot.description)
        return any(needle in text.casefold() for text in haystack)
    return True


def _snapshot_rows(
    snapshots: Sequence[Snapshot], jobs: ImportJobQuerySet, listing: Listing, limit: int
) -> list[Row]:
    """The API's snapshots that no job of ours stands for, on the same keyset as the jobs."""
    if not snapshots:
        return []
    ours = set(
        jobs.filter(snapshot_id__in=[s.snapshot_id for s in snapshots]).values_list(
            "snapshot_id", flat=True
        )
    )
    rows = [
        Row(key=s.snapshot_id, created_at=s.creation_date or EPOCH, snapshot=s)
        for s in snapshots
        if s.snapshot_id not in ours and _snapshot_matches(s, listing)
    ]
    cursor = listing.cursor
    if cursor is not None:
        edge = (cursor.at, cursor.key)
        rows = [
            row
            for row in rows
            if (row.sort_key < edge if listing.descending else row.sort_key > edge)
        ]
    rows.sort(key=lambda row: row.sort_key, reverse=listing.descending)
    return rows[:limit]


@dataclass(frozen=True)
class Page:
    rows: list[Row]
    newer: str
    older: str


def _page(jobs: ImportJobQuerySet, snapshots: Sequence[Snapshot], listing: Listing) -> Page:
    limit = PAGE_SIZE + 1
    merged = _job_rows(jobs, listing, limit) + _snapshot_rows(snapshots, jobs, listing, limit)
    merged.sort(key=lambda row: row.sort_key, reverse=listing.descending)
    more = len(merged) > PAGE_SIZE
    rows = merged[:PAGE_SIZE]
    if listing.backwards:
        rows.reverse()
    if not rows:
        return Page(rows=[], newer="", older="")
    first, last = Cursor(rows[0].created_at, rows[0].key), Cursor(rows[-1].created_at, rows[-1].key)
    has_previous = more if listing.backwards else listing.cursor is not None
    has_next = True if listing.backwards else more
    return Page(
        rows=rows,
        newer=listing.link(before=first.encode()) if has_previous else "",
        older=listing.link(after=last.encode()) if has_next else "",
    )


def _in_flight(rows: Iterable[Row]) -> bool:
    return any(row.job is not None and not row.job.is_terminal for row in rows)


def _dashboard_without_team(request: HttpRequest) -> HttpResponse:
    """No current team: ask which one when there are several; else say why the page is empty.

    Nothing is listed and the API is not asked: there is no account of the user's to list.
    """
    if permissions.must_choose_team(request):
        return redirect(permissions.choose_team_url(request))
    context = {"invitations": TeamInvitation.objects.open_for(request.user.pk)}
    return render(request, "importer/no_team.html", context)


@login_required
@require_GET
def dashboard(request: HttpRequest) -> HttpResponse:
    team = _current_team(request)
    if team is None:
        return _dashboard_without_team(request)
    listing = Listing.from_query(request.GET)
    api = services.snapshots_for_dashboard(team=team)
    # The dashboard is one team's account: its snapshots and its imports.
    jobs = permissions.jobs_of_current_team(request)
    page = _page(jobs, api.snapshots, listing)
    context = {
        "page": page,
        "listing": listing,
        "api": api,
        "state_filters": STATE_FILTERS,
        "sorts": SORTS,
        "can_import": _can_import(request),
        "form": ImportSnapshotForm(inspect=False),
        **_form_key(request),
        "in_flight": _in_flight(page.rows),
        "sort_toggle": listing.link(sort="oldest" if listing.newest_first else "newest"),
        # At the top of the first page only: paging on through the listing costs no more.
        "invitations": TeamInvitation.objects.open_for(
            request.user.pk if listing.cursor is None else None
        ),
    }
    return render(request, "importer/dashboard.html", context)


# --- Live progress --------------------------------------------------------------------------


def _polled_versions(query: QueryDict) -> dict[uuid.UUID, int]:
    """`v=<job id>.<version>` pairs the page holds; anything malformed is ignored."""
    versions: dict[uuid.UUID, int] = {}
    for raw in query.getlist("v")[:MAX_POLLED_ROWS]:
        job_id, _, version = raw.partition(".")
        try:
            versions[uuid.UUID(job_id)] = int(version)
        except ValueError:
            continue
    return versions


@login_required
@require_GET
@never_cache
def imports_poll(request: HttpRequest) -> HttpResponse:
    """The changed rows of a page, as out-of-band swaps; from the database only, in one query.

    204: nothing changed. 286 (htmx: stop polling): none of the rows is in flight any more.
    """
    versions = _polled_versions(request.GET)
    detail = request.GET.get("view") == "detail"
    polled = _jobs_for_user(request).select_related("submitted_by").filter(pk__in=versions)
    if detail:
        polled = polled.prefetch_related("events")
    jobs = list(polled)
    changed = [job for job in jobs if job_version(job) != versions[job.pk]]
    found = {job.pk for job in jobs}
    gone = [job_id for job_id in versions if job_id not in found]
    still_in_flight = any(not job.is_terminal for job in jobs)
    if not changed and not gone and still_in_flight:
        return HttpResponse(status=204)
    html = render_to_string(
        "importer/poll.html",
        # No request: the rows need no context processor, and so no query of theirs.
        {"changed": changed, "gone": gone, "detail": detail},
    )
    return HttpResponse(html, status=200 if still_in_flight else HTMX_STOP_POLLING)


# --- The IMPORT SNAPSHOT dialog -------------------------------------------------------------


NOT_YOUR_FORM = (
    "This form was opened by another user, or changed since: nothing was imported. It has been "
    "renewed for you; check the fields and press Import again."
)


def _key_signer(user_id: object) -> signing.Signer:
    # The user's id is in the salt: a key signed for one user never verifies for another, so a
    # key copied from someone else's form can neither take their job nor spend their key.
    return signing.Signer(salt=f"importer.import-form.user-{user_id}")


def form_key_signature(user_id: object, key: uuid.UUID) -> str:
    """What binds a form's idempotency key to the user it was shown to."""
    return _key_signer(user_id).signature(str(key))


def _form_key(request: HttpRequest, key: uuid.UUID | None = None) -> dict[str, object]:
    """The form's idempotency key (the job's id to be) and its signature for this user."""
    key = key or uuid.uuid4()
    return {
        "idempotency_key": key,
        "idempotency_signature": form_key_signature(request.user.pk, key),
    }


def _idempotency_key(request: HttpRequest) -> uuid.UUID | None:
    """The posted key when it was signed for this user; None when it was not.

    A post without a key (a script) gets a fresh one, as a form opened anew would.
    """
    raw = request.POST.get("idempotency_key", "")
    if not raw:
        return uuid.uuid4()
    signer = _key_signer(request.user.pk)
    signature = request.POST.get("idempotency_signature", "")
    try:
        return uuid.UUID(signer.unsign(f"{raw}{signer.sep}{signature}"))
    except (signing.BadSignature, ValueError):
        return None


def _create_once(
    request: HttpRequest, form: ImportSnapshotForm, key: uuid.UUID
) -> tuple[ImportJob, bool]:
    """Creates the job under the form's key; a repeated key gets the job it already made."""
    existing = _jobs_for_user(request).filter(pk=key, submitted_by=request.user.pk).first()
    if existing is not None:
        return existing, False
    assert form.parsed_url is not None  # noqa: S101 - set by a valid form
    team = _current_team(request)
    if team is None:
        raise PermissionDenied("You belong to no team to import into.")
    try:
        job = services.import_create(
            team=team,
            user=request.user,  # type: ignore[arg-type]
            name=form.cleaned_data["name"],
            description=form.cleaned_data["description"],
            url=form.parsed_url,
            snapshot_size=form.cleaned_data["snapshot_size"],
            dry_run=form.cleaned_data["dry_run"],
            job_id=key,
            ip=audit.client_ip(request),
        )
    except IntegrityError:
        if not ImportJob.objects.filter(pk=key).exists():
            raise  # not a repeated key: a real problem, not to be hidden
        # The twin request won the insert; answer with its job (never someone else's).
        existing = _jobs_for_user(request).filter(pk=key, submitted_by=request.user.pk).first()
        if existing is None:
            raise PermissionDenied("This form was already used.") from None
        return existing, False
    return job, True


def _form_context(
    request: HttpRequest, form: ImportSnapshotForm, key: uuid.UUID | None, *, in_dialog: bool
) -> dict[str, object]:
    return {"form": form, **_form_key(request, key), "in_dialog": in_dialog}


@login_required
@require_http_methods(["GET", "POST"])
def import_new(request: HttpRequest) -> HttpResponse:
    """The dialog's form over htmx, and the same form as a page without JavaScript."""
    in_dialog = bool(getattr(request, "htmx", False))
    _require_import_permission(request)
    form = ImportSnapshotForm(request.POST or None)
    key = _idempotency_key(request) if request.method == "POST" else None
    if request.method == "POST" and key is None:
        form.add_error(None, forms.ValidationError(NOT_YOUR_FORM, code="not_your_form"))
    if key is not None and form.is_valid():
        job, created = _create_once(request, form, key)
        if not in_dialog:
            return redirect("import_detail", job_id=job.pk)
        return _created_in_dialog(request, job, created=created)
    status = 422 if request.method == "POST" else 200
    template = "importer/_import_form.html" if in_dialog else "importer/import_new.html"
    context = _form_context(request, form, key, in_dialog=in_dialog)
    return render(request, template, context, status=status)


def _created_in_dialog(request: HttpRequest, job: ImportJob, *, created: bool) -> HttpResponse:
    context = _form_context(request, ImportSnapshotForm(inspect=False), None, in_dialog=True)
    context.update({"job": job, "created": created})
    response = render(request, "importer/import_created.html", context)
    response["HX-Trigger"] = json.dumps({"portal:imported": {"job": str(job.pk)}})
    return response


@login_required
@require_POST
def import_inspect(request: HttpRequest) -> HttpResponse:
    """Reads the object's first bytes and says what it is and what size to use."""
    _require_import_permission(request)
    raw = request.POST.get("presigned_url", "").strip()
    context: dict[str, object] = {}
    if not raw:
        return render(request, "importer/inspection.html", {"empty": True})
    try:
        url = presigned.parse_presigned_url(raw, policy=url_policy(), now=timezone.now())
    except presigned.PresignedUrlError as error:
        context["error"] = str(error)
    else:
        context["url"] = url
        context["inspection"] = presigned.inspect_presigned_url(url, policy=url_policy())
    return render(request, "importer/inspection.html", context)


@login_required
@require_GET
def import_detail(request: HttpRequest, job_id: uuid.UUID) -> HttpResponse:
    job = _get_job_for_user(request, job_id)
    return render(request, "importer/import_detail.html", {"job": job})
