"""The import pipeline's services over the sandbox API (real HTTP), without a worker."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from datetime import timedelta

import pytest
import responses
from django.utils import timezone

from importer.core.crypto import encrypt_text
from importer.imports import polling, slots
from importer.imports import services as imports_services
from importer.imports.models import ImportJob, JobState, TagState
from importer.jobs import retry
from importer.jobs.polling import POLL_FAILED_UNEXPECTEDLY, VANISHED_GRACE
from importer.outscale import accounts
from importer.outscale.paginator import pages_for
from importer.presigned.policy import url_policy
from importer.presigned.urls import parse_presigned_url
from sandbox.run import Sandbox
from tests.support.factories import make_job, make_team, make_user
from tests.support.workers import wait_until

GIB = 1024**3
pytestmark = pytest.mark.django_db


def submit(
    sandbox: Sandbox,
    *,
    size: int = 10 * GIB,
    dry_run: bool = False,
    tags: dict[str, str] | None = None,
    **presign,
) -> ImportJob:
    raw = presign.pop("raw", None) or sandbox.presign(**presign)
    url = parse_presigned_url(raw, policy=url_policy(), now=timezone.now())
    user = make_user() if not ImportJob.objects.exists() else ImportJob.objects.first().submitted_by
    return imports_services.import_create(
        team=user.memberships.first().team,
        user=user,
        name="été backup",
        description="nightly",
        url=url,
        snapshot_size=size,
        dry_run=dry_run,
        tags=tags,
    )


def snapshots_in(sandbox: Sandbox) -> list[dict]:
    return sandbox.state()["snapshots"][sandbox.account.account_id]


def run_submit(job: ImportJob) -> ImportJob:
    with contextlib.suppress(retry.TransientSubmitError):
        imports_services.import_submit(job_id=str(job.pk))
    job.refresh_from_db()
    return job


def poll_until_final(job: ImportJob) -> ImportJob:
    def final() -> bool:
        polling.imports_poll()
        job.refresh_from_db()
        return job.is_terminal

    wait_until(final, seconds=30, interval=0.2)
    return job


def test_it_imports_from_submit_to_completed_with_progress_rising(api_on_sandbox) -> None:
    api_on_sandbox.set_speed(bytes_per_second=60_000)
    job = run_submit(submit(api_on_sandbox))
    assert job.state == JobState.IN_PROGRESS
    assert job.snapshot_id.startswith("snap-")
    assert job.url_encrypted == ""  # erased once the API accepted it
    seen: list[int] = []

    def finished() -> bool:
        polling.imports_poll()
        job.refresh_from_db()
        seen.append(job.progress)
        return job.is_terminal

    wait_until(finished, seconds=60, interval=0.1)
    assert job.state == JobState.COMPLETED and job.progress == 100
    assert seen == sorted(seen) and len(set(seen)) >= 3, seen
    assert [snapshot["SnapshotId"] for snapshot in snapshots_in(api_on_sandbox)] == [
        job.snapshot_id
    ]
    states = list(job.events.values_list("state", flat=True))
    assert states[0] == JobState.QUEUED and states[-1] == JobState.COMPLETED


def test_it_tags_the_snapshot_with_its_name(api_on_sandbox) -> None:
    job = run_submit(submit(api_on_sandbox))
    imports_services.snapshot_tag(job_id=str(job.pk), final_attempt=False)
    job.refresh_from_db()
    assert job.tag_state == TagState.DONE
    tags = snapshots_in(api_on_sandbox)[0]["Tags"]
    assert {"Key": "Name", "Value": "été backup"} in tags


def test_it_applies_the_tags_asked_at_import_time_with_the_name(api_on_sandbox) -> None:
    job = run_submit(submit(api_on_sandbox, tags={"env": "prod", "owner": ""}))
    imports_services.snapshot_tag(job_id=str(job.pk), final_attempt=False)
    job.refresh_from_db()
    assert job.tag_state == TagState.DONE
    tags = {tag["Key"]: tag["Value"] for tag in snapshots_in(api_on_sandbox)[0]["Tags"]}
    assert tags == {"Name": "été backup", "env": "prod", "owner": ""}
    assert "Tagged Name=été backup and 2 more tags" in job.events.last().message


def test_it_shows_a_tag_failure_without_failing_the_import(api_on_sandbox) -> None:
    job = run_submit(submit(api_on_sandbox))
    api_on_sandbox.inject_fault("CreateTags", "error", status=500, count=None)
    with pytest.raises(imports_services.TransientTagError):
        imports_services.snapshot_tag(job_id=str(job.pk), final_attempt=False)
    imports_services.snapshot_tag(job_id=str(job.pk), final_attempt=True)
    job.refresh_from_db()
    assert job.tag_state == TagState.FAILED and "InternalError" in job.tag_error
    assert job.state == JobState.IN_PROGRESS


@pytest.mark.parametrize(
    ("kind", "status"),
    [("error", 500), ("timeout", 503), ("drop", 503)],
)
def test_it_survives_a_transient_fault_with_exactly_one_snapshot(
    api_on_sandbox, kind, status
) -> None:
    api_on_sandbox.inject_fault("CreateSnapshot", kind, status=status, count=1, delay=4.0)
    job = run_submit(submit(api_on_sandbox))
    assert job.state == JobState.QUEUED and job.attempts == 1
    assert "will retry" in job.events.last().message
    job = run_submit(job)
    assert job.state == JobState.IN_PROGRESS, job.events.last().message
    snapshots = snapshots_in(api_on_sandbox)
    assert len(snapshots) == 1 and snapshots[0]["SnapshotId"] == job.snapshot_id


def test_it_adopts_the_snapshot_a_lost_answer_created(api_on_sandbox) -> None:
    api_on_sandbox.inject_fault("CreateSnapshot", "drop", count=1)
    job = run_submit(submit(api_on_sandbox))
    assert job.state == JobState.QUEUED
    job = run_submit(job)
    calls = api_on_sandbox.state()["create_snapshot_calls_by_client_token"]
    assert calls == {str(job.pk): 1}  # the second attempt found it by ClientToken, sent nothing
    assert job.state == JobState.IN_PROGRESS and len(snapshots_in(api_on_sandbox)) == 1


@pytest.mark.parametrize("status", [429, 503])
def test_a_throttling_answer_pauses_the_account_then_imports_once(api_on_sandbox, status) -> None:
    api_on_sandbox.inject_fault("CreateSnapshot", "error", status=status, count=1)
    job = run_submit(submit(api_on_sandbox))
    assert job.state == JobState.WAITING and job.attempts == 0
    assert job.events.last().message.startswith(slots.THROTTLED_PREFIX)
    team = job.team
    team.refresh_from_db()
    assert team.api_throttle_streak == 1 and slots.paused_for(team) > 0
    # Another import of the account is not sent while it is paused.
    other = run_submit(submit(api_on_sandbox))
    assert other.state == JobState.WAITING and slots.NO_SLOT in other.events.last().message
    assert slots.admit_waiting(team.pk) == 0
    team.api_throttled_until = timezone.now() - timedelta(seconds=1)
    team.save(update_fields=["api_throttled_until"])
    # Out of the pause, the account is probed with one import before the others follow.
    assert slots.admit_waiting(team.pk) == 1
    job = run_submit(job)
    assert job.state == JobState.IN_PROGRESS
    assert slots.admit_waiting(team.pk) == 1
    other = run_submit(other)
    assert other.state == JobState.IN_PROGRESS
    assert len(snapshots_in(api_on_sandbox)) == 2
    team.refresh_from_db()
    assert team.api_throttle_streak == 0  # the next throttling starts from the shortest pause


def test_a_job_throttled_again_and_again_gives_up_in_the_end(api_on_sandbox) -> None:
    api_on_sandbox.inject_fault("CreateSnapshot", "error", status=429, count=None)
    job = submit(api_on_sandbox)
    for _ in range(slots.MAX_THROTTLED_ATTEMPTS + 3):
        job.team.api_throttled_until = None
        job.team.save(update_fields=["api_throttled_until"])
        slots.admit_waiting(job.team_id)
        job = run_submit(job)
    assert job.state == JobState.ERROR
    assert f"Gave up after {slots.MAX_THROTTLED_ATTEMPTS} throttling answers" in job.error_details
    assert api_on_sandbox.state()["calls"]["CreateSnapshot"] == slots.MAX_THROTTLED_ATTEMPTS


def test_it_gives_up_after_a_bounded_number_of_transient_errors(api_on_sandbox) -> None:
    api_on_sandbox.inject_fault("CreateSnapshot", "error", status=500, count=None)
    job = submit(api_on_sandbox)
    for _ in range(retry.MAX_SUBMIT_ATTEMPTS + 3):
        job = run_submit(job)
    assert job.state == JobState.ERROR and job.attempts == retry.MAX_SUBMIT_ATTEMPTS
    assert "Gave up after 8 attempts" in job.error_details
    assert api_on_sandbox.state()["calls"]["CreateSnapshot"] == retry.MAX_SUBMIT_ATTEMPTS


def test_it_ends_a_job_on_a_permanent_error_without_retrying(
    api_on_sandbox, settings, caplog
) -> None:
    settings.OSC_SECRET_KEY = "a-wrong-secret-key-the-api-refuses-000000"
    raw = api_on_sandbox.presign()
    job = run_submit(submit(api_on_sandbox, raw=raw))
    signature = raw.split("X-Amz-Signature=")[1]
    assert signature not in caplog.text and signature not in repr(list(job.events.values()))
    assert "X-Amz-Signature" not in caplog.text + job.error_details
    assert job.state == JobState.ERROR and job.attempts == 1
    assert job.error_code and job.error_type and job.error_request_id
    assert job.url_encrypted == ""


def test_it_marks_an_import_the_api_ends_in_error(api_on_sandbox) -> None:
    job = run_submit(submit(api_on_sandbox, size=1 * GIB))  # smaller than the 10 GiB image
    job = poll_until_final(job)
    assert job.state == JobState.ERROR and job.error_code == "SnapshotError"
    assert "Snapshot Size" in job.error_details


def test_it_marks_an_expired_url_import_as_failed(api_on_sandbox) -> None:
    job = submit(api_on_sandbox, expires=1)
    ImportJob.objects.filter(pk=job.pk).update(enqueued_at=timezone.now())
    wait_until(lambda: timezone.now() > job.url_expires_at + timedelta(seconds=1), seconds=5)
    job = poll_until_final(run_submit(job))
    assert job.state == JobState.ERROR


def test_it_checks_permissions_only_on_a_dry_run(api_on_sandbox) -> None:
    job = run_submit(submit(api_on_sandbox, dry_run=True))
    assert job.state == JobState.COMPLETED and job.snapshot_id == ""
    assert "Dry run" in job.events.last().message
    assert snapshots_in(api_on_sandbox) == []


def test_it_marks_a_vanished_snapshot(api_on_sandbox) -> None:
    job = run_submit(submit(api_on_sandbox))
    api_on_sandbox.call("DeleteSnapshot", {"SnapshotId": job.snapshot_id}).raise_for_status()
    polling.imports_poll()
    job.refresh_from_db()
    assert job.state == JobState.IN_PROGRESS  # within the grace period: may be eventual consistency
    polling.imports_poll(now=timezone.now() + VANISHED_GRACE + timedelta(seconds=5))
    job.refresh_from_db()
    assert job.state == JobState.ERROR and job.error_type == "SnapshotVanished"


def test_it_keeps_following_a_slow_import_when_a_poll_fails(api_on_sandbox) -> None:
    api_on_sandbox.set_speed(bytes_per_second=20_000)
    job = run_submit(submit(api_on_sandbox))
    api_on_sandbox.inject_fault("ReadSnapshots", "error", status=503, count=3)
    for _ in range(3):
        assert polling.imports_poll().changed == 0
    job.refresh_from_db()
    assert job.state == JobState.IN_PROGRESS
    api_on_sandbox.set_speed()
    assert poll_until_final(job).state == JobState.COMPLETED


def test_it_polls_every_in_flight_job_in_as_few_calls_as_the_api_allows(api_on_sandbox) -> None:
    api_on_sandbox.set_speed(bytes_per_second=1_000)
    jobs = [run_submit(submit(api_on_sandbox)) for _ in range(5)]
    before = api_on_sandbox.state()["calls"].get("ReadSnapshots", 0)
    summary = polling.imports_poll()
    assert summary.followed == len(jobs) and summary.api_calls == 1
    assert api_on_sandbox.state()["calls"]["ReadSnapshots"] == before + 1


def test_it_sweeps_jobs_the_broker_lost_or_a_dead_worker_held(api_on_sandbox, monkeypatch) -> None:
    sent: list[str] = []
    monkeypatch.setattr(
        imports_services,
        "import_enqueue",
        lambda *, job_id, countdown=0: sent.append(str(job_id)) or True,
    )
    lost = submit(api_on_sandbox)
    held = submit(api_on_sandbox)
    assert held.claim_for_submission()
    later = timezone.now() + retry.STUCK_SUBMITTING_AFTER + timedelta(seconds=1)
    summary = imports_services.imports_sweep(now=later)
    assert summary.requeued_stuck == 1 and summary.resent_queued == 1
    assert sorted(sent) == sorted([str(lost.pk), str(held.pk)])
    held.refresh_from_db()
    assert held.state == JobState.QUEUED


# --- One team cannot stall the others (fake API answers) ---------------------------------

FAKE_API = "https://api.pipeline-test.example/api/v1"


@pytest.fixture
def fake_api(settings) -> Iterator[responses.RequestsMock]:
    settings.OSC_ENDPOINT_API = FAKE_API
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def api_answer(snapshots: list[dict], token: str | None = None) -> dict:
    answer: dict = {"Snapshots": snapshots, "ResponseContext": {"RequestId": "req-poll"}}
    if token:
        answer["NextPageToken"] = token
    return answer


def in_flight(team_name: str, snapshot_id: str, **team_fields) -> ImportJob:
    team = make_team(team_name, **team_fields)
    user = make_user(f"user-of-{team_name}", team=team)
    long_ago = timezone.now() - VANISHED_GRACE - timedelta(minutes=1)
    return make_job(
        user,
        state=JobState.IN_PROGRESS,
        snapshot_id=snapshot_id,
        api_state="pending/queued",
        progress=10,
        submitted_at=long_ago,
    )


def test_it_polls_the_other_teams_when_one_teams_poll_fails(fake_api, monkeypatch) -> None:
    broken = in_flight("broken", "snap-0000000b")
    fine = in_flight("fine", "snap-0000000f")
    real_client = accounts.api_client

    def client_of(team):
        if team.name == "broken":
            raise RuntimeError("an unexpected fault in this team's poll")
        return real_client(team)

    monkeypatch.setattr(accounts, "api_client", client_of)
    fake_api.post(
        f"{FAKE_API}/ReadSnapshots",
        json=api_answer([{"SnapshotId": "snap-0000000f", "State": "completed", "Progress": 100}]),
    )
    summary = polling.imports_poll()
    assert summary.failed_teams == 1 and summary.finished == 1
    fine.refresh_from_db()
    broken.refresh_from_db()
    assert fine.state == JobState.COMPLETED
    assert broken.state == JobState.IN_PROGRESS
    assert broken.events.last().message == POLL_FAILED_UNEXPECTEDLY
    polling.imports_poll()  # the same problem again is not noted twice
    assert broken.events.filter(message=POLL_FAILED_UNEXPECTEDLY).count() == 1


def test_it_notes_on_the_jobs_a_team_without_credentials(fake_api) -> None:
    lost = in_flight("no-keys", "snap-0000000c", uses_environment_credentials=False)
    fine = in_flight("fine", "snap-0000000f")
    fake_api.post(
        f"{FAKE_API}/ReadSnapshots",
        json=api_answer([{"SnapshotId": "snap-0000000f", "State": "completed", "Progress": 100}]),
    )
    assert polling.imports_poll().failed_teams == 1
    fine.refresh_from_db()
    assert fine.state == JobState.COMPLETED
    note = lost.events.last().message
    assert "no OUTSCALE credentials" in note and "A team admin can set" in note


def test_it_cuts_the_apis_strings_to_their_fields_before_storing_them(fake_api) -> None:
    job = in_flight("long", "snap-0000000a")
    state = "importing-" + "x" * 5000
    fake_api.post(
        f"{FAKE_API}/ReadSnapshots",
        json=api_answer([{"SnapshotId": "snap-0000000a", "State": state, "Progress": 55}]),
    )
    assert polling.imports_poll().changed == 1
    job.refresh_from_db()
    assert job.api_state == state[:40] and job.progress == 55
    assert job.events.last().message.startswith("API state: importing-xxx")
    assert len(job.events.last().message) == 2500


def test_it_cuts_a_snapshot_id_and_request_id_the_api_made_too_long(fake_api) -> None:
    user = make_user()
    job = make_job(user, url_encrypted=encrypt_text("https://oos.eu-west-2.outscale.com/b/k?s=1"))
    snapshot_id = "snap-" + "a" * 500
    fake_api.post(
        f"{FAKE_API}/CreateSnapshot",
        json={
            "Snapshot": {"SnapshotId": snapshot_id, "State": "pending/" + "q" * 300},
            "ResponseContext": {"RequestId": "r" * 400},
        },
    )
    job = run_submit(job)
    assert job.state == JobState.IN_PROGRESS
    assert job.snapshot_id == snapshot_id[:64] and len(job.api_state) == 40
    assert job.request_ids == ["r" * 64]
    assert len(job.events.last().message) <= 2500


def test_it_reads_a_bounded_number_of_pages_and_fails_no_job_on_a_truncated_listing(
    fake_api,
) -> None:
    job = in_flight("looping", "snap-0000000d")
    calls: list[int] = []

    def endless(request):
        calls.append(1)
        # A fresh token every time; stops on its own only far past any sane bound.
        token = f"token-{len(calls)}" if len(calls) < 1000 else None
        return 200, {}, json.dumps(api_answer([], token))

    fake_api.add_callback(responses.POST, f"{FAKE_API}/ReadSnapshots", callback=endless)
    summary = polling.imports_poll()
    assert summary.truncated_teams == 1
    assert len(calls) == summary.api_calls == pages_for([job.snapshot_id])
    job.refresh_from_db()
    # Not taken for vanished: its snapshot may be on a page the listing did not read.
    assert job.state == JobState.IN_PROGRESS


def test_it_checks_the_url_again_before_sending_it_to_the_api(api_on_sandbox, settings) -> None:
    job = submit(api_on_sandbox)
    # The deployment stopped trusting that object store after the job was saved.
    settings.PORTAL_URL_HOSTS = []

    run_submit(job)

    job.refresh_from_db()
    assert job.state == JobState.ERROR and job.error_code == "UrlRefused"
    assert "is not an accepted object store" in job.error_details
    assert snapshots_in(api_on_sandbox) == []
