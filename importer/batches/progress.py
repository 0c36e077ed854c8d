"""A batch's progress, throughput and time left, worked out from its rows: pure arithmetic.

Nothing here reads the database or the clock: the page hands in the jobs and `now`, so every
figure it shows can be checked on made-up rows. The rows of a batch are the latest job of each
name (a failed row retried gets a new job; the old one stays as history, outside the figures).

The API reports an import's Progress as a percentage; multiplied by the snapshot's size it is
the bytes imported so far. The throughput is the bytes the batch moved over its recent window
(from the earliest submission still in flight to now); the time left is what remains at that
pace. Both are shown only once they mean something: early on, one poll's jump of a few percent
would promise an absurd figure.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol, TypeVar

from importer.core.units import GIB
from importer.imports.models import JobState

# The throughput is not shown before the window is this long: a few polls, so one jump of the
# API's percentage does not make the whole estimate.
MIN_WINDOW_SECONDS = 30.0
# Past this, the figure says more about a stalled API than about the batch: not shown.
MAX_SECONDS_LEFT = 2 * 24 * 3600.0
# The order the counts are shown in, the one a batch's rows move through.
STATE_ORDER: tuple[str, ...] = (
    JobState.QUEUED,
    JobState.WAITING,
    JobState.SUBMITTING,
    JobState.IN_PROGRESS,
    JobState.COMPLETED,
    JobState.ERROR,
)


class BatchRow(Protocol):
    """What the summary reads of a job (an `ImportJob` is one)."""

    @property
    def name(self) -> str: ...
    @property
    def state(self) -> str: ...
    @property
    def progress(self) -> int: ...
    @property
    def snapshot_size(self) -> int: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def submitted_at(self) -> datetime | None: ...
    @property
    def finished_at(self) -> datetime | None: ...


Row = TypeVar("Row", bound=BatchRow)


def latest_per_name(jobs: Iterable[Row]) -> list[Row]:
    """The batch's rows: the newest job of each name, in the order the names first came.

    A retried row keeps its place in the table (where its first job was), showing its new job.
    """
    first_seen: dict[str, int] = {}
    latest: dict[str, Row] = {}
    for position, job in enumerate(jobs):
        first_seen.setdefault(job.name, position)
        current = latest.get(job.name)
        if current is None or job.created_at >= current.created_at:
            latest[job.name] = job
    return [latest[name] for name in sorted(latest, key=first_seen.__getitem__)]


@dataclass(frozen=True)
class BatchSummary:
    """What the batch page says above its table."""

    rows: int
    counts: Mapping[str, int] = field(default_factory=dict)
    # Bytes of the rows still meant to be imported (failed rows left out), and of those done.
    total_bytes: int = 0
    done_bytes: float = 0.0
    # Bytes per second over the recent window; None until it means something.
    bytes_per_second: float | None = None
    seconds_left: float | None = None

    @property
    def percent(self) -> int:
        """Done, weighted by size; 100 only once every row still counted has completed."""
        if self.total_bytes <= 0:
            return 0
        if self.unfinished == 0:
            return 100
        return min(int(self.done_bytes * 100 // self.total_bytes), 99)

    @property
    def failed(self) -> int:
        return self.counts.get(JobState.ERROR, 0)

    @property
    def unfinished(self) -> int:
        return self.rows - self.counts.get(JobState.COMPLETED, 0) - self.failed

    @property
    def waiting(self) -> int:
        """Rows not yet sent: queued, waiting for a slot, or being sent."""
        states = (JobState.QUEUED, JobState.WAITING, JobState.SUBMITTING)
        return sum(self.counts.get(state, 0) for state in states)

    @property
    def time_left(self) -> str:
        """ "about 12 min left", or "" while no estimate is meaningful."""
        return time_left(self.seconds_left) if self.seconds_left is not None else ""

    @property
    def throughput(self) -> str:
        """ "1.5 GiB/min", or "" while none is meaningful."""
        return rate(self.bytes_per_second) if self.bytes_per_second is not None else ""

    def count_lines(self) -> list[tuple[str, str, int]]:
        """(state, label, count) of every state some row is in, in the order rows move."""
        labels = dict(JobState.choices)
        return [
            (state, labels[state], self.counts[state])
            for state in STATE_ORDER
            if self.counts.get(state)
        ]


def summarize(rows: Sequence[BatchRow], *, now: datetime) -> BatchSummary:
    """The summary of a batch's rows (the latest job of each name) at `now`."""
    counts = dict.fromkeys(STATE_ORDER, 0)
    for row in rows:
        counts[row.state] = counts.get(row.state, 0) + 1
    counted = [row for row in rows if row.state != JobState.ERROR]
    total = sum(row.snapshot_size for row in counted)
    done = sum(_bytes_done(row) for row in counted)
    speed = _bytes_per_second(counted, now=now)
    left: float | None = None
    if speed is not None and total - done > 0:
        left = (total - done) / speed
        if left > MAX_SECONDS_LEFT:
            speed = left = None
    if left is not None and counts[JobState.IN_PROGRESS] == 0:
        left = None  # nothing moves now (every row waits): the pace of before says nothing
    return BatchSummary(
        rows=len(rows),
        counts=counts,
        total_bytes=total,
        done_bytes=done,
        bytes_per_second=speed,
        seconds_left=left,
    )


def _bytes_done(row: BatchRow) -> float:
    if row.state == JobState.COMPLETED:
        return float(row.snapshot_size)
    if row.state == JobState.IN_PROGRESS:
        return row.snapshot_size * min(max(row.progress, 0), 100) / 100
    return 0.0


def _bytes_per_second(rows: Sequence[BatchRow], *, now: datetime) -> float | None:
    """Bytes moved per second since the earliest submission still in flight, or None.

    A row that completed inside the window counts for the share of its run the window holds
    (its bytes assumed spread evenly over it); one that ended before the window, not at all:
    rows done long ago (before a retry, say) do not dilute the pace of the ones running now.
    """
    flying = [row.submitted_at for row in rows if row.state == JobState.IN_PROGRESS]
    starts = [at for at in flying if at is not None]
    if not starts:
        return None
    start = min(starts)
    window = (now - start).total_seconds()
    if window < MIN_WINDOW_SECONDS:
        return None
    moved = 0.0
    for row in rows:
        if row.state == JobState.IN_PROGRESS:
            moved += _bytes_done(row)
        elif row.state == JobState.COMPLETED:
            moved += _share_in_window(row, start)
    if moved <= 0:
        return None  # nothing has moved yet: no pace to speak of
    return moved / window


def _share_in_window(row: BatchRow, start: datetime) -> float:
    began, ended = row.submitted_at, row.finished_at
    if began is None or ended is None or ended <= start:
        return 0.0
    if began >= start:
        return float(row.snapshot_size)
    run = (ended - began).total_seconds()
    return row.snapshot_size * (ended - start).total_seconds() / run if run > 0 else 0.0


def time_left(seconds: float) -> str:
    """A duration as people say it: about 40 s, about 12 min, about 2 h 5 min; never "0"."""
    if seconds < 55:
        # Tens of seconds: an estimate is no more precise than that, and never below 10 s.
        return f"about {max(10, round(seconds / 10) * 10)} s left"
    minutes = max(1, round(seconds / 60))
    if minutes < 60:
        return f"about {minutes} min left"
    hours, minutes = divmod(minutes, 60)
    return f"about {hours} h {minutes} min left" if minutes else f"about {hours} h left"


def rate(bytes_per_second: float) -> str:
    """A throughput in the unit that reads best: GiB/min for most imports, MiB/s for small."""
    per_minute = bytes_per_second * 60 / GIB
    if per_minute >= 0.1:
        return f"{per_minute:.1f} GiB/min"
    return f"{bytes_per_second / 1024**2:.1f} MiB/s"


def throttle_note(*, until: datetime | None, answers: int, now: datetime) -> str:
    """What the page says of the API's throttling, or "" when it has not throttled this batch.

    `until` is the team's pause (the whole account is throttled, not one batch); `answers` the
    throttling answers this batch's jobs got.
    """
    times = f"{answers} answer{'s' if answers != 1 else ''}"
    if until is not None and until > now:
        so_far = f": {times} so far" if answers else ""
        return (
            f"The API is throttling this account{so_far}; imports resume on their own "
            f"(not before {until.astimezone(UTC):%H:%M:%S} UTC)."
        )
    if answers:
        return (
            f"The API throttled this account during this batch ({times}); "
            "the imports went on on their own."
        )
    return ""
