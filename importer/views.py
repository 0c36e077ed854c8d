from __future__ import annotations

import uuid

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from importer import presigned, services
from importer.forms import ImportSnapshotForm, url_policy
from importer.health import check_broker, check_database
from importer.models import ImportJob, WorkerHeartbeat


@require_GET
@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    database_ok, database_detail = check_database()
    broker_ok, broker_detail = check_broker()
    body: dict[str, object] = {
        "status": "ok" if database_ok and broker_ok else "unavailable",
        "database": {"ok": database_ok, "detail": database_detail},
        "broker": {"ok": broker_ok, "detail": broker_detail},
    }
    if database_ok:
        latest = WorkerHeartbeat.objects.order_by("-seen_at").first()
        body["last_worker_heartbeat"] = latest.seen_at.isoformat() if latest else None
    return JsonResponse(body, status=200 if database_ok and broker_ok else 503)


@login_required
@require_GET
def dashboard(request: HttpRequest) -> HttpResponse:
    jobs = ImportJob.objects.select_related("submitted_by")[:50]
    return render(request, "importer/dashboard.html", {"jobs": jobs})


@login_required
@require_http_methods(["GET", "POST"])
def import_new(request: HttpRequest) -> HttpResponse:
    form = ImportSnapshotForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        assert form.parsed_url is not None  # noqa: S101 - set by a valid form
        job = services.import_create(
            user=request.user,  # type: ignore[arg-type]
            name=form.cleaned_data["name"],
            description=form.cleaned_data["description"],
            url=form.parsed_url,
            snapshot_size=form.cleaned_data["snapshot_size"],
            dry_run=form.cleaned_data["dry_run"],
        )
        return redirect("import_detail", job_id=job.pk)
    status = 422 if request.method == "POST" else 200
    return render(request, "importer/import_new.html", {"form": form}, status=status)


@login_required
@require_POST
def import_inspect(request: HttpRequest) -> HttpResponse:
    """Reads the object's first bytes and says what it is and what size to use."""
    raw = request.POST.get("presigned_url", "")
    context: dict[str, object] = {}
    try:
        url = presigned.parse_presigned_url(raw, policy=url_policy(), now=timezone.now())
    except presigned.PresignedUrlError as error:
        context["error"] = str(error)
    else:
        context["url"] = url
        context["inspection"] = presigned.inspect_presigned_url(url, policy=url_policy())
    return render(request, "importer/inspection.html", context)


def _get_job_for_user(request: HttpRequest, job_id: uuid.UUID) -> ImportJob:
    job = ImportJob.objects.select_related("submitted_by").filter(pk=job_id).first()
    if job is None:
        raise Http404("No such import.")
    return job


@login_required
@require_GET
def import_detail(request: HttpRequest, job_id: uuid.UUID) -> HttpResponse:
    job = _get_job_for_user(request, job_id)
    return render(request, "importer/import_detail.html", {"job": job, "events": job.events.all()})
