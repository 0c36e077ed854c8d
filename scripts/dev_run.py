"""Run the whole portal on one machine: web server, Celery worker and beat, and the sandbox API.

`make run` calls this after installing. With no configuration it uses SQLite and the embedded
file-system broker, and points the portal at the sandbox (a local OUTSCALE emulator): nothing
but Python is needed. Set DATABASE_URL / CELERY_BROKER_URL / OSC_* to use real services instead.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

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


def run_step(*args: str, env: dict[str, str]) -> None:
    subprocess.run([PYTHON, *args], cwd=ROOT, env=env, check=True)  # noqa: S603


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

    run_step("manage.py", "migrate", "--no-input", "-v", "0", env=env)
    run_step("manage.py", "portal_demo", env=env)

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
    for name, command in commands:
        processes.append((name, subprocess.Popen(command, cwd=ROOT, env=env)))  # noqa: S603
        if name == "sandbox" and not wait_for_port(8787, seconds=30):
            print("The sandbox did not start; see its messages above.", file=sys.stderr)
    if not wait_for_port(web_port, seconds=60):
        print("The web server did not start; see its messages above.", file=sys.stderr)

    print(f"\n  Snapshots Portal is running: http://{HOST}:{web_port}/", flush=True)
    print("  Log in with the demo accounts printed above. Press Ctrl-C to stop.\n", flush=True)
    return supervise(processes)


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
