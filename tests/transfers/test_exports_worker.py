"""A copy to another team on real Celery workers (real Redis), killed between its steps."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from importer.imports.models import ImportJob
from importer.imports.services import imports_sweep
from importer.jobs.retry import LOST_IN_QUEUE_AFTER, STUCK_SUBMITTING_AFTER
from importer.transfers.copies import copy_create
from importer.transfers.models import (
    CopyChain,
    CopyState,
    ExportDestination,
    ExportState,
    SharedUrl,
)
from importer.transfers.services import exports_sweep
from sandbox.run import Sandbox
from tests.support.factories import make_user
from tests.support.workers import sandbox_env, start_worker, wait_until
from tests.transfers.test_exports import (
    BUCKET,
    OTHER,
    account_snapshots,
    completed_snapshot,
    other_team,
    source_team,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_it_finishes_a_copy_whose_workers_are_killed_between_steps_without_repeating_one(
    api_on_sandbox: Sandbox, tmp_path: Path
) -> None:
    sandbox = api_on_sandbox
    sandbox.store.ensure_bucket(BUCKET)
    sandbox.set_export_seconds(4)
    sandbox.set_speed(min_seconds=4)
    source, receiver = source_team(sandbox), other_team(sandbox)
    user = make_user("copier", team=source)
    snapshot_id = completed_snapshot(sandbox)
    env = sandbox_env(sandbox)

    first = start_worker(tmp_path / "first.log", with_beat=True, solo=True, **env)
    try:
        chain = copy_create(
            source_team=source,
            target_team=receiver,
            user=user,
            snapshot_id=snapshot_id,
            name="copied by workers",
            description="",
            destination=ExportDestination(BUCKET, "chain/", "qcow2"),
        )
        wait_until(
            lambda: CopyChain.objects.get(pk=chain.pk).export.state == ExportState.IN_PROGRESS,
            seconds=30,
        )
    finally:
        first.stop(kill=True)  # between step 1 (export sent) and step 2 (URL and import)

    export = chain.export
    export.refresh_from_db()
    wait_until(
        lambda: any(
            t["TaskId"] == export.task_id and t["State"] == "completed"
            for t in sandbox.state()["exports"]
        ),
        seconds=30,
    )
    second = start_worker(tmp_path / "second.log", with_beat=True, solo=True, **env)
    try:
        wait_until(
            lambda: CopyChain.objects.get(pk=chain.pk).state == CopyState.IMPORTING, seconds=60
        )
    finally:
        second.stop(kill=True)  # between step 2 and the import's end

    # A worker killed while it held a task leaves that message unacknowledged until the broker's
    # visibility timeout; the periodic sweeper sends such work again once its thresholds have
    # passed (minutes). Its clock is moved on here, as the reliability bench does, so that the
    # recovery does not depend on which message the killed worker had taken.
    later = timezone.now() + max(LOST_IN_QUEUE_AFTER, STUCK_SUBMITTING_AFTER) + timedelta(seconds=1)
    imports_sweep(now=later)
    exports_sweep(now=later)
    third = start_worker(tmp_path / "third.log", with_beat=True, solo=True, **env)
    try:
        wait_until(lambda: CopyChain.objects.get(pk=chain.pk).is_terminal, seconds=90, interval=0.5)
    finally:
        third.stop()

    chain.refresh_from_db()
    assert chain.state == CopyState.COMPLETED, chain.error_details
    state = sandbox.state()
    assert state["calls"]["CreateSnapshotExportTask"] == 1
    assert ImportJob.objects.count() == 1 and SharedUrl.objects.count() == 1
    job = ImportJob.objects.get()
    assert job.team == receiver and job.snapshot_size == 10 * 1024**3
    assert state["create_snapshot_calls_by_client_token"] == {str(job.pk): 1}
    received = account_snapshots(sandbox, OTHER.account_id)
    assert [s["SnapshotId"] for s in received] == [job.snapshot_id]
    assert received[0]["State"] == "completed"
