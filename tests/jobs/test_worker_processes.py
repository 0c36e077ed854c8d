"""No process the suite starts outlives it: the workers' children neither, nor a forgotten one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.workers import (
    ROOT,
    RUN_MARKER,
    TEST_MARKER,
    group_members,
    marked_processes,
    start_worker,
    wait_until,
)


@pytest.mark.integration
@pytest.mark.django_db
@pytest.mark.parametrize(
    ("solo", "with_beat"),
    [
        # The leftover: the beat process of a worker that test_exports_worker kills.
        pytest.param(True, True, id="solo-with-beat"),
        pytest.param(False, False, id="prefork"),
    ],
)
def test_it_ends_the_children_of_a_worker_whose_main_process_was_killed(
    tmp_path: Path, solo: bool, with_beat: bool
) -> None:
    # Its own queue and no polls: this worker takes nothing meant for another test's.
    worker = start_worker(
        tmp_path / "killed.log",
        with_beat=with_beat,
        solo=solo,
        queues="killed",
        PORTAL_POLL_SECONDS="3600",
    )
    children = wait_until(
        lambda: [child for child in group_members(worker.pid) if child.pid != worker.pid],
        seconds=30,
    )
    os.kill(worker.pid, signal.SIGKILL)  # the main process only, as test_exports_worker does
    worker.process.wait()
    # What the issue saw: the children live on without their parent.
    assert group_members(worker.pid), children

    worker.stop()

    assert group_members(worker.pid) == []
    assert marked_processes(TEST_MARKER, os.environ[TEST_MARKER]) == []


LEAKY_TEST = """
import subprocess
from pathlib import Path


def test_it_forgets_a_process():
    process = subprocess.Popen(["sleep", "300"])
    Path("leaked.pid").write_text(str(process.pid))
"""


@pytest.mark.parametrize(
    ("hooks", "message"),
    [
        pytest.param(
            "pytest_configure, pytest_sessionfinish",
            "process(es) started by the tests outlived them (now killed)",
            id="session",
        ),
        pytest.param(
            "no_process_outlives_the_test, pytest_configure, pytest_sessionfinish",
            "processes started by this test outlived it (now killed)",
            id="test",
        ),
    ],
)
def test_it_kills_a_process_that_outlives_the_run_and_fails_naming_it(
    tmp_path: Path, hooks: str, message: str
) -> None:
    (tmp_path / "conftest.py").write_text(f"from tests.conftest import {hooks}  # noqa: F401\n")
    (tmp_path / "test_leaky.py").write_text(LEAKY_TEST)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    # The inner session marks its processes with its own id; the leak also carries ours.
    env.pop(RUN_MARKER)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:django", "-p", "no:cacheprovider", "-q"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        start_new_session=True,
    )
    leaked = int((tmp_path / "leaked.pid").read_text())
    assert result.returncode == 1, result.stdout + result.stderr
    assert message in result.stdout
    assert f"pid {leaked}: sleep 300" in result.stdout
    assert not marked_processes(TEST_MARKER, os.environ[TEST_MARKER])
