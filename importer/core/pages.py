from __future__ import annotations

import csv
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Protocol, TypeVar

from django.db.models import QuerySet
from django.http import HttpRequest, QueryDict, StreamingHttpResponse
from django.utils import timezone

PAGE_SIZE = 50
CSV_CHUNK = 2000


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


Rows = TypeVar("Rows", bound=QuerySet[Any])


def day_start(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))


def within_days(rows: Rows, field: str, since: date | None, until: date | None) -> Rows:
    """Rows whose `field` falls from the start of day `since` to the end of day `until`."""
    if since:
        rows = rows.filter(**{f"{field}__gte": day_start(since)})
    if until:
        rows = rows.filter(**{f"{field}__lt": day_start(until) + timedelta(days=1)})
    return rows


def filtered(
    rows: Rows, data: Mapping[str, Any], lookups: Mapping[str, str], *, day_field: str
) -> Rows:
    """Rows as a list's filter form asks: each filled field by its lookup, then the days.

    `data` is the valid form's cleaned data, with `since` and `until` dates for `day_field`.
    """
    for name, lookup in lookups.items():
        if data[name]:
            rows = rows.filter(**{lookup: data[name]})
    return within_days(rows, day_field, data["since"], data["until"])


def _page_number(request: HttpRequest) -> int:
    raw = request.GET.get("page", "1")
    return max(1, min(int(raw), 10_000)) if raw.isdigit() else 1


def _query_without_page(request: HttpRequest) -> str:
    query = request.GET.copy()
    query.pop("page", None)
    return query.urlencode()


def paged(request: HttpRequest, rows: QuerySet[Any]) -> dict[str, Any]:
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


def csv_response(lines: Iterable[list[Any]], filename: str) -> StreamingHttpResponse:
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


class Versioned(Protocol):
    @property
    def updated_at(self) -> datetime: ...


def version(row: Versioned) -> int:
    """`updated_at` in whole microseconds: what the page last saw of a row, compared exactly.

    The same number the templates write as `{{ row.updated_at|date:'Uu' }}`.
    """
    return (row.updated_at - EPOCH) // timedelta(microseconds=1)


def polled_versions(query: QueryDict, name: str, *, limit: int) -> dict[uuid.UUID, int]:
    """The `<name>=<row id>.<version>` pairs a polling page holds; anything malformed is ignored."""
    versions: dict[uuid.UUID, int] = {}
    for raw in query.getlist(name)[:limit]:
        row_id, _, number = raw.partition(".")
        try:
            versions[uuid.UUID(row_id)] = int(number)
        except ValueError:
            continue
    return versions
