"""The batch page's arithmetic on made-up rows: progress by size, throughput, time left."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from importer.batches.progress import (
    MIN_WINDOW_SECONDS,
    latest_per_name,
    rate,
    summarize,
    throttle_note,
    time_left,
)

GIB = 1024**3
NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Row:
    name: str = "row"
    state: str = "queued"
    progress: int = 0
    snapshot_size: int = 10 * GIB
    created_at: datetime = NOW - timedelta(hours=1)
    submitted_at: datetime | None = None
    finished_at: datetime | None = None


def ago(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


def test_it_weighs_the_progress_by_size_and_leaves_failed_rows_out() -> None:
    rows = [
        Row("big", "in_progress", 50, 30 * GIB, submitted_at=ago(600)),
        Row("small", "completed", 100, 10 * GIB, submitted_at=ago(600), finished_at=ago(60)),
        Row("broken", "error", 0, 100 * GIB),
    ]
    summary = summarize(rows, now=NOW)
    # 15 + 10 GiB of the 40 GiB still meant to be imported; the failed 100 GiB count nowhere.
    assert summary.percent == 62
    assert summary.total_bytes == 40 * GIB and summary.failed == 1
    assert summary.unfinished == 1


def test_it_says_100_only_once_every_row_has_completed() -> None:
    almost = [
        Row("a", "completed", 100, 1000 * GIB, submitted_at=ago(900), finished_at=ago(10)),
        Row("b", "queued", 0, 1),
    ]
    assert summarize(almost, now=NOW).percent == 99
    done = [Row("a", "completed", 100, submitted_at=ago(900), finished_at=ago(10))]
    assert summarize(done, now=NOW).percent == 100
    assert summarize([Row("x", "error")], now=NOW).percent == 0


def test_it_counts_each_state_including_waiting_for_a_slot() -> None:
    rows = [Row("a", "waiting"), Row("b", "waiting"), Row("c", "queued"), Row("d", "error")]
    summary = summarize(rows, now=NOW)
    assert summary.count_lines() == [
        ("queued", "Queued", 1),
        ("waiting", "Waiting for a slot", 2),
        ("error", "Failed", 1),
    ]
    assert summary.waiting == 3


def test_it_estimates_the_time_left_from_the_bytes_moved_since_the_first_submission() -> None:
    # 5 GiB moved in 300 s; 15 GiB left at that pace is 900 s.
    rows = [
        Row("a", "in_progress", 50, 10 * GIB, submitted_at=ago(300)),
        Row("b", "queued", 0, 10 * GIB),
    ]
    summary = summarize(rows, now=NOW)
    assert summary.bytes_per_second == pytest.approx(5 * GIB / 300)
    assert summary.seconds_left == pytest.approx(900)
    assert summary.time_left == "about 15 min left"
    assert summary.throughput == "1.0 GiB/min"


def test_a_row_done_before_the_window_does_not_slow_the_pace_of_a_retry() -> None:
    long_ago = Row(
        "old", "completed", 100, 100 * GIB, submitted_at=ago(86400), finished_at=ago(80000)
    )
    retried = Row("new", "in_progress", 50, 10 * GIB, submitted_at=ago(100))
    with_old = summarize([long_ago, retried], now=NOW)
    alone = summarize([retried], now=NOW)
    assert with_old.bytes_per_second == alone.bytes_per_second == pytest.approx(5 * GIB / 100)
    assert with_old.seconds_left == pytest.approx(100)


def test_a_row_that_ended_inside_the_window_counts_for_its_share_of_it() -> None:
    # Ran from -400 s to -100 s; the window starts at -200 s: a third of its run is inside it.
    ended = Row("a", "completed", 100, 30 * GIB, submitted_at=ago(400), finished_at=ago(100))
    running = Row("b", "in_progress", 0, 30 * GIB, submitted_at=ago(200))
    summary = summarize([ended, running], now=NOW)
    assert summary.bytes_per_second == pytest.approx(10 * GIB / 200)


@pytest.mark.parametrize(
    ("rows", "why"),
    [
        ([Row("a", "in_progress", 0, submitted_at=ago(600))], "nothing has moved yet"),
        ([Row("a", "in_progress", 40, submitted_at=ago(MIN_WINDOW_SECONDS - 1))], "too soon"),
        ([Row("a", "queued"), Row("b", "waiting")], "nothing was sent"),
        ([Row("a", "in_progress", 1, 1000 * GIB, submitted_at=ago(3600))], "absurdly long"),
    ],
)
def test_it_shows_no_estimate_before_it_means_something(rows: list[Row], why: str) -> None:
    summary = summarize(rows, now=NOW)
    assert summary.seconds_left is None and summary.time_left == "", why


def test_it_gives_no_time_left_once_every_row_has_ended() -> None:
    rows = [Row("a", "completed", 100, submitted_at=ago(600), finished_at=ago(1))]
    assert summarize(rows, now=NOW).time_left == ""


@pytest.mark.parametrize(
    ("seconds", "said"),
    [
        (0.4, "about 10 s left"),
        (38, "about 40 s left"),
        (58, "about 1 min left"),
        (12 * 60 + 10, "about 12 min left"),
        (3600, "about 1 h left"),
        (2 * 3600 + 5 * 60 + 20, "about 2 h 5 min left"),
    ],
)
def test_it_says_durations_as_people_do_and_never_zero(seconds: float, said: str) -> None:
    assert time_left(seconds) == said


def test_it_says_a_throughput_in_a_unit_that_reads_well() -> None:
    assert rate(GIB / 60) == "1.0 GiB/min"
    assert rate(512 * 1024) == "0.5 MiB/s"


def test_the_rows_are_the_latest_job_of_each_name_in_their_first_order() -> None:
    first_a = Row("a", "error", created_at=ago(900))
    b = Row("b", "completed", created_at=ago(800))
    second_a = Row("a", "in_progress", created_at=ago(100))
    assert latest_per_name([first_a, b, second_a]) == [second_a, b]


def test_it_says_when_the_api_throttles_the_account() -> None:
    now_throttled = throttle_note(until=NOW + timedelta(seconds=90), answers=3, now=NOW)
    assert now_throttled == (
        "The API is throttling this account: 3 answers so far; imports resume on their own "
        "(not before 12:01:30 UTC)."
    )
    assert "throttled this account during this batch (1 answer)" in throttle_note(
        until=NOW - timedelta(seconds=1), answers=1, now=NOW
    )
    assert throttle_note(until=None, answers=0, now=NOW) == ""
