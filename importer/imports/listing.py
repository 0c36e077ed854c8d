from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from django.db.models import Q
from django.http import QueryDict

from importer.core.pages import EPOCH
from importer.imports.models import TERMINAL_STATES, ImportJob, ImportJobQuerySet, JobState
from importer.outscale.resources import Snapshot

PAGE_SIZE = 25
SORTS = {"newest": "Newest first", "oldest": "Oldest first"}


# A poll names at most this many rows: more than a page ever holds in flight.
MAX_POLLED_ROWS = 200


# Every job id (a UUID in text) sorts between these two; snapshot ids ("snap-...") sort after.
_LOWEST_UUID = "00000000-0000-0000-0000-000000000000"


_HIGHEST_UUID = "ffffffff-ffff-ffff-ffff-ffffffffffff"


STATE_FILTERS = {
    "active": "In progress",
    "completed": "Completed",
    "error": "Failed",
}


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


def dashboard_page(
    jobs: ImportJobQuerySet, snapshots: Sequence[Snapshot], listing: Listing
) -> Page:
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


def in_flight(rows: Iterable[Row]) -> bool:
    return any(row.job is not None and not row.job.is_terminal for row in rows)
