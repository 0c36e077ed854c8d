"""Volumes, OMIs, copies, permissions and tags made from an imported snapshot, over the sandbox.

The services are called step by step here, as the worker and beat would call them;
test_lifecycle_worker.py runs the same jobs on real Celery workers, one of them killed.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User

from importer.audit.models import AuditAction, AuditEvent
from importer.imports.services import SnapshotInUse, snapshot_delete
from importer.jobs.polling import VANISHED_GRACE
from importer.jobs.retry import TransientSubmitError
from importer.lifecycle import services
from importer.lifecycle.models import DerivedJob, DerivedKind, DerivedState
from importer.lifecycle.polling import derived_poll
from importer.teams.models import Team
from sandbox.run import Sandbox
from tests.support.factories import make_team, make_user
from tests.support.workers import wait_until
from tests.transfers.test_exports import completed_snapshot

pytestmark = pytest.mark.django_db

VOLUME = {"subregion_name": "eu-west-2a", "volume_type": "gp2", "size_gib": 12, "iops": None}
IMAGE = {
    "image_name": "web-server-2026",
    "description": "made by the portal",
    "architecture": "x86_64",
    "boot_mode": "legacy",
    "root_device_name": "/dev/sda1",
    "volume_type": "standard",
    "volume_size_gib": 10,
    "iops": None,
    "delete_on_vm_deletion": True,
}
COPY = {"name": "backup copy", "description": "a second copy"}


def operator() -> tuple[Team, User]:
    team = make_team("ops")
    user = User.objects.filter(username="olga").first() or make_user("olga", team=team)
    return team, user


def request(kind: str, parameters: dict[str, Any], snapshot_id: str) -> DerivedJob:
    team, user = operator()
    return services.derived_create(
        team=team, user=user, snapshot_id=snapshot_id, kind=kind, parameters=parameters
    )


def run_to_the_end(job: DerivedJob, *, seconds: float = 20) -> DerivedJob:
    """Submits the job, then polls as beat would until it has ended."""
    for _ in range(3):  # a passing API problem queues the job again, as the task would retry
        try:
            services.derived_submit(job_id=str(job.pk))
            break
        except TransientSubmitError:
            continue

    def ended() -> bool:
        derived_poll()
        job.refresh_from_db()
        return job.is_terminal

    wait_until(ended, seconds=seconds)
    return job


def account_state(sandbox: Sandbox, what: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = sandbox.state()[what].get(sandbox.account.account_id, [])
    return found


def test_a_volume_goes_from_queued_to_available_with_each_step_in_its_history(
    api_on_sandbox: Sandbox,
) -> None:
    api_on_sandbox.set_lifecycle_seconds(0.5)
    snapshot_id = completed_snapshot(api_on_sandbox)
    job = request(DerivedKind.VOLUME, VOLUME, snapshot_id)
    services.derived_submit(job_id=str(job.pk))
    job.refresh_from_db()
    assert job.state == DerivedState.IN_PROGRESS and job.api_state == "creating"
    assert job.resource_id.startswith("vol-")
    job = run_to_the_end(job)
    assert job.state == DerivedState.COMPLETED and job.api_state == "available"
    (volume,) = account_state(api_on_sandbox, "volumes")
    assert volume["VolumeId"] == job.resource_id and volume["SnapshotId"] == snapshot_id
    assert (volume["Size"], volume["VolumeType"], volume["SubregionName"]) == (
        12,
        "gp2",
        "eu-west-2a",
    )
    assert volume["ClientToken"] == str(job.pk)
    history = [event.message for event in job.events.order_by("at", "id")]
    assert "requested by olga" in history[0] and "creating" in history[2]
    assert history[-1] == f"{job.resource_id} is available."
    actions = set(AuditEvent.objects.values_list("action", flat=True))
    assert {AuditAction.VOLUME_REQUESTED, AuditAction.DERIVED_STATE} <= actions


def test_an_omi_is_made_from_the_snapshot_and_a_failed_one_says_why(
    api_on_sandbox: Sandbox,
) -> None:
    snapshot_id = completed_snapshot(api_on_sandbox)
    job = run_to_the_end(request(DerivedKind.IMAGE, IMAGE, snapshot_id))
    assert job.state == DerivedState.COMPLETED and job.resource_id.startswith("ami-")
    (image,) = account_state(api_on_sandbox, "images")
    assert image["ImageName"] == "web-server-2026" and image["RootDeviceName"] == "/dev/sda1"
    (mapping,) = image["BlockDeviceMappings"]
    assert mapping["Bsu"]["SnapshotId"] == snapshot_id and mapping["DeviceName"] == "/dev/sda1"

    api_on_sandbox.fail_next_images(1)
    failed = run_to_the_end(
        request(DerivedKind.IMAGE, {**IMAGE, "image_name": "doomed"}, snapshot_id)
    )
    assert failed.state == DerivedState.ERROR and failed.api_state == "failed"
    assert failed.error_details


def test_a_copy_becomes_a_second_snapshot_with_its_name_tag(api_on_sandbox: Sandbox) -> None:
    snapshot_id = completed_snapshot(api_on_sandbox)
    job = run_to_the_end(request(DerivedKind.COPY, COPY, snapshot_id))
    assert job.state == DerivedState.COMPLETED and job.resource_id != snapshot_id
    snapshots = {s["SnapshotId"]: s for s in account_state(api_on_sandbox, "snapshots")}
    copy = snapshots[job.resource_id]
    assert {"Key": "Name", "Value": "backup copy"} in copy["Tags"]
    assert copy["Description"] == "a second copy" and copy["ClientToken"] == str(job.pk)
    assert job.tag_state == "done"


@pytest.mark.parametrize(
    ("kind", "parameters", "what"),
    [
        (DerivedKind.VOLUME, VOLUME, "volumes"),
        (DerivedKind.IMAGE, IMAGE, "images"),
        (DerivedKind.COPY, COPY, "snapshots"),
    ],
)
def test_a_lost_answer_is_reconciled_before_the_retry_and_makes_one_only(
    api_on_sandbox: Sandbox, kind: str, parameters: dict[str, Any], what: str
) -> None:
    snapshot_id = completed_snapshot(api_on_sandbox)
    action = {"volumes": "CreateVolume", "images": "CreateImage", "snapshots": "CreateSnapshot"}
    api_on_sandbox.inject_fault(action[what], "drop")
    job = request(kind, parameters, snapshot_id)
    with pytest.raises(TransientSubmitError):
        services.derived_submit(job_id=str(job.pk))
    job.refresh_from_db()
    assert job.state == DerivedState.QUEUED and job.attempts == 1
    job = run_to_the_end(job)
    assert job.state == DerivedState.COMPLETED and job.attempts == 2
    made = account_state(api_on_sandbox, what)
    if what == "snapshots":  # the source is one of the account's snapshots too
        made = [item for item in made if item["SnapshotId"] != snapshot_id]
    assert len(made) == 1
    assert job.events.filter(message__contains="Temporary API problem").exists()


def test_a_worker_that_died_mid_submission_is_swept_and_adopts_the_omi_it_made(
    api_on_sandbox: Sandbox,
) -> None:
    snapshot_id = completed_snapshot(api_on_sandbox)
    job = request(DerivedKind.IMAGE, IMAGE, snapshot_id)
    # The worker sent CreateImage and died before writing the answer down.
    assert job.claim_for_submission()
    api_on_sandbox.call(
        "CreateImage",
        {
            "ImageName": IMAGE["image_name"],
            "RootDeviceName": "/dev/sda1",
            "BlockDeviceMappings": [
                {"DeviceName": "/dev/sda1", "Bsu": {"SnapshotId": snapshot_id}}
            ],
        },
    )
    job.refresh_from_db()
    assert job.requeue(
        message="The worker sending this request stopped; sending it again.",
        retry_at=job.created_at,
    )
    job = run_to_the_end(job)
    assert job.state == DerivedState.COMPLETED
    assert len(account_state(api_on_sandbox, "images")) == 1
    assert api_on_sandbox.state()["create_image_calls_by_name"] == {IMAGE["image_name"]: 1}


def test_a_refusal_ends_the_job_with_the_apis_words(api_on_sandbox: Sandbox) -> None:
    snapshot_id = completed_snapshot(api_on_sandbox)
    job = run_to_the_end(request(DerivedKind.IMAGE, IMAGE, snapshot_id))
    again = request(DerivedKind.IMAGE, IMAGE, snapshot_id)
    services.derived_submit(job_id=str(again.pk))
    again.refresh_from_db()
    assert job.state == DerivedState.COMPLETED
    assert again.state == DerivedState.ERROR and again.error_code and again.error_details
    assert again.attempts == 1


def test_a_permission_added_then_removed_shows_in_read_snapshots_and_the_audit_log(
    api_on_sandbox: Sandbox,
) -> None:
    team, user = operator()
    snapshot_id = completed_snapshot(api_on_sandbox)
    snapshot, change = services.permissions_update(
        team=team, user=user, snapshot_id=snapshot_id, add_account_ids=["123456789012"]
    )
    assert snapshot.permissions.account_ids == ("123456789012",) and change.added
    read = services.own_snapshot(team, snapshot_id)
    assert read.permissions.account_ids == ("123456789012",)
    with pytest.raises(services.NothingToChange):
        services.permissions_update(
            team=team, user=user, snapshot_id=snapshot_id, add_account_ids=["123456789012"]
        )
    services.permissions_update(
        team=team, user=user, snapshot_id=snapshot_id, remove_account_ids=["123456789012"]
    )
    assert services.own_snapshot(team, snapshot_id).permissions.account_ids == ()
    entries = AuditEvent.objects.filter(action=AuditAction.PERMISSIONS_CHANGED).order_by("id")
    assert [(e.details["added"], e.details["removed"]) for e in entries] == [
        (["123456789012"], []),
        ([], ["123456789012"]),
    ]
    services.permissions_update(team=team, user=user, snapshot_id=snapshot_id, public=True)
    assert services.own_snapshot(team, snapshot_id).permissions.public is True


def test_tags_are_made_exactly_what_the_dialog_says(api_on_sandbox: Sandbox) -> None:
    team, user = operator()
    snapshot_id = completed_snapshot(api_on_sandbox)
    services.tags_edit(
        team=team, user=user, snapshot_id=snapshot_id, tags={"Name": "db", "env": "prod"}
    )
    change = services.tags_edit(
        team=team, user=user, snapshot_id=snapshot_id, tags={"Name": "db-2", "owner": ""}
    )
    assert change.set == {"Name": "db-2", "owner": ""} and change.removed == ("env",)
    assert services.own_snapshot(team, snapshot_id).tags == {"Name": "db-2", "owner": ""}
    entry = AuditEvent.objects.filter(action=AuditAction.TAGS_EDITED).latest("id")
    assert entry.details["removed"] == ["env"] and entry.target == snapshot_id


def test_delete_names_the_omi_that_still_uses_the_snapshot(api_on_sandbox: Sandbox) -> None:
    team, user = operator()
    snapshot_id = completed_snapshot(api_on_sandbox)
    image = run_to_the_end(request(DerivedKind.IMAGE, IMAGE, snapshot_id))
    with pytest.raises(SnapshotInUse) as refused:
        snapshot_delete(team=team, actor=user, snapshot_id=snapshot_id, ip=None)
    assert image.resource_id in str(refused.value) and "web-server-2026" in str(refused.value)
    assert services.own_snapshot(team, snapshot_id).snapshot_id == snapshot_id
    api_on_sandbox.call("DeleteImage", {"ImageId": image.resource_id})
    snapshot_delete(team=team, actor=user, snapshot_id=snapshot_id, ip=None)
    with pytest.raises(Exception, match=snapshot_id):
        services.own_snapshot(team, snapshot_id)


def test_one_listing_follows_many_volumes_and_a_vanished_one_fails_after_the_grace(
    api_on_sandbox: Sandbox,
) -> None:
    api_on_sandbox.set_lifecycle_seconds(60)
    snapshot_id = completed_snapshot(api_on_sandbox)
    jobs = [request(DerivedKind.VOLUME, VOLUME, snapshot_id) for _ in range(3)]
    for job in jobs:
        services.derived_submit(job_id=str(job.pk))
    before = api_on_sandbox.state()["calls"].get("ReadVolumes", 0)
    derived_poll()
    assert api_on_sandbox.state()["calls"]["ReadVolumes"] == before + 1
    gone = DerivedJob.objects.get(pk=jobs[0].pk)
    api_on_sandbox.call("DeleteVolume", {"VolumeId": gone.resource_id})
    derived_poll()
    gone.refresh_from_db()
    assert gone.state == DerivedState.IN_PROGRESS  # the API may lag behind a creation
    DerivedJob.objects.filter(pk=gone.pk).update(submitted_at=gone.created_at - VANISHED_GRACE * 2)
    derived_poll()
    gone.refresh_from_db()
    assert gone.state == DerivedState.ERROR and gone.resource_id in gone.error_details
    assert DerivedJob.objects.filter(state=DerivedState.IN_PROGRESS).count() == 2
