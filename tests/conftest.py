"""The fixtures the tests share, and the guard that no process the suite starts outlives it.

The helpers they use (factories, worker processes, the OpenAPI checks) live in tests/support/.
"""

from __future__ import annotations

import os
import sys
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.signals import connection_created

from sandbox.run import Sandbox
from tests.sandbox_fixtures import clean_sandbox, sandbox
from tests.support.workers import (
    RUN_ID,
    RUN_MARKER,
    TEST_MARKER,
    StartedProcess,
    end_marked_processes,
    host_port,
    sandbox_env,
    start_worker,
)

__all__ = ["clean_sandbox", "sandbox"]


def the_flush_outwaits_the_workers(
    sender: Any, connection: BaseDatabaseWrapper, **kwargs: Any
) -> None:
    """Lets a worker's query, not the test's table flush, lose a deadlock between the two.

    Between transactional tests pytest-django empties every table with one TRUNCATE, which takes
    its locks table by table while the session worker's beat may be running a poll that joins the
    same tables in another order. PostgreSQL aborts whichever waiter checks first, after its
    deadlock_timeout; giving the test thread's connection the longer one makes that the worker's
    query, whose task runs again on the next tick, instead of the flush, whose failure would leave
    this test's rows to break the next one.
    """
    if connection.vendor == "postgresql" and threading.current_thread() is threading.main_thread():
        with connection.cursor() as cursor:
            cursor.execute("SET deadlock_timeout = '10s'")


connection_created.connect(the_flush_outwaits_the_workers)


def pytest_configure(config: pytest.Config) -> None:
    # Every process started from here on inherits it, including those started by code that
    # does not go through tests/support/workers.py (bench/, Playwright's browser).
    os.environ[RUN_MARKER] = RUN_ID


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Ends any process of this session still running, and fails the session naming it.

    trylast: after pytest's own hook has torn down the session fixtures (the session worker).
    """
    leftovers = end_marked_processes(RUN_MARKER, RUN_ID)
    if not leftovers:
        return
    lines = [f"{len(leftovers)} process(es) started by the tests outlived them (now killed):"]
    lines += [f"  {leftover}" for leftover in leftovers]
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        print("\n".join(lines), file=sys.stderr)
    else:
        reporter.write_line("")  # ends the progress line
        reporter.write_sep("=", "processes left running", red=True)
        for line in lines:
            reporter.write_line(line, red=True)
    if session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


# Nothing listens here. A test that names no API (most use `api_on_sandbox` or a mocked one)
# must never reach whatever happens to run on the local default, 127.0.0.1:8787: a developer's
# `make run` sandbox once fed its snapshots into a dashboard test.
UNREACHABLE_API = "http://127.0.0.1:9/api/v1"


@pytest.fixture(autouse=True)
def no_api_by_default(settings: Any) -> None:
    settings.OSC_ENDPOINT_API = UNREACHABLE_API


@pytest.fixture(autouse=True)
def empty_cache() -> None:
    """Each test starts with an empty shared cache (files under the run's var dir): no session,
    change version or API listing of an earlier test (team ids come back) is found by another."""
    from django.core.cache import cache

    cache.clear()


@pytest.fixture(autouse=True)
def no_process_outlives_the_test() -> Iterator[None]:
    """Marks the processes this test starts; any still running after it are killed, and fail it.

    Session fixtures (the session worker, the browser) are set up before this one, so they do not
    carry the mark.
    """
    test_id = uuid.uuid4().hex
    os.environ[TEST_MARKER] = test_id
    yield
    os.environ.pop(TEST_MARKER, None)
    if leftovers := end_marked_processes(TEST_MARKER, test_id):
        pytest.fail(
            "processes started by this test outlived it (now killed):\n"
            + "\n".join(f"  {leftover}" for leftover in leftovers)
        )


@pytest.fixture(scope="session")
def celery_worker(
    django_db_setup: None,
    django_db_blocker: Any,
    sandbox: Sandbox,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[StartedProcess]:
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
