from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from importer.audit.downloads import audited_csv
from importer.core.pages import CSV_CHUNK, CURSOR_PARAMS, keyset_page, query_without
from importer.imports.forms import HistoryFilterForm
from importer.imports.models import ImportJobQuerySet
from importer.imports.selectors import history_jobs, history_keyset
from importer.imports.tags import shown
from importer.teams.models import READERS_OF_HISTORY
from importer.teams.permissions import require_role


def _batch_filter(request: HttpRequest) -> tuple[uuid.UUID | None, str]:
    """The `batch` filter's id, or why it is not one (then nothing matches)."""
    raw = request.GET.get("batch", "").strip()
    if not raw:
        return None, ""
    try:
        return uuid.UUID(raw), ""
    except ValueError:
        return None, (
            f"{shown(raw)} is not a batch id, so no import matches. Open the history from a "
            "batch's page (This batch in history), or clear the filter."
        )


def _filtered_history(request: HttpRequest, form: HistoryFilterForm) -> ImportJobQuerySet:
    batch_id, problem = _batch_filter(request)
    jobs = history_jobs(request, form.cleaned_data if form.is_valid() else None, batch_id=batch_id)
    return jobs.none() if problem else jobs


@require_role(*READERS_OF_HISTORY)
@require_GET
def history(request: HttpRequest) -> HttpResponse:
    form = HistoryFilterForm(request.GET or None)
    batch_id, problem = _batch_filter(request)
    keyset = history_keyset(form.cleaned_data["sort"] if form.is_valid() else "")
    page = keyset_page(request.GET, keyset, _filtered_history(request, form))
    if batch_id is not None and not page.rows and page.is_first:
        problem = (
            f"No import of this team in the batch {batch_id} matches: the batch is another "
            "team's, the link is wrong, or the other filters leave none."
        )
    context = {
        "form": form,
        "batch_filter": batch_id,
        "batch_problem": problem,
        "batch_raw": request.GET.get("batch", "").strip()[:100],
        "page": page,
        "rows": page.rows,
        "query": query_without(request.GET, *CURSOR_PARAMS),
    }
    return render(request, "imports/history.html", context)


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
    "batch_id",
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
            job.batch_id or "",
        ]


@require_role(*READERS_OF_HISTORY)
@require_GET
def history_csv(request: HttpRequest) -> StreamingHttpResponse:
    form = HistoryFilterForm(request.GET or None)
    jobs = _filtered_history(request, form)
    return audited_csv(request, target="history", lines=_history_lines(jobs), name="imports")
