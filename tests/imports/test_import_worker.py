"""The whole pipeline with real Celery workers over real Redis, and the sandbox over HTTP."""

from __future__ import annotations

import gzip
import os
import socket
import time
from contextlib import contextmanager
from datetime import timedelta

import pytest
import redis
from django.conf import settings
from django.db import connection
from django.utils import timezone

from importer.imports import services
from importer.imports import services as imports_services
from importer.imports.models import TERMINAL_STATES as TERMINAL
from importer.imports.models import ImportJob, JobState, TagState
from importer.imports.tasks import submit_import
from importer.jobs import retry
from tests.support.factories import make_user
from tests.support.workers import sandbox_env, start_process, start_worker, wait_until

GIB = 1024**3
ACCEPTED = [JobState.IN_PROGRESS, JobState.COMPLETED]
pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def post_import(client, sandbox, **overrides: str):
    data = {
        "name": "nightly",
        "description": "",
        "presigned_url": sandbox.presign(),
        "snapshot_size": str(10 * GIB),
    }
    data.update(overrides)
    response = client.post("/imports/new", data)
    assert response.status_code == 302, response.content.decode()[:2000]
    return ImportJob.objects.get(pk=response["Location"].rsplit("/", 1)[1]), data


def signature_of(url: str) -> str:
    return url.split("X-Amz-Signature=")[1].split("&")[0]


def everything_in_the_database() -> str:
    dump = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")  # noqa: S608
            dump.extend(repr(row) for row in cursor.fetchall())
    return "\n".join(dump)


def everything_in_redis() -> str:
    db = redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_timeout=5)
    readers = {
        b"string": db.get,
        b"list": lambda key: db.lrange(key, 0, -1),
        b"hash": db.hgetall,
        b"set": db.smembers,
        b"zset": lambda key: db.zrange(key, 0, -1),
    }
    dump = []
    for key in db.scan_iter(count=1000):
        reader = readers.get(db.type(key))
        dump.append(repr((key, reader(key) if reader else None)))
    return "\n".join(dump)


def test_it_imports_from_the_form_to_completed_on_a_real_worker(
    celery_worker, api_on_sandbox, client
) -> None:
    api_on_sandbox.set_speed(bytes_per_second=80_000)
    client.force_login(make_user("operator1"))
    job, _ = post_import(client, api_on_sandbox)
    seen: list[int] = []

    def finished() -> bool:
        job.refresh_from_db()
        seen.append(job.progress)
        return job.is_terminal

    wait_until(finished, seconds=90, interval=0.2)
    assert job.state == JobState.COMPLETED, job.events.last()
    assert seen == sorted(seen) and len(set(seen)) >= 3, seen
    wait_until(
        lambda: ImportJob.objects.filter(pk=job.pk, tag_state=TagState.DONE).exists(), seconds=30
    )
    snapshots = api_on_sandbox.state()["snapshots"][api_on_sandbox.account.account_id]
    assert len(snapshots) == 1 and snapshots[0]["SnapshotId"] == job.snapshot_id


def test_it_never_leaks_the_canary_signature(celery_worker, api_on_sandbox, client, caplog) -> None:
    client.force_login(make_user("operator1"))
    # Success after a transient 503, and an image larger than its Snapshot Size (the API
    # ends it in error). Permanent API errors are scanned in test_import_pipeline.
    api_on_sandbox.inject_fault("CreateSnapshot", "error", status=503, count=1)
    api_on_sandbox.put_object("exports/raw.img.gz", gzip.compress(bytes(300_000)))
    ok, ok_data = post_import(client, api_on_sandbox)
    too_small, small_data = post_import(
        client,
        api_on_sandbox,
        snapshot_size="1024",
        presigned_url=api_on_sandbox.presign(key="exports/raw.img.gz"),
    )
    jobs = [ok.pk, too_small.pk]
    wait_until(
        lambda: ImportJob.objects.filter(pk__in=jobs, state__in=TERMINAL).count() == 2, seconds=90
    )
    assert ImportJob.objects.get(pk=ok.pk).state == JobState.COMPLETED
    assert ImportJob.objects.get(pk=too_small.pk).state == JobState.ERROR
    pages = "".join(
        client.get(path).content.decode() for path in ["/", *(f"/imports/{pk}" for pk in jobs)]
    )
    places = {
        "worker log": celery_worker.log(),
        "web log": caplog.text,
        "database": everything_in_the_database(),
        "redis": everything_in_redis(),
        "pages": pages,
    }
    canaries = [signature_of(data["presigned_url"]) for data in (ok_data, small_data)]
    for canary in canaries:
        for place, text in places.items():
            assert canary not in text, f"signature leaked into the {place}"
    assert "X-Amz-Signature=" not in places["database"]


def test_it_loses_nothing_and_duplicates_nothing_when_a_worker_is_killed(
    api_on_sandbox, client, tmp_path, monkeypatch
) -> None:
    # This worker alone listens on its own queue, so the test knows who holds the job.
    worker = start_worker(
        tmp_path / "doomed.log",
        with_beat=False,
        **sandbox_env(api_on_sandbox),
        queues="doomed",
        solo=True,
    )
    monkeypatch.setattr(services, "import_enqueue", lambda **kwargs: True)
    client.force_login(make_user("operator1"))
    job, _ = post_import(client, api_on_sandbox)
    monkeypatch.undo()
    # The API acts after 3 s; the worker is killed while its request is in flight.
    api_on_sandbox.inject_fault("CreateSnapshot", "slow", count=1, delay=3.0)
    submit_import.apply_async(args=(str(job.pk),), queue="doomed")
    # Killed once its request is in the API's hands, before the answer comes back.
    wait_until(lambda: api_on_sandbox.state()["calls"].get("CreateSnapshot"), seconds=30)
    assert ImportJob.objects.get(pk=job.pk).state == JobState.SUBMITTING
    worker.stop(kill=True)
    wait_until(
        lambda: api_on_sandbox.state()["snapshots"][api_on_sandbox.account.account_id], seconds=10
    )

    survivor = start_worker(
        tmp_path / "survivor.log", with_beat=False, **sandbox_env(api_on_sandbox)
    )
    try:
        summary = imports_services.imports_sweep(
            now=timezone.now() + retry.STUCK_SUBMITTING_AFTER + timedelta(seconds=1)
        )
        assert summary.requeued_stuck == 1
        # The session worker's beat may already have polled it to completed.
        wait_until(
            lambda: ImportJob.objects.filter(pk=job.pk, state__in=ACCEPTED).exists(), seconds=30
        )
    finally:
        survivor.stop()
    state = api_on_sandbox.state()
    assert len(state["snapshots"][api_on_sandbox.account.account_id]) == 1
    assert state["create_snapshot_calls_by_client_token"] == {str(job.pk): 1}


@contextmanager
def celery_broker(url: str):
    """Points this process's Celery publisher at another broker, as a restart with it would."""
    from snapshots_portal.celery import app

    def reconnect(broker_url: str) -> None:
        # Celery reads CELERY_BROKER_URL from the environment before its own settings.
        os.environ["CELERY_BROKER_URL"] = broker_url
        app.conf.broker_url = broker_url
        app._pool = None
        app.amqp._producer_pool = None

    previous = os.environ.get("CELERY_BROKER_URL", app.conf.broker_url)
    reconnect(url)
    try:
        yield
    finally:
        reconnect(previous)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_it_keeps_a_job_submitted_while_the_broker_is_down_and_sends_it_later(
    api_on_sandbox, client, tmp_path, caplog
) -> None:
    port = free_port()
    broker_url = f"redis://127.0.0.1:{port}/0"
    client.force_login(make_user("operator1"))
    with celery_broker(broker_url):
        started = time.monotonic()
        job, _ = post_import(client, api_on_sandbox)  # nothing listens on the broker's port
        assert time.monotonic() - started < 10
        assert job.state == JobState.QUEUED
        assert "stays queued for the sweeper" in caplog.text
        assert "Queued" in client.get(f"/imports/{job.pk}").content.decode()

        broker = start_process(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1"]
            + ["--save", "", "--appendonly", "no"]
        )
        worker = None
        try:
            wait_until(lambda: redis.Redis(port=port, socket_timeout=1).ping(), seconds=20)
            worker = start_worker(
                tmp_path / "after.log",
                with_beat=False,
                CELERY_BROKER_URL=broker_url,
                **sandbox_env(api_on_sandbox),
            )
            later = timezone.now() + retry.LOST_IN_QUEUE_AFTER + timedelta(seconds=1)
            assert imports_services.imports_sweep(now=later).resent_queued == 1
            wait_until(
                lambda: ImportJob.objects.filter(
                    pk=job.pk, state__in=[JobState.IN_PROGRESS, JobState.COMPLETED]
                ).exists(),
                seconds=30,
            )
        finally:
            if worker:
                worker.stop()
            broker.stop()
    assert len(api_on_sandbox.state()["snapshots"][api_on_sandbox.account.account_id]) == 1
