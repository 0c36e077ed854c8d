"""A migration-sized bulk import through real workers and the sandbox: 200 rows, the account's
limit, a throttling burst, and a worker killed mid-batch."""

from __future__ import annotations

import csv
import io
import uuid
from collections import Counter
from datetime import timedelta

import pytest
from celery import current_app
from django.utils import timezone

from importer.batches import services as batch_services
from importer.batches.forms import preview_manifest
from importer.batches.rows import READY, REFUSED, WARNING
from importer.imports import services as imports_services
from importer.imports import slots
from importer.imports.models import ImportJob, ImportJobEvent, JobState
from importer.jobs import retry
from sandbox.run import Sandbox
from tests.support.factories import make_team, make_user
from tests.support.workers import sandbox_env, start_worker, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

LIMIT = 5
# Ten rows refused, each for another reason than the others.
BAD_ROWS = [
    {"name": "", "url": "GOOD"},
    {"name": '=HYPERLINK("http://evil")', "url": "GOOD"},
    {"name": "disk-000", "url": "GOOD"},  # the first good row's name again
    {"name": "not-a-url", "url": "not a url"},
    {"name": "foreign-host", "url": "https://objects.example.com/b/k?X-Amz-Signature=abc"},
    {"name": "words-for-size", "url": "GOOD", "size": "lots"},
    {"name": "too-small", "url": "GOOD", "size": "1024"},
    {"name": "bad-tags", "url": "GOOD", "tags": "=no-key"},
    {"name": "bell", "url": "GOOD", "description": "ring\x07"},
    {"name": "x" * 300, "url": "GOOD"},
]


def manifest_text(good_url: str, *, good_rows: int, bad_rows: list[dict[str, str]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=["name", "description", "url", "size", "tags"])
    writer.writeheader()
    rows = [
        {"name": f"disk-{n:03}", "url": good_url, "tags": f"wave={n % 4}"} for n in range(good_rows)
    ]
    for position, bad in enumerate(bad_rows):
        # Spread through the manifest, not at its end.
        rows.insert(
            position * 19 + 7, {**bad, "url": good_url if bad["url"] == "GOOD" else bad["url"]}
        )
    for row in rows:
        writer.writerow({"description": "", "size": "", "tags": "", **row})
    return out.getvalue()


def settled(batch_id: uuid.UUID, count: int) -> bool:
    done = ImportJob.objects.filter(
        batch_id=batch_id, state__in=[JobState.COMPLETED, JobState.ERROR]
    ).count()
    return done == count


def test_a_200_row_manifest_imports_its_190_good_rows_within_the_accounts_limit(
    celery_worker, api_on_sandbox: Sandbox
) -> None:
    team = make_team("estate", imports_in_flight_limit=LIMIT)
    user = make_user("mover", team=team)
    # The API itself refuses a sixth import at once: the portal must never get there.
    api_on_sandbox.set_concurrent_imports_limit(LIMIT)
    api_on_sandbox.set_speed(min_seconds=0.4)
    good = api_on_sandbox.presign(expires=6 * 3600)
    text = manifest_text(good, good_rows=190, bad_rows=BAD_ROWS)

    preview = preview_manifest(text, filename="estate.csv")
    assert preview.problem == "" and len(preview.rows) == 200
    refused = [row for row in preview.rows if row.verdict == REFUSED]
    assert Counter(row.row.name for row in refused) == Counter(bad["name"] for bad in BAD_ROWS)
    assert preview.rows[0].row.name == "disk-000" and preview.rows[0].verdict != REFUSED
    assert all(row.verdict in (READY, WARNING) for row in preview.rows if row not in refused)
    # Each refusal says what is wrong with its row, in its own words.
    assert len({row.messages[0] for row in refused}) == 10

    # A burst of throttling: for 4 s the API answers every CreateSnapshot with code 24.
    api_on_sandbox.inject_fault("CreateSnapshot", "error", status=429, count=None, seconds=4.0)
    batch, created = batch_services.batch_create(
        team=team, user=user, preview=preview, key=uuid.uuid4(), source_name="estate.csv"
    )
    assert created and batch.jobs.count() == 190
    wait_until(lambda: settled(batch.pk, 190), seconds=300, interval=1.0)

    jobs = list(batch.jobs.all())
    assert Counter(job.state for job in jobs) == {JobState.COMPLETED: 190}
    state = api_on_sandbox.state()
    account = api_on_sandbox.account.account_id
    assert 1 <= state["max_concurrent_imports"][account] <= LIMIT
    # One snapshot per job: retries after throttling never made a second one.
    tokens = Counter(s["ClientToken"] for s in state["snapshots"][account])
    assert tokens == Counter({str(job.pk): 1 for job in jobs})
    answers = sum(f["fired"] for f in state["faults"] if f["action"] == "CreateSnapshot")
    throttled = ImportJobEvent.objects.filter(
        job__batch=batch, message__startswith=slots.THROTTLED_PREFIX
    )
    # Every throttling answer sent its job back to wait; backing off, the account sent few
    # requests into the burst, not one per job.
    assert throttled.count() == answers and 1 <= answers <= 2 * LIMIT
    assert ImportJobEvent.objects.filter(job__batch=batch, state=JobState.WAITING).exists()
    team.refresh_from_db()
    assert team.api_throttle_streak == 0


def test_a_worker_killed_mid_batch_loses_no_job_and_makes_no_snapshot_twice(
    celery_worker, api_on_sandbox: Sandbox, tmp_path, monkeypatch
) -> None:
    team = make_team("estate", imports_in_flight_limit=LIMIT)
    user = make_user("mover", team=team)
    good = api_on_sandbox.presign(expires=6 * 3600)
    preview = preview_manifest(manifest_text(good, good_rows=20, bad_rows=[]))
    # This worker alone gets the batch's jobs, so the test knows who holds them when it dies.
    doomed = start_worker(
        tmp_path / "doomed.log",
        with_beat=False,
        **sandbox_env(api_on_sandbox),
        queues="doomed",
        solo=True,
    )

    def to_doomed(name: str, *, row_id: object, countdown: float = 0) -> bool:
        current_app.send_task(name, args=(str(row_id),), queue="doomed")
        return True

    monkeypatch.setattr(slots, "enqueue", to_doomed)
    # The API acts 3 s after the first request: the worker dies while it is in flight.
    api_on_sandbox.inject_fault("CreateSnapshot", "slow", count=1, delay=3.0)
    batch, _ = batch_services.batch_create(team=team, user=user, preview=preview, key=uuid.uuid4())
    monkeypatch.undo()
    wait_until(lambda: api_on_sandbox.state()["calls"].get("CreateSnapshot"), seconds=30)
    doomed.stop(kill=True)
    # One being sent when the worker died, the team's other slots queued to it (their messages
    # died with it), the rest of the batch waiting its turn.
    assert batch.jobs.filter(state=JobState.SUBMITTING).count() == 1
    assert batch.jobs.filter(state=JobState.QUEUED).count() == LIMIT - 1
    assert batch.jobs.filter(state=JobState.WAITING).count() == 20 - LIMIT

    # The API goes on with the request the dead worker sent.
    wait_until(
        lambda: api_on_sandbox.state()["snapshots"][api_on_sandbox.account.account_id], seconds=10
    )
    # Later, the sweeper: the dead worker's claim and the lost messages are sent again.
    later = timezone.now() + retry.STUCK_SUBMITTING_AFTER + timedelta(minutes=3)
    # Its messages are held until it has done: `later` is hours ahead, so a job the session
    # worker claimed from the sweep's first re-sends would look stuck to its second step.
    held: list[object] = []
    real_enqueue = imports_services.import_enqueue
    monkeypatch.setattr(
        imports_services, "import_enqueue", lambda job_id: held.append(job_id) or True
    )
    summary = imports_services.imports_sweep(now=later)
    monkeypatch.undo()
    assert (summary.requeued_stuck, summary.resent_queued) == (1, LIMIT - 1)
    assert len(held) == LIMIT
    for job_id in held:
        real_enqueue(job_id=job_id)
    wait_until(lambda: settled(batch.pk, 20), seconds=180, interval=1.0)

    assert batch.jobs.filter(state=JobState.COMPLETED).count() == 20
    state = api_on_sandbox.state()
    tokens = Counter(
        s["ClientToken"] for s in state["snapshots"][api_on_sandbox.account.account_id]
    )
    assert tokens == Counter({str(job.pk): 1 for job in batch.jobs.all()})
    # The killed attempt's snapshot was found by its ClientToken, not asked for again.
    assert max(state["create_snapshot_calls_by_client_token"].values()) == 1
