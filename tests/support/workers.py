"""The processes the tests start (Celery workers, a private redis-server), and how they end.

Each one starts in a process group of its own and is ended by signalling the whole group, so the
children it made (Celery's pool processes, the beat embedded with `--beat`) end with it, even when
a test SIGKILLs the main process on purpose. Each one also carries this session's marker in its
environment (RUN_MARKER), as does everything it starts, so that whatever would still outlive the
suite can be found in /proc and ended (tests/conftest.py does, after every test and at the end).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from django.db import connection

from sandbox.run import Sandbox

ROOT = Path(__file__).resolve().parents[2]

# `PORTAL_TEST_RUN=<this session's id>` and `PORTAL_TEST_ITEM=<the running test's id>` are in the
# environment of every process the suite starts; tests/conftest.py puts them in os.environ.
RUN_MARKER = "PORTAL_TEST_RUN"
TEST_MARKER = "PORTAL_TEST_ITEM"
RUN_ID = uuid.uuid4().hex

STOP_SECONDS = 20.0  # a warm shutdown finishes its task first; then SIGKILL
KILL_SECONDS = 10.0


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


# --- What runs, read from /proc -----------------------------------------------------------


@dataclass(frozen=True)
class RunningProcess:
    pid: int
    command: str

    def __str__(self) -> str:
        return f"pid {self.pid}: {self.command}"


def _pids() -> list[int]:
    return [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]


def _state_and_group(pid: int) -> tuple[str, int] | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name, in parentheses, may hold spaces: the fields start after the last ")".
    state, _ppid, group = stat[stat.rindex(")") + 2 :].split()[:3]
    return state, int(group)


def _alive(pid: int) -> bool:
    # A zombie (Z) or dead (X) entry has ended already; only its parent's wait() is missing.
    found = _state_and_group(pid)
    return found is not None and found[0] not in {"Z", "X"}


def _describe(pid: int) -> RunningProcess:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        # Empty while the process exits: its name is still there.
        name = Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        cmdline, name = b"", "?"
    command = cmdline.replace(b"\0", b" ").decode(errors="replace").strip()
    return RunningProcess(pid, command or f"[{name}]")


def group_members(group: int) -> list[RunningProcess]:
    """The live processes of process group `group`."""
    members = []
    for pid in _pids():
        found = _state_and_group(pid)
        if found and found[1] == group and found[0] not in {"Z", "X"}:
            members.append(_describe(pid))
    return members


def marked_processes(name: str, value: str) -> list[RunningProcess]:
    """The live processes (this one aside) whose environment holds `name=value`."""
    entry = f"{name}={value}".encode()
    found = []
    for pid in _pids():
        if pid == os.getpid():
            continue
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:  # gone already, or another user's
            continue
        if entry in environ.split(b"\0") and _alive(pid):
            found.append(_describe(pid))
    return found


def end_marked_processes(name: str, value: str, *, grace: float = 5.0) -> list[RunningProcess]:
    """SIGKILLs the processes marked `name=value` that are still running after `grace` seconds
    (one being stopped may need a moment to go), and returns them: each one is a leak."""
    deadline = time.monotonic() + grace
    leftovers = marked_processes(name, value)
    while leftovers and time.monotonic() < deadline:
        time.sleep(0.1)
        leftovers = marked_processes(name, value)
    for leftover in leftovers:
        with suppress(ProcessLookupError):
            os.kill(leftover.pid, signal.SIGKILL)
    deadline = time.monotonic() + KILL_SECONDS
    while marked_processes(name, value) and time.monotonic() < deadline:
        time.sleep(0.05)
    return leftovers


def end_group(group: int, *, timeout: float = STOP_SECONDS) -> None:
    """SIGTERM to every process of `group`, then SIGKILL to those still there after `timeout`."""
    for sig, seconds in ((signal.SIGTERM, timeout), (signal.SIGKILL, KILL_SECONDS)):
        if not group_members(group):
            return
        with suppress(ProcessLookupError):
            os.killpg(group, sig)
        deadline = time.monotonic() + seconds
        while group_members(group) and time.monotonic() < deadline:
            time.sleep(0.05)
    if survivors := group_members(group):
        raise AssertionError(f"process group {group} survived SIGKILL: {survivors}")


# --- Starting and stopping ----------------------------------------------------------------


def marked_env(env: dict[str, str]) -> dict[str, str]:
    """`env` with this session's marker, and the running test's when there is one."""
    marked = {**env, RUN_MARKER: RUN_ID}
    if test_id := os.environ.get(TEST_MARKER):
        marked[TEST_MARKER] = test_id
    return marked


@dataclass
class StartedProcess:
    """A process in a group of its own (its id is the process's pid), ended as a whole."""

    process: subprocess.Popen[bytes]
    log_path: Path | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        if self.log_path is None:
            return ""
        return self.log_path.read_text(errors="replace")

    def stop(self, *, kill: bool = False, timeout: float = STOP_SECONDS) -> None:
        """Ends the process and every process of its group.

        kill: SIGKILL the main process first, as a crash would (no warm shutdown). What it leaves
        behind, such as Celery's pool children or embedded beat, is then ended like any stop.
        """
        if kill and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        end_group(self.pid, timeout=timeout)
        # The group is gone, so the main process has exited: this only collects its status.
        self.process.wait(timeout=KILL_SECONDS)


def start_process(
    command: Sequence[str], *, env: dict[str, str] | None = None, log_path: Path | None = None
) -> StartedProcess:
    """Starts `command` in ROOT, in a new session (so a new process group), with the markers.

    Its output goes to `log_path`, or nowhere.
    """
    log = log_path.open("wb") if log_path else None
    try:
        process = subprocess.Popen(  # noqa: S603 - the tests' own commands
            list(command),
            cwd=ROOT,
            env=marked_env(dict(os.environ) if env is None else env),
            stdout=log or subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    finally:
        if log:
            log.close()  # the child holds its own copy
    return StartedProcess(process, log_path)


# --- Celery workers -----------------------------------------------------------------------


def database_url() -> str:
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
    env["DATABASE_URL"] = database_url()
    env.update(overrides)
    return env


def start_worker(
    log_path: Path,
    *,
    with_beat: bool,
    queues: str | None = None,
    solo: bool = False,
    **env: str,
) -> StartedProcess:
    """A real `celery -A snapshots_portal worker` process on the configured broker."""
    from snapshots_portal.celery import app

    hostname = f"tests-{os.getpid()}-{log_path.stem}@localhost"
    command = [sys.executable, "-m", "celery", "-A", "snapshots_portal", "worker"]
    command += ["--loglevel", "INFO", "--concurrency", "2", "--hostname", hostname]
    command += ["--without-gossip", "--without-mingle"]
    if queues:
        command += ["--queues", queues]
    if solo:
        # One process runs the tasks: a SIGKILL ends all the work it holds.
        command += ["--pool", "solo"]
    if with_beat:
        # Beat runs in a child process of the worker's.
        command += ["--beat", "--schedule", str(log_path.with_suffix(".schedule"))]
    worker = start_process(command, env=process_env(**env), log_path=log_path)
    try:
        wait_until(
            lambda: app.control.ping(destination=[hostname], timeout=0.5),
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
