"""IMPORT SNAPSHOTS: a manifest previewed row by row, then imported as one batch; its page,
its CSV export and the retry of its failed rows.

Between the preview and the import, the manifest travels back encrypted (`encrypt_text`): the
page never holds a URL's signature in clear, and the import checks every row again, fresh.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods

from importer.audit.addresses import client_ip
from importer.audit.downloads import audited_csv
from importer.batches import retry, services
from importer.batches.forms import ManifestForm, preview_manifest
from importer.batches.models import ImportBatch
from importer.batches.progress import latest_per_name, summarize, throttle_note
from importer.batches.rows import Preview
from importer.core.crypto import DecryptionError, decrypt_text, encrypt_text
from importer.core.formkeys import FormKeys
from importer.core.pages import CSV_CHUNK
from importer.imports.models import ImportJob, ImportJobEvent, ImportJobQuerySet, JobState
from importer.teams.models import IMPORTERS, READERS_OF_HISTORY, Role
from importer.teams.permissions import (
    actor,
    can_import,
    current_role,
    require_role,
    required_team,
)

BATCH_FORM_KEYS = FormKeys("batch-form")
RETRY_FORM_KEYS = FormKeys("batch-retry-form")
# What the lead's throttling writes at the start of the event of each job sent back to wait.
THROTTLED_PREFIX = "Throttled:"

STALE_PREVIEW = (
    "This preview was made for someone else, or too long ago: paste the manifest again and "
    "preview it."
)


def _content_text(content: bytes | str) -> str | None:
    """The manifest as text for its round trip, or None when it is not UTF-8 (the preview has
    already said so)."""
    if isinstance(content, str):
        return content
    try:
        return content.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None


@require_role(*IMPORTERS)
@require_http_methods(["GET", "POST"])
def batch_new(request: HttpRequest) -> HttpResponse:
    """The manifest's form, then its preview with the button that imports the ready rows."""
    form = ManifestForm(
        request.POST if request.method == "POST" else None,
        request.FILES if request.method == "POST" else None,
    )
    context: dict[str, Any] = {"form": form}
    if request.method == "POST" and form.is_valid():
        content = form.cleaned_data["content"]
        preview = preview_manifest(content, filename=form.cleaned_data["filename"])
        text = _content_text(content)
        context.update(
            # A new, empty form: the manifest's URLs are not written back into the page.
            form=ManifestForm(),
            preview=preview,
            filename=form.cleaned_data["filename"],
            manifest_token=encrypt_text(text) if text is not None and preview.importable else "",
            **BATCH_FORM_KEYS.fields(request),
        )
        status = 200 if preview.importable else 422
        return render(request, "batches/batch_new.html", context, status=status)
    status = 422 if request.method == "POST" else 200
    return render(request, "batches/batch_new.html", context, status=status)


@require_role(*IMPORTERS)
@require_http_methods(["POST"])
def batch_create(request: HttpRequest) -> HttpResponse:
    """Imports the ready rows of the previewed manifest (checked again now) as one batch."""
    key = BATCH_FORM_KEYS.posted(request)
    try:
        text = decrypt_text(request.POST.get("manifest_token", ""))
    except DecryptionError:
        text = None
    filename = request.POST.get("filename", "")[:255]
    if key is None or text is None:
        context = {"form": ManifestForm(), "form_error": STALE_PREVIEW}
        return render(request, "batches/batch_new.html", context, status=422)
    preview = preview_manifest(text, filename=filename)
    try:
        batch, _ = services.batch_create(
            team=required_team(request),
            user=actor(request),
            preview=preview,
            key=key,
            source_name=filename,
            ip=client_ip(request),
        )
    except services.NothingToImport as error:
        context = {"form": ManifestForm(), "preview": preview, "form_error": str(error)}
        return render(request, "batches/batch_new.html", context, status=422)
    return redirect("batch_detail", batch_id=batch.pk)


def _batch_of_team(request: HttpRequest, batch_id: uuid.UUID) -> ImportBatch:
    batch = (
        ImportBatch.objects.filter(pk=batch_id, team=required_team(request))
        .select_related("created_by", "team")
        .first()
    )
    if batch is None:
        raise Http404("No such batch in this team.")
    return batch


def _page_context(request: HttpRequest, batch: ImportBatch) -> dict[str, Any]:
    """What the batch page and its polled fragment show: its rows (the latest job of each
    name), their summary, the failed ones and the API's throttling."""
    jobs = list(batch.jobs.order_by("created_at", "id"))
    rows = latest_per_name(jobs)
    now = timezone.now()
    answers = ImportJobEvent.objects.filter(
        job__batch=batch, message__startswith=THROTTLED_PREFIX
    ).count()
    return {
        "batch": batch,
        "jobs": rows,
        "retried": len(jobs) - len(rows),
        "summary": summarize(rows, now=now),
        "failed_rows": [row for row in rows if row.state == JobState.ERROR],
        "throttling": throttle_note(until=batch.team.api_throttled_until, answers=answers, now=now),
        "polling": any(not row.is_terminal for row in rows),
        "can_import": can_import(request),
        "reads_history": current_role(request) in READERS_OF_HISTORY,
    }


@require_role(*Role.values)
@require_GET
def batch_detail(request: HttpRequest, batch_id: uuid.UUID) -> HttpResponse:
    """The batch's progress, followed live; its failed rows, with the form that retries them."""
    batch = _batch_of_team(request, batch_id)
    context = _page_context(request, batch)
    if getattr(request, "htmx", False):
        return render(request, "batches/_batch_progress.html", context)
    if context["can_import"] and context["failed_rows"]:
        context.update(_retry_form_context(context["failed_rows"]))
    return render(request, "batches/batch_detail.html", context)


def _retry_form_context(failed: list[ImportJob]) -> dict[str, Any]:
    initial = {"manifest": retry.failed_rows_manifest(failed)}
    return {"retry_form": ManifestForm(initial=initial)}


@require_role(*IMPORTERS)
@require_http_methods(["GET", "POST"])
def batch_retry(request: HttpRequest, batch_id: uuid.UUID) -> HttpResponse:
    """RETRY FAILED ROWS: a manifest for them (new URLs), previewed, each row matched by name."""
    batch = _batch_of_team(request, batch_id)
    failed_jobs = retry.failed_jobs(batch)
    failed = {job.name for job in failed_jobs}
    posted = request.method == "POST"
    form = ManifestForm(request.POST if posted else None, request.FILES if posted else None)
    context: dict[str, Any] = {"batch": batch, "retry_form": form, "failed_rows": failed_jobs}
    if not posted:
        context.update(_retry_form_context(failed_jobs))
        return render(request, "batches/batch_retry.html", context)
    if not form.is_valid():
        return render(request, "batches/batch_retry.html", context, status=422)
    content = form.cleaned_data["content"]
    preview = retry.match_failed(
        preview_manifest(content, filename=form.cleaned_data["filename"]), failed
    )
    text = _content_text(content)
    context.update(
        retry_form=ManifestForm(),  # the URLs are not written back into the page
        preview=preview,
        filename=form.cleaned_data["filename"],
        manifest_token=encrypt_text(text) if text is not None and preview.importable else "",
        **RETRY_FORM_KEYS.fields(request),
    )
    return render(request, "batches/batch_retry.html", context, status=_status(preview))


def _status(preview: Preview) -> int:
    return 200 if preview.importable else 422


@require_role(*IMPORTERS)
@require_http_methods(["POST"])
def batch_retry_confirm(request: HttpRequest, batch_id: uuid.UUID) -> HttpResponse:
    """Imports the previewed rows again (checked and matched again now), in the same batch."""
    batch = _batch_of_team(request, batch_id)
    key = RETRY_FORM_KEYS.posted(request)
    try:
        text = decrypt_text(request.POST.get("manifest_token", ""))
    except DecryptionError:
        text = None
    context: dict[str, Any] = {
        "batch": batch,
        "retry_form": ManifestForm(),
        "failed_rows": retry.failed_jobs(batch),
    }
    if key is None or text is None:
        context["form_error"] = STALE_PREVIEW
        return render(request, "batches/batch_retry.html", context, status=422)
    preview = preview_manifest(text, filename=request.POST.get("filename", "")[:255])
    try:
        count, made = retry.batch_retry(
            team=required_team(request),
            user=actor(request),
            batch=batch,
            preview=preview,
            key=key,
            ip=client_ip(request),
        )
    except retry.NothingToRetry as error:
        matched = retry.match_failed(preview, retry.failed_names(batch))
        context.update(preview=matched, form_error=str(error))
        return render(request, "batches/batch_retry.html", context, status=422)
    noun = f"{count} failed row{'s' if count != 1 else ''}"
    messages.success(
        request, f"{noun} imported again in this batch." if made else f"{noun} already sent."
    )
    return redirect("batch_detail", batch_id=batch.pk)


@require_role(*Role.values)
@require_GET
def batch_csv(request: HttpRequest, batch_id: uuid.UUID) -> StreamingHttpResponse:
    """Every job of the batch as CSV, streamed: the current rows and the retried ones."""
    batch = _batch_of_team(request, batch_id)
    return audited_csv(request, target=f"batch {batch.pk}", lines=batch_lines(batch), name="batch")


BATCH_COLUMNS = [
    "job_id",
    "name",
    "row",
    "submitted_at",
    "submitted_by",
    "object",
    "snapshot_size",
    "state",
    "progress",
    "api_state",
    "finished_at",
    "duration_seconds",
    "snapshot_id",
    "error_code",
    "error_type",
    "error_details",
]


def batch_lines(batch: ImportBatch) -> Iterator[list[Any]]:
    """The CSV's lines: each job, `row` saying whether it is the row's current job or one a
    retry replaced. The object is `url_redacted`: a URL's signature never reaches a file."""
    jobs: ImportJobQuerySet = batch.jobs.order_by("created_at", "id")
    current = {job.pk for job in latest_per_name(jobs.only("id", "name", "created_at"))}
    jobs = jobs.select_related("submitted_by")
    yield BATCH_COLUMNS
    for job in jobs.iterator(chunk_size=CSV_CHUNK):
        duration = job.duration
        yield [
            job.pk,
            job.name,
            "current" if job.pk in current else "retried",
            job.created_at.isoformat(),
            job.submitted_by.get_username(),
            job.url_redacted,
            job.snapshot_size,
            job.state,
            job.progress,
            job.api_state,
            job.finished_at.isoformat() if job.finished_at else "",
            int(duration.total_seconds()) if duration else "",
            job.snapshot_id,
            job.error_code,
            job.error_type,
            job.error_details,
        ]
