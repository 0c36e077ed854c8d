from __future__ import annotations

import csv
from collections.abc import Iterable
from datetime import UTC, datetime, time
from typing import Any

from django.db.models import QuerySet
from django.http import HttpRequest, StreamingHttpResponse
from django.utils import timezone

PAGE_SIZE = 50
CSV_CHUNK = 2000


def _day_start(day: Any) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))


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


class _Echo:
    """A file-like object whose write returns the line, for csv.writer in a streaming response."""

    def write(self, value: str) -> str:
        return value


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


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
