"""The cast and the real parts the tests share: a Celery worker process over the real broker."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.db import connection

from sandbox.run import Sandbox
from tests.sandbox_fixtures import clean_sandbox, sandbox

__all__ = ["clean_sandbox", "sandbox"]

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


@dataclass
class WorkerProcess:
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, *, kill: bool = False) -> None:
        if self.process.poll() is not None:
            return
        if kill:
            self.process.kill()
        else:
            self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_worker(
    log_path: Path,
    *,
    with_beat: bool,
    queues: str | None = None,
    solo: bool = False,
    **env: str,
) -> WorkerProcess:
    """A real `celery -A snapshots_portal worker` process on the configured broker."""
    from snapshots_portal.celery import app

    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "snapshots_portal",
        "worker",
        "--loglevel",
        "INFO",
        "--concurrency",
        "2",
        "--without-gossip",
        "--without-mingle",
        "--hostname",
        f"tests-{os.getpid()}-{log_path.stem}@localhost",
    ]
    if queues:
        command += ["--queues", queues]
    if solo:
        # One process: a SIGKILL ends all the work it holds, with no orphaned pool child.
        command += ["--pool", "solo"]
    if with_beat:
        command += ["--beat", "--schedule", str(log_path.with_suffix(".schedule"))]
    log = log_path.open("wb")
    process = subprocess.Popen(  # noqa: S603
        command, cwd=ROOT, env=process_env(**env), stdout=log, stderr=subprocess.STDOUT
    )
    worker = WorkerProcess(process, log_path)
    destination = f"tests-{os.getpid()}-{log_path.stem}@localhost"
    try:
        wait_until(
            lambda: app.control.ping(destination=[destination], timeout=0.5),
            seconds=60,
            interval=0.3,
        )
    except AssertionError:
        worker.stop(kill=True)
        raise AssertionError(f"worker did not start:\n{worker.log()}") from None
    return worker


def host_port(url: str) -> str:
    """`host:port` of a URL: how a local run lists the sandbox in the outbound allow-lists."""
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port}"


def sandbox_env(sandbox: Sandbox) -> dict[str, str]:
    return {
        "OSC_ENDPOINT_API": sandbox.api_url,
        "PORTAL_ALLOW_HTTP_URLS": "1",
        # Its object store, exactly: http:// is admitted for this host and port only.
        "PORTAL_URL_HOSTS": host_port(sandbox.s3_url),
        "PORTAL_POLL_SECONDS": "1",
        "OSC_READ_TIMEOUT": "3",
    }


@pytest.fixture(scope="session")
def celery_worker(
    django_db_setup: None,
    django_db_blocker: Any,
    sandbox: Sandbox,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[WorkerProcess]:
    """One worker (with beat) for the session, talking to the sandbox API."""
    from snapshots_portal.celery import app

    app.control.purge()
    with django_db_blocker.unblock():
        worker = start_worker(
            tmp_path_factory.mktemp("worker") / "session.log",
            with_beat=True,
            **sandbox_env(sandbox),
        )
    yield worker
    worker.stop()


@pytest.fixture
def api_on_sandbox(settings: Any, clean_sandbox: Sandbox) -> Sandbox:
    """Points this process's API client at the sandbox and admits its http:// URLs."""
    settings.OSC_ENDPOINT_API = clean_sandbox.api_url
    settings.OSC_READ_TIMEOUT = 3
    settings.PORTAL_ALLOW_HTTP_URLS = True
    settings.PORTAL_URL_HOSTS = [host_port(clean_sandbox.s3_url)]
    return clean_sandbox
