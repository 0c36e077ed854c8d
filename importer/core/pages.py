from __future__ import annotations

import base64
import csv
import json
import operator
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import reduce
from typing import Any, Protocol, TypeVar

from django.core.exceptions import ValidationError
from django.db.models import Field, Model, Q, QuerySet
from django.http import QueryDict, StreamingHttpResponse
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


def query_without(query: QueryDict, *names: str) -> str:
    """The query string without `names`: the filters a page's links and its CSV export keep."""
    kept = query.copy()
    for name in names:
        kept.pop(name, None)
    return kept.urlencode()


# The query parameters of a keyset page's cursor ("page" is the offset pages' old one).
CURSOR_PARAMS = ("after", "before", "page")


# A cursor longer than this was not made here: the longest sort key is a 255-character name.
MAX_CURSOR_LENGTH = 2000


@dataclass(frozen=True)
class Keyset:
    """An order of a model's rows on `fields`, all ascending or all descending, the last unique.

    A page is the rows past the edge row of the one before, so a deep page is an index range
    scan as cheap as the first, where OFFSET would read and drop every row before it.
    """

    model: type[Model]
    fields: tuple[str, ...]

    def __post_init__(self) -> None:
        if len({name.startswith("-") for name in self.fields}) != 1:
            raise ValueError(f"A keyset's fields share one direction: {self.fields}")

    @property
    def descending(self) -> bool:
        return self.fields[0].startswith("-")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name.lstrip("-") for name in self.fields)

    def key(self, row: Model) -> tuple[Any, ...]:
        return tuple(getattr(row, _field(self.model, name).attname) for name in self.names)

    def cursor_for(self, row: Model) -> str:
        """The opaque cursor of `row`: its sort key, nothing else (unsigned: it grants nothing)."""
        text = json.dumps([_cursor_text(value) for value in self.key(row)])
        return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")

    def decode(self, raw: str) -> tuple[Any, ...] | None:
        """The sort key a cursor holds, or None for anything this keyset did not make."""
        if not raw or len(raw) > MAX_CURSOR_LENGTH:
            return None
        try:
            texts = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
        except (ValueError, RecursionError):  # RecursionError: brackets nested a thousand deep
            return None
        if not isinstance(texts, list) or len(texts) != len(self.names):
            return None
        pairs = zip(self.names, texts, strict=True)
        values = [_cursor_value(self.model, name, text) for name, text in pairs]
        return None if any(value is None for value in values) else tuple(values)

    def past(self, rows: Rows, key: tuple[Any, ...], *, backwards: bool) -> Rows:
        """Rows after `key` in this order (before it when `backwards`)."""
        op = "gt" if self.descending == backwards else "lt"
        # (a, b) > (x, y) spelled out: a > x, or a = x and b > y.
        past = reduce(
            operator.or_,
            (
                Q(
                    **dict(zip(self.names[:depth], key, strict=False)),
                    **{f"{name}__{op}": key[depth]},
                )
                for depth, name in enumerate(self.names)
            ),
        )
        # The first field's bound alone is where the index range scan starts: the planner does
        # not derive it from the OR above.
        return rows.filter(Q(**{f"{self.names[0]}__{op}e": key[0]}), past)

    def ordered(self, rows: Rows, *, backwards: bool) -> Rows:
        if not backwards:
            return rows.order_by(*self.fields)
        return rows.order_by(*(name[1:] if name[0] == "-" else f"-{name}" for name in self.fields))


def _field(model: type[Model], name: str) -> Field[Any, Any]:
    field = model._meta.get_field(name)
    if not isinstance(field, Field):
        raise TypeError(f"A keyset sorts on columns, and {name} is not one")
    return field


def _cursor_text(value: Any) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)


def _cursor_value(model: type[Model], name: str, text: Any) -> Any:
    """`text` as field `name` stores it, or None when it cannot be one of its values."""
    if not isinstance(text, str):
        return None
    if not text.isprintable():
        return None  # PostgreSQL refuses NUL in text, and no sort key holds a control character
    try:
        value = _field(model, name).to_python(text)
    except ValidationError:
        return None
    if isinstance(value, datetime) and value.tzinfo is None:
        return None
    if isinstance(value, int) and not -(2**63) <= value < 2**63:
        return None
    return value


@dataclass(frozen=True)
class KeysetPage:
    """One page of rows and the links around it ("" when there is none): each keeps the filters."""

    rows: list[Any]
    previous: str
    next: str
    first: str
    is_first: bool


@dataclass(frozen=True)
class Paging:
    """Where a keyset page starts, from its `after` or `before` cursor (a bad one: page one)."""

    keyset: Keyset
    query: QueryDict
    key: tuple[Any, ...] | None
    backwards: bool

    @classmethod
    def from_query(cls, query: QueryDict, keyset: Keyset) -> Paging:
        after = keyset.decode(query.get("after", ""))
        before = None if after else keyset.decode(query.get("before", ""))
        return cls(keyset=keyset, query=query, key=after or before, backwards=before is not None)

    def window(self, rows: Rows) -> Rows:
        """The query of this page's rows and one more (which says whether another follows)."""
        if self.key is not None:
            rows = self.keyset.past(rows, self.key, backwards=self.backwards)
        return self.keyset.ordered(rows, backwards=self.backwards)[: PAGE_SIZE + 1]

    def read(self, rows: QuerySet[Any]) -> list[Any]:
        """The rows of `window`, in reading order (reversed when paging back)."""
        return list(self.window(rows))

    def read_each(self, sources: Iterable[QuerySet[Any]]) -> list[Any]:
        """`read` from each of several disjoint sources, merged in reading order.

        One short range scan per source, where a single query ORing them could not walk one
        index in order. Only for keys Python orders as the database does (dates, numbers): text
        sorts by the database's collation.
        """
        fetched = [row for rows in sources for row in self.read(rows)]
        fetched.sort(key=self.keyset.key, reverse=self.keyset.descending != self.backwards)
        return fetched[: PAGE_SIZE + 1]

    def page(self, fetched: list[Any]) -> KeysetPage:
        """The page `read` fetched (rows in reading order), with its links."""
        more = len(fetched) > PAGE_SIZE
        rows = fetched[:PAGE_SIZE]
        if self.backwards:
            rows.reverse()
        # Paging back past the first row reaches page one: no link back.
        at_start = self.key is None or (self.backwards and not more)
        has_next = self.key is not None if self.backwards else more
        return KeysetPage(
            rows=rows,
            previous=self._link("before", rows[0]) if rows and not at_start else "",
            next=self._link("after", rows[-1]) if rows and has_next else "",
            first=self._link() if self.key is not None and not (at_start and rows) else "",
            is_first=at_start,
        )

    def _link(self, name: str = "", row: Model | None = None) -> str:
        query = self.query.copy()
        for dropped in CURSOR_PARAMS:
            query.pop(dropped, None)
        if row is not None:
            query[name] = self.keyset.cursor_for(row)
        return "?" + query.urlencode()


def keyset_page(query: QueryDict, keyset: Keyset, rows: QuerySet[Any]) -> KeysetPage:
    """The page of `rows` in `keyset` order that `query`'s cursor asks for, in one query."""
    paging = Paging.from_query(query, keyset)
    return paging.page(paging.read(rows))


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
