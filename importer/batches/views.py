"""IMPORT SNAPSHOTS: a manifest previewed row by row, then imported as one batch; its page.

Between the preview and the import, the manifest travels back encrypted (`encrypt_text`): the
page never holds a URL's signature in clear, and the import checks every row again, fresh.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from importer.audit.addresses import client_ip
from importer.batches import services
from importer.batches.forms import ManifestForm, preview_manifest
from importer.batches.models import ImportBatch
from importer.core.crypto import DecryptionError, decrypt_text, encrypt_text
from importer.core.formkeys import FormKeys
from importer.teams.models import IMPORTERS, Role
from importer.teams.permissions import actor, require_role, required_team

BATCH_FORM_KEYS = FormKeys("batch-form")

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
        .select_related("created_by")
        .first()
    )
    if batch is None:
        raise Http404("No such batch in this team.")
    return batch


@require_role(*Role.values)
@require_GET
def batch_detail(request: HttpRequest, batch_id: uuid.UUID) -> HttpResponse:
    batch = _batch_of_team(request, batch_id)
    jobs = list(batch.jobs.order_by("created_at", "id"))
    total = sum(job.snapshot_size for job in jobs) or 1
    done = sum(
        job.snapshot_size * (100 if job.state == "completed" else job.progress) for job in jobs
    )
    context = {
        "batch": batch,
        "jobs": jobs,
        "progress": round(done / total),
        "counts": {
            state: sum(1 for job in jobs if job.state == state)
            for state in ("queued", "submitting", "in_progress", "completed", "error")
        },
        "polling": any(not job.is_terminal for job in jobs),
    }
    template = (
        "batches/_batch_progress.html"
        if getattr(request, "htmx", False)
        else "batches/batch_detail.html"
    )
    return render(request, template, context)
