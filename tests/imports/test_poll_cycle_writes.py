"""The poll cycle's progress writes: a few statements however many imports move, and never over
a row that has finished meanwhile."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from importer.imports.models import ImportJob, JobState
from importer.imports.polling import _apply_snapshots
from importer.outscale.resources import Snapshot
from tests.support.factories import make_job, make_user

pytestmark = pytest.mark.django_db


def snapshot(snapshot_id: str, progress: int, state: str = "pending/queued") -> Snapshot:
    return Snapshot.from_api({"SnapshotId": snapshot_id, "State": state, "Progress": progress})


def in_flight(user: Any, count: int) -> list[ImportJob]:
    return [
        make_job(
            user,
            name=f"job-{i}",
            state=JobState.IN_PROGRESS,
            snapshot_id=f"snap-{i:08x}",
            api_state="pending/queued",
            progress=0,
        )
        for i in range(count)
    ]


def test_imports_moving_in_step_are_written_in_one_statement_per_step() -> None:
    jobs = in_flight(make_user("operator1"), 60)
    # Three progress values among sixty imports, as imports started together move.
    seen = {
        job.snapshot_id: snapshot(job.snapshot_id, (i % 3 + 1) * 10) for i, job in enumerate(jobs)
    }

    with CaptureQueriesContext(connection) as queries:
        changed, finished = _apply_snapshots(jobs, seen, now=timezone.now())

    updates = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("UPDATE")]
    assert (changed, finished) == (60, 0)
    assert len(updates) == 3
    assert sorted(ImportJob.objects.values_list("progress", flat=True)) == sorted(
        (i % 3 + 1) * 10 for i in range(60)
    )


def test_a_row_finished_meanwhile_keeps_its_final_state_and_progress() -> None:
    moving, finished_meanwhile = in_flight(make_user("operator1"), 2)
    # Another worker completed it after this cycle read it.
    ImportJob.objects.filter(pk=finished_meanwhile.pk).update(
        state=JobState.COMPLETED, progress=100, api_state="completed"
    )
    seen = {job.snapshot_id: snapshot(job.snapshot_id, 40) for job in (moving, finished_meanwhile)}

    _apply_snapshots([moving, finished_meanwhile], seen, now=timezone.now())

    finished_meanwhile.refresh_from_db()
    moving.refresh_from_db()
    assert (moving.progress, moving.state) == (40, JobState.IN_PROGRESS)
    assert (finished_meanwhile.progress, finished_meanwhile.api_state) == (100, "completed")
    assert finished_meanwhile.state == JobState.COMPLETED
