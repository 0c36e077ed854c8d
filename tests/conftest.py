"""The cast and the real parts the tests share: a Celery worker process over the real broker."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent


def wait_until(condition: Callable[[], Any], *, seconds: float, interval: float = 0.1) -> Any:
    """Polls `condition` until it returns something truthy; fails the test after `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition still false after {seconds} s")
        time.sleep(interval)


def test_database_url() -> str:
    """A DATABASE_URL naming the test database, for processes started by the tests."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    user = db.get("USER") or "postgres"
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or 5432
    return f"postgres://{user}@{host}:{port}/{db['NAME']}"


def process_env(**overrides: str) -> dict[str, str]:
    env = dict(os.environ)
    env["DATABASE_URL"] = test_database_url()
    env.update(overrides)
    return env


@pytest.fixture(scope="session")
def celery_worker(
    django_db_setup: None, django_db_blocker: Any
) -> Iterator[subprocess.Popen[bytes]]:
    """A real `celery -A snapshots_portal worker` process on the configured (Redis) broker."""
    from snapshots_portal.celery import app

    with django_db_blocker.unblock():
        env = process_env()
    app.control.purge()
    worker = subprocess.Popen(  # noqa: S603
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "snapshots_portal",
            "worker",
            "--loglevel",
            "WARNING",
            "--concurrency",
            "2",
            "--without-gossip",
            "--without-mingle",
            "--hostname",
            f"tests-{os.getpid()}@%h",
        ],
        cwd=ROOT,
        env=env,
    )
    try:
        wait_until(lambda: app.control.ping(timeout=0.5), seconds=60, interval=0.5)
        yield worker
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
