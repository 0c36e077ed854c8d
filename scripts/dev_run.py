"""Run the whole portal on one machine: web server, Celery worker and beat, and the sandbox API.

`make run` calls this after installing. With no configuration it uses SQLite and the embedded
file-system broker, and points the portal at the sandbox (a local OUTSCALE emulator): nothing
but Python is needed. Set DATABASE_URL / CELERY_BROKER_URL / OSC_* to use real services instead.

Each process logs to its own file under `<PORTAL_VAR_DIR or var>/log/`; the terminal shows their
warnings and errors only, and the banner (address, logins, where the logs are) once everything
is up, last, so it does not scroll away.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
HOST = "127.0.0.1"


def wait_for_port(port: int, *, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.2)
    return False


def port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex((HOST, port)) != 0


def run_step(*args: str, env: dict[str, str]) -> str:
    """Runs a management step; its output is returned (an error's goes to the terminal)."""
    done = subprocess.run(  # noqa: S603
        [PYTHON, *args], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    if done.returncode:
        sys.stderr.write(done.stdout + done.stderr)
        raise SystemExit(f"{' '.join(args)} failed with {done.returncode}; see above.")
    return done.stdout


# A line the terminal shows: a warning or worse, in the portal's, Celery's or Python's format.
LOUD = re.compile(r"\b(WARNING|ERROR|CRITICAL)\b|^Traceback|Error:")
# The lines of a traceback after its first: indented frames, then the exception's own line.
TRACEBACK = re.compile(r"^(\s|Traceback|[\w.]+(Error|Exception|Warning)\b)")


def forward_loud_lines(name: str, path: Path, stop: threading.Event) -> None:
    """Follows a process's log file and prints its warnings and errors (with the lines of a
    traceback that follow them) to the terminal, prefixed with the process's name."""
    with path.open(encoding="utf-8", errors="replace") as log:
        loud = False
        while not stop.is_set():
            line = log.readline()
            if not line:
                time.sleep(0.2)
                continue
            loud = bool(LOUD.search(line)) or (loud and bool(TRACEBACK.match(line)))
            if loud:
                sys.stderr.write(f"[{name}] {line}")
                sys.stderr.flush()


def wait_for_line(path: Path, text: str, *, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if text in path.read_text(encoding="utf-8", errors="replace"):
            return True
        time.sleep(0.3)
    return False


def main() -> int:
    env = dict(os.environ)
    # A local run: the settings default to production (DEBUG=0), which needs real secrets.
    env.setdefault("DEBUG", "1")
    web_port = int(env.get("PORTAL_PORT", "8000"))
    uses_sandbox = "OSC_ENDPOINT_API" not in env
    # The sandbox's object store hands out http://127.0.0.1 pre-signed URLs: admit exactly that
    # host and port over http, and nothing else.
    env.setdefault("PORTAL_ALLOW_HTTP_URLS", "1" if uses_sandbox else "0")
    if uses_sandbox:
        env.setdefault("PORTAL_URL_HOSTS", f"{HOST}:{env.get('SANDBOX_S3_PORT', '8788')}")
    if not port_is_free(web_port):
        print(f"Port {web_port} is taken: set PORTAL_PORT to another port.", file=sys.stderr)
        return 1

    var_dir = Path(env.get("PORTAL_VAR_DIR", ROOT / "var"))
    log_dir = var_dir / "log"
    log_dir.mkdir(parents=True, exist_ok=True)
    # The metrics' files of the last run's processes (snapshots_portal/__init__.py): /metrics
    # starts from zero, as a production start does once the folder is emptied.
    for stale in Path(env.get("PROMETHEUS_MULTIPROC_DIR") or var_dir / "metrics").glob("*.db"):
        stale.unlink()
    print("Preparing the database and the demo team...", flush=True)
    run_step("manage.py", "migrate", "--no-input", "-v", "0", env=env)
    logins = run_step("manage.py", "portal_demo", env=env)

    commands: list[tuple[str, list[str]]] = []
    if uses_sandbox:
        commands.append(("sandbox", [PYTHON, "-m", "sandbox"]))
    commands += [
        ("web", [PYTHON, "manage.py", "runserver", f"{HOST}:{web_port}", "--noreload"]),
        (
            "worker",
            [
                PYTHON,
                "-m",
                "celery",
                "-A",
                "snapshots_portal",
                "worker",
                "--loglevel",
                "INFO",
                "--concurrency",
                "2",
            ],
        ),
        ("beat", [PYTHON, "-m", "celery", "-A", "snapshots_portal", "beat", "--loglevel", "INFO"]),
    ]
    processes: list[tuple[str, subprocess.Popen[bytes]]] = []
    stop_forwarding = threading.Event()
    logs: dict[str, Path] = {}
    for name, command in commands:
        logs[name] = log_dir / f"{name}.log"
        processes.append((name, start_logged(command, env, logs[name])))
        threading.Thread(
            target=forward_loud_lines, args=(name, logs[name], stop_forwarding), daemon=True
        ).start()
        if name == "sandbox" and not wait_for_port(8787, seconds=30):
            print(f"The sandbox did not start; see {logs[name]}.", file=sys.stderr)
    if not wait_for_port(web_port, seconds=60):
        print(f"The web server did not start; see {logs['web']}.", file=sys.stderr)
    if not wait_for_line(logs["worker"], " ready.", seconds=60):
        print(f"The worker is not ready yet; see {logs['worker']}.", file=sys.stderr)

    print(banner(web_port, logins, log_dir), flush=True)
    try:
        return supervise(processes)
    finally:
        stop_forwarding.set()


def start_logged(
    command: list[str], env: dict[str, str], log_path: Path
) -> subprocess.Popen[bytes]:
    log: IO[bytes] = log_path.open("ab")
    return subprocess.Popen(  # noqa: S603
        command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
    )


def banner(web_port: int, logins: str, log_dir: Path) -> str:
    shown = log_dir.relative_to(ROOT) if log_dir.is_relative_to(ROOT) else log_dir
    return (
        f"\n  Snapshots Portal is running: http://{HOST}:{web_port}/\n"
        f"{logins.rstrip()}\n"
        f"  Logs: {shown}/ (web.log, worker.log, beat.log, sandbox.log); warnings and errors "
        "also show here.\n  Press Ctrl-C to stop.\n"
    )


def supervise(processes: list[tuple[str, subprocess.Popen[bytes]]]) -> int:
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    exit_code = 0
    while not stopping:
        for name, process in processes:
            if process.poll() is not None:
                print(
                    f"{name} exited with {process.returncode}; stopping the rest.", file=sys.stderr
                )
                stopping, exit_code = True, 1
        time.sleep(0.5)
    for _, process in processes:
        process.terminate()
    for _, process in processes:
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
