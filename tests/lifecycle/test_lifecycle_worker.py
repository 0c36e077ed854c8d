"""A volume, an OMI and a copy on real Celery workers (real Redis), the first worker killed
while the API was making the thing it had asked for: the next one finds it, never makes two."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from celery import current_app
from django.utils import timezone

from importer.jobs.retry import LOST_IN_QUEUE_AFTER, STUCK_SUBMITTING_AFTER
from importer.lifecycle import services
from importer.lifecycle.models import DerivedJob, DerivedKind, DerivedState
from importer.lifecycle.services import derived_create, derived_sweep
from sandbox.run import Sandbox
from tests.lifecycle.test_lifecycle_services import COPY, IMAGE, VOLUME
from tests.support.factories import make_team, make_user
from tests.support.workers import sandbox_env, start_worker, wait_until
from tests.transfers.test_exports import completed_snapshot

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

CASES = [
    (DerivedKind.VOLUME, VOLUME, "CreateVolume", "volumes"),
    (DerivedKind.IMAGE, IMAGE, "CreateImage", "images"),
    (DerivedKind.COPY, COPY, "CreateSnapshot", "snapshots"),
]


@pytest.mark.parametrize(("kind", "parameters", "action", "what"), CASES)
def test_a_worker_killed_while_the_api_makes_it_leaves_exactly_one(
    api_on_sandbox: Sandbox,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    kind: str,
    parameters: dict[str, Any],
    action: str,
    what: str,
) -> None:
    sandbox = api_on_sandbox
    snapshot_id = completed_snapshot(sandbox)
    account = sandbox.account.account_id
    before = len(sandbox.state()[what].get(account, []))
    calls_before = sandbox.state()["calls"].get(action, 0)
    team = make_team("ops")
    user = make_user("worker-owner", team=team)
    # The API takes 3 s to answer, and acts all the same: the worker dies in between.
    sandbox.inject_fault(action, "slow", delay=3)
    env = sandbox_env(sandbox)

    # A queue of its own: no other worker of the session takes the message the killed one held.
    first = start_worker(tmp_path / "first.log", with_beat=False, solo=True, queues="doomed", **env)
    try:
        monkeypatch.setattr(services, "derived_enqueue", lambda **kwargs: True)
        job = derived_create(
            team=team, user=user, snapshot_id=snapshot_id, kind=kind, parameters=parameters
        )
        monkeypatch.undo()
        current_app.send_task(
            "importer.lifecycle.submit_derived", args=(str(job.pk),), queue="doomed"
        )
        # Killed once its request is in the API's hands (counted on arrival), before the answer.
        wait_until(lambda: sandbox.state()["calls"].get(action, 0) == calls_before + 1, seconds=60)
    finally:
        first.stop(kill=True)

    wait_until(lambda: len(sandbox.state()[what].get(account, [])) == before + 1, seconds=30)
    assert DerivedJob.objects.get(pk=job.pk).state == DerivedState.SUBMITTING
    # The sweeper's thresholds are minutes; its clock is moved on, as the reliability bench does.
    later = timezone.now() + max(LOST_IN_QUEUE_AFTER, STUCK_SUBMITTING_AFTER) + timedelta(seconds=1)
    assert derived_sweep(now=later) == 1
    second = start_worker(tmp_path / "second.log", with_beat=True, solo=True, **env)
    try:
        wait_until(lambda: DerivedJob.objects.get(pk=job.pk).is_terminal, seconds=60, interval=0.5)
    finally:
        second.stop()

    job.refresh_from_db()
    assert job.state == DerivedState.COMPLETED, job.error_details
    assert job.attempts == 2
    made = sandbox.state()[what][account]
    assert len(made) == before + 1
    assert job.resource_id in {
        item.get("VolumeId") or item.get("ImageId") or item.get("SnapshotId") for item in made
    }
    assert sandbox.state()["calls"][action] == calls_before + 1  # never sent a second time
