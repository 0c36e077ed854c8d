from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from importer.audit.downloads import audited_csv
from importer.core.pages import CSV_CHUNK, paged
from importer.imports.forms import HistoryFilterForm
from importer.imports.models import ImportJobQuerySet
from importer.imports.selectors import history_jobs
from importer.teams.models import READERS_OF_HISTORY
from importer.teams.permissions import require_role


@require_role(*READERS_OF_HISTORY)
@require_GET
def history(request: HttpRequest) -> HttpResponse:
    form = HistoryFilterForm(request.GET or None)
    jobs = history_jobs(request, form.cleaned_data if form.is_valid() else None)
    context = {
        "form": form,
        **paged(request, jobs),
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


@require_role(*READERS_OF_HISTORY)
@require_GET
def history_csv(request: HttpRequest) -> StreamingHttpResponse:
    form = HistoryFilterForm(request.GET or None)
    jobs = history_jobs(request, form.cleaned_data if form.is_valid() else None)
    return audited_csv(request, target="history", lines=_history_lines(jobs), name="imports")
