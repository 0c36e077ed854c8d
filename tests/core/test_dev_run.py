"""`make run` (scripts/dev_run.py): the processes log to files; the terminal keeps the banner,
printed last once everything is up, and the warnings and errors."""

from __future__ import annotations

import os
import re
import socket
import sys
from pathlib import Path

from tests.support.workers import start_process, wait_until

BANNER_END = "Press Ctrl-C to stop."


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_make_run_logs_to_files_and_keeps_the_banner_in_the_terminal(tmp_path: Path) -> None:
    port = free_port()
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in ("DATABASE_URL", "CELERY_BROKER_URL", "PORTAL_CACHE_URL")
    }
    # The embedded defaults (SQLite, the file broker) in a var dir of its own; an API named, so
    # no sandbox is started (the tests never take the sandbox's port, 8787).
    env.update(
        PORTAL_PORT=str(port),
        PORTAL_VAR_DIR=str(tmp_path / "var"),
        OSC_ENDPOINT_API="http://127.0.0.1:9/api/v1",
        PORTAL_POLL_SECONDS="1",
    )
    terminal = tmp_path / "terminal.txt"
    run = start_process([sys.executable, "scripts/dev_run.py"], env=env, log_path=terminal)
    try:

        def banner_shown() -> bool:
            assert run.process.poll() is None, run.log()
            return BANNER_END in run.log()

        wait_until(banner_shown, seconds=180, interval=0.5)
        worker_log_path = tmp_path / "var" / "log" / "worker.log"
        # Beat polls every second: wait until the worker has logged two polls at INFO, which
        # the terminal must not show.
        wait_until(lambda: worker_log_path.read_text().count("poll_imports") >= 2, seconds=60)
        shown = run.log()
        worker_log = worker_log_path.read_text()
    finally:
        run.stop()

    assert f"Snapshots Portal is running: http://127.0.0.1:{port}/" in shown
    assert re.search(r"operator\s+/ \S+", shown), "the logins are in the banner"
    assert "var/log/ (web.log, worker.log, beat.log, sandbox.log)" in shown
    # The banner comes last: nothing after it but warnings and errors.
    after_banner = shown.split(BANNER_END, 1)[1].strip().splitlines()
    assert all(re.search(r"WARNING|ERROR|CRITICAL", line) for line in after_banner), after_banner
    assert "INFO" not in shown
    # What the terminal no longer shows is in the files.
    assert "INFO" in worker_log and "poll_imports" in worker_log
    assert (tmp_path / "var" / "log" / "web.log").exists()
