"""The team's import queue: a few imports in flight at once, the others waiting their turn,
oldest first, enforced in the database whichever worker claims."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection, connections
from django.urls import reverse
from django.utils import timezone

from importer.audit.models import AuditAction, AuditEvent
from importer.imports import slots
from importer.imports.models import ImportJob, JobState
from importer.teams.models import Role
from tests.support.factories import make_job, make_team, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The jobs the queue hands to the broker, in order (no broker needed)."""
    ids: list[str] = []
    monkeypatch.setattr(slots, "enqueue", lambda name, *, row_id: ids.append(str(row_id)))
    return ids


def queued_jobs(count: int, *, limit: int, **fields: Any) -> list[ImportJob]:
    """`count` new imports of one team, made one after the other as the dialog makes them:
    queued while the team has a free slot, waiting for one after that."""
    team = make_team(imports_in_flight_limit=limit)
    user = make_user(team=team)
    start = timezone.now() - timedelta(minutes=10)
    jobs = []
    for n in range(count):
        queued = fields.get("dry_run") or slots.slot_for_new(team.pk)
        state = JobState.QUEUED if queued else JobState.WAITING
        created = start + timedelta(seconds=n)
        jobs.append(make_job(user, name=f"disk-{n}", created_at=created, state=state, **fields))
    return jobs


def states(jobs: list[ImportJob]) -> list[str]:
    for job in jobs:
        job.refresh_from_db()
    return [job.state for job in jobs]


def test_jobs_beyond_the_limit_wait_for_a_slot(sent) -> None:
    jobs = queued_jobs(4, limit=2)
    assert states(jobs) == ["queued", "queued", "waiting", "waiting"]
    assert jobs[2].get_state_display() == "Waiting for a slot"
    assert [slots.claim_with_slot(job) for job in jobs] == [True, True, False, False]
    assert states(jobs) == ["submitting", "submitting", "waiting", "waiting"]
    assert sent == []


def test_a_waiting_jobs_page_says_how_many_go_before_it(client) -> None:
    jobs = queued_jobs(4, limit=1)
    client.force_login(jobs[0].submitted_by)
    last = client.get(reverse("import_detail", kwargs={"job_id": jobs[3].pk})).content.decode()
    assert "Waiting for a slot" in last
    assert "2 imports of the team wait ahead of this one" in last
    second = client.get(reverse("import_detail", kwargs={"job_id": jobs[1].pk})).content.decode()
    assert "Next in line" in second
    first = client.get(reverse("import_detail", kwargs={"job_id": jobs[0].pk})).content.decode()
    assert "ahead of this one" not in first and "Next in line" not in first


def test_a_queued_job_finding_no_slot_waits_and_says_why(sent) -> None:
    first, second = queued_jobs(2, limit=2)
    assert slots.claim_with_slot(first)
    team = first.team
    team.imports_in_flight_limit = 1  # lowered by an admin while the second was queued
    team.save(update_fields=["imports_in_flight_limit"])
    assert not slots.claim_with_slot(second)
    assert second.events.last().message == (
        "Waiting for a slot: 1 of the team's 1 imports in flight at once are taken."
    )


def test_a_freed_slot_goes_to_the_oldest_waiting_job(
    sent, django_capture_on_commit_callbacks
) -> None:
    jobs = queued_jobs(4, limit=2)
    for job in jobs:
        slots.claim_with_slot(job)
    jobs[0].transition(from_states=("submitting",), message="done", state=JobState.COMPLETED)
    with django_capture_on_commit_callbacks(execute=True):
        assert slots.admit_waiting(jobs[0].team_id) == 1
    assert states(jobs) == ["completed", "submitting", "queued", "waiting"]
    assert sent == [str(jobs[2].pk)]
    assert jobs[2].events.last().message == slots.SLOT_FREE
    assert slots.claim_with_slot(jobs[2])
    assert slots.admit_waiting(jobs[0].team_id) == 0  # full again: the youngest still waits


def test_a_new_job_does_not_jump_ahead_of_older_waiting_ones(sent) -> None:
    jobs = queued_jobs(2, limit=1)
    slots.claim_with_slot(jobs[0])
    jobs[0].transition(from_states=("submitting",), message="done", state=JobState.ERROR)
    # A slot is free, but jobs[1] has waited longer: a new import waits behind it.
    assert not slots.slot_for_new(jobs[0].team_id)


def test_a_job_sent_before_keeps_its_slot_while_it_is_queued_again(sent) -> None:
    first, second = queued_jobs(2, limit=1)
    assert slots.claim_with_slot(first)
    first.requeue(message="Temporary API problem, will retry", retry_at=timezone.now())
    # The API may have the first one (its answer was lost): the second must not start.
    assert slots.admit_waiting(first.team_id) == 0
    assert slots.claim_with_slot(first)
    assert states([first, second]) == ["submitting", "waiting"]


def test_dry_runs_neither_take_nor_wait_for_a_slot(sent) -> None:
    jobs = queued_jobs(3, limit=1, dry_run=True)
    assert [slots.claim_with_slot(job) for job in jobs] == [True, True, True]
    assert slots.holding_slots(jobs[0].team_id).count() == 0


def test_a_paused_account_sends_nothing_until_the_pause_ends(sent) -> None:
    first, second = queued_jobs(2, limit=5)
    team = first.team
    team.api_throttled_until = timezone.now() + timedelta(seconds=30)
    team.save(update_fields=["api_throttled_until"])
    assert not slots.claim_with_slot(first) and not slots.claim_with_slot(second)
    assert "throttling this account" in first.events.last().message
    assert not slots.slot_for_new(team.pk) and slots.admit_waiting(team.pk) == 0
    team.api_throttled_until = timezone.now() - timedelta(seconds=1)
    team.save(update_fields=["api_throttled_until"])
    assert slots.admit_everywhere() == 2
    assert slots.claim_with_slot(first) and slots.claim_with_slot(second)


def test_the_pause_doubles_with_each_throttling_answer_in_a_row_up_to_a_cap() -> None:
    pauses = [slots._throttle_pause(streak).total_seconds() for streak in range(1, 12)]
    for streak, pause in enumerate(pauses, start=1):
        ceiling = min(slots.THROTTLE_MAX_SECONDS, slots.THROTTLE_BASE_SECONDS * 2 ** (streak - 1))
        assert ceiling / 2 <= pause <= ceiling
    assert max(pauses) <= slots.THROTTLE_MAX_SECONDS


@pytest.mark.django_db(transaction=True)
def test_workers_claiming_at_once_never_take_more_slots_than_the_limit(sent) -> None:
    if connection.vendor != "postgresql":
        pytest.fail("this test needs PostgreSQL's row locks: run it with DATABASE_URL")
    jobs = queued_jobs(12, limit=3)
    ImportJob.objects.update(state=JobState.WAITING)
    barrier = threading.Barrier(6)
    results: list[bool] = []

    def worker(mine: list[ImportJob]) -> None:
        # Each worker lets jobs in as slots free up and claims its share, all at once.
        try:
            barrier.wait()
            slots.admit_waiting(mine[0].team_id)
            for job in mine:
                job.refresh_from_db()
                results.append(slots.claim_with_slot(job))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker, args=(jobs[n::6],)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    # At most the limit let in, whichever worker won which race (the session's Celery worker,
    # when one runs, takes part too: it may claim and end some); the others still wait.
    submitting = ImportJob.objects.filter(state=JobState.SUBMITTING).count()
    assert 1 <= results.count(True) <= 3
    assert submitting + ImportJob.objects.filter(state=JobState.QUEUED).count() <= 3
    assert ImportJob.objects.filter(state=JobState.WAITING).count() >= 12 - 3 - 3


def test_a_team_admin_sets_the_queue_and_it_is_audited(client) -> None:
    team = make_team()
    admin = make_user("ada", team=team, role=Role.ADMIN)
    client.force_login(admin)
    page = client.get(reverse("team_credentials"))
    assert "Up to <strong>5</strong> of the team" in page.content.decode()
    answer = client.post(reverse("team_queue"), {"imports_in_flight_limit": "3"}, follow=True)
    assert "Up to 3 imports of the team now run at once." in answer.content.decode()
    team.refresh_from_db()
    assert team.imports_in_flight_limit == 3
    event = AuditEvent.objects.get(action=AuditAction.QUEUE_CHANGED)
    assert event.details == {"imports_in_flight_limit": 3, "before": 5} and event.actor == admin


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0", "At least 1 import must be able to run."),
        ("51", "At most 50: beyond it the API throttles anyway."),
        ("five", "Enter a whole number of imports, like 5."),
        ("", "This field is required."),
    ],
)
def test_a_bad_queue_setting_is_refused_with_a_message_and_changes_nothing(
    client, value, message
) -> None:
    team = make_team()
    client.force_login(make_user("ada", team=team, role=Role.ADMIN))
    answer = client.post(reverse("team_queue"), {"imports_in_flight_limit": value})
    assert answer.status_code == 422 and message in answer.content.decode()
    team.refresh_from_db()
    assert team.imports_in_flight_limit == 5
    assert not AuditEvent.objects.filter(action=AuditAction.QUEUE_CHANGED).exists()
