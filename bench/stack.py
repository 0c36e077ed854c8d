"""The real parts the benches run, all on 127.0.0.1: a private PostgreSQL cluster, a private
Redis, the sandbox, gunicorn and Celery workers. Every process is started and stopped here.
"""

from __future__ import annotations

import atexit
import logging
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from glob import glob
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable

STOP_SECONDS = 20.0  # a warm shutdown finishes its task first; then SIGKILL
KILL_SECONDS = 10.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for(condition: Callable[[], Any], *, seconds: float, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        try:
            result = condition()
        except Exception:  # a server still starting refuses connections
            result = None
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"still not ready after {seconds} s")
        time.sleep(interval)


def machine() -> str:
    """One line about this machine, for the documents."""
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f", {kib / 1024**2:.1f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    one, five, fifteen = os.getloadavg()
    return (
        f"{os.cpu_count()} CPU cores ({cpu}){memory}, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}; load average {one:.1f} / {five:.1f} / "
        f"{fifteen:.1f} (1 / 5 / 15 min) when the run ended (the machine is shared: other test "
        "suites may have run at the same time)"
    )


def rss_kib(pid: int) -> int:
    """Resident memory of one process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(child) for child in text.split()]


# --- Process groups -----------------------------------------------------------------------
# Each process started here leads a process group, ended as a whole: what it started (pool children,
# embedded beat, gunicorn's workers) ends with it, as in tests/support/workers.py. Outside the
# terminal's group they miss its Ctrl-C: what still runs when the bench exits is ended at exit.
_started: list[subprocess.Popen[bytes]] = []


def _group_alive(group: int) -> bool:
    """Whether process group `group` has a live member (a zombie has ended already)."""
    for stat_path in Path("/proc").glob("[0-9]*/stat"):
        with suppress(OSError):  # gone meanwhile
            stat = stat_path.read_text()
            # The command name, in parentheses, may hold spaces: fields start after the last ")".
            state, _ppid, member_of = stat[stat.rindex(")") + 2 :].split()[:3]
            if int(member_of) == group and state not in {"Z", "X"}:
                return True
    return False


def end_group(group: int, *, timeout: float = STOP_SECONDS) -> None:
    """SIGTERM to every process of `group`, then SIGKILL to those still there after `timeout`."""
    # Linux does not reuse a pid while it is a group's id: this signals no other group.
    for sig, seconds in ((signal.SIGTERM, timeout), (signal.SIGKILL, KILL_SECONDS)):
        if not _group_alive(group):
            return
        with suppress(ProcessLookupError):
            os.killpg(group, sig)
        deadline = time.monotonic() + seconds
        while _group_alive(group) and time.monotonic() < deadline:
            time.sleep(0.05)
    if _group_alive(group):
        raise RuntimeError(f"process group {group} survived SIGKILL")


def start_in_group(
    command: list[str], *, env: dict[str, str] | None = None, log_path: Path | None = None
) -> subprocess.Popen[bytes]:
    """Starts `command` in ROOT, leading a new process group; its output goes to `log_path`."""
    stderr = subprocess.STDOUT if log_path else None  # without a log, errors reach the terminal
    with open(log_path or os.devnull, "wb") as log:  # the child keeps its own copy
        process = subprocess.Popen(  # noqa: S603 - the bench's own commands
            command, cwd=ROOT, env=env, stdout=log, stderr=stderr, start_new_session=True
        )
    _started.append(process)
    return process


def stop_in_group(
    process: subprocess.Popen[bytes], *, kill: bool = False, timeout: float = STOP_SECONDS
) -> None:
    """Ends `process` and its group. kill: SIGKILL the main process first, as a crash would."""
    if kill and process.poll() is None:
        process.kill()
    end_group(process.pid, timeout=timeout)
    process.wait(timeout=KILL_SECONDS)  # it has exited with its group: collects its status
    with suppress(ValueError):
        _started.remove(process)


@atexit.register
def _end_leftovers() -> None:
    for process in list(_started):
        with suppress(RuntimeError, subprocess.TimeoutExpired):
            stop_in_group(process, timeout=5.0)


# --- Redis --------------------------------------------------------------------------------


class RedisServer:
    """A private redis-server (never the machine's shared one): safe to stop and restart."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no"]
        self.process = start_in_group(command)
        import redis

        wait_for(lambda: redis.Redis(port=self.port, socket_timeout=1).ping(), seconds=20)

    def stop(self) -> None:
        if self.process:
            stop_in_group(self.process)
        self.process = None


# --- PostgreSQL ---------------------------------------------------------------------------


def _pg_bin(name: str) -> str:
    found = sorted(glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if found:
        return found[-1]
    path = shutil.which(name)
    if not path:
        raise RuntimeError(f"{name} not found (install PostgreSQL's server package)")
    return path


class PrivatePostgres:
    """A throwaway PostgreSQL cluster in a temporary directory, on its own port.

    initdb refuses root, so as root the cluster belongs to the `postgres` system user.
    """

    def __init__(self) -> None:
        self.port = free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="portal-bench-pg-"))
        self.data = self.folder / "data"
        self.log = self.folder / "server.log"
        self.user = "postgres"
        self.url = f"postgres://postgres@127.0.0.1:{self.port}/portal_bench"

    def _run(self, *command: str) -> None:
        prefix: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.folder, user=self.user)
            prefix = ["runuser", "-u", self.user, "--"]
        subprocess.run(  # noqa: S603
            [*prefix, *command], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )

    def start(self) -> None:
        # The postgres user must reach its data directory inside this temporary folder.
        os.chmod(self.folder, 0o755)  # noqa: S103
        self._run(
            _pg_bin("initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8"
        )
        self._ctl_start()
        self._run(_pg_bin("createdb"), "-h", "127.0.0.1", "-p", str(self.port), "portal_bench")

    def _ctl_start(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -c max_connections=300"
        options += f" -k {self.folder}"
        self._run(
            _pg_bin("pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-o",
            options,
            "-w",
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def restart(self, pause: float = 0.0) -> None:
        """Stops the server, stays down `pause` seconds (polls fail meanwhile), starts it."""
        self.stop()
        time.sleep(pause)
        self._ctl_start()

    def destroy(self) -> None:
        with suppress(subprocess.CalledProcessError):
            self.stop(mode="immediate")
        shutil.rmtree(self.folder, ignore_errors=True)


# --- Django and Celery in this process ----------------------------------------------------


def setup_django(
    database_url: str, broker_url: str, sandbox_api_url: str, sandbox_s3_url: str
) -> None:
    """Points this process at the bench's database, broker and sandbox, then migrates."""
    os.environ["DJANGO_SETTINGS_MODULE"] = "bench.settings"
    os.environ.update(portal_env(database_url, broker_url, sandbox_api_url, sandbox_s3_url))
    import django
    from django.core.management import call_command

    django.setup()
    # The bench prints figures; the portal's own logs go to its processes' log files.
    logging.getLogger().setLevel(logging.WARNING)
    logging.getLogger("django.request").setLevel(logging.ERROR)
    call_command("migrate", verbosity=0)


def portal_env(
    database_url: str, broker_url: str, sandbox_api_url: str, sandbox_s3_url: str
) -> dict[str, str]:
    return {
        # The bench's own process and workers use the sandbox's keys (the local defaults); the
        # web server measured as production overrides this with DEBUG=0 and real secrets.
        "DEBUG": "1",
        "DATABASE_URL": database_url,
        "CELERY_BROKER_URL": broker_url,
        "OSC_ENDPOINT_API": sandbox_api_url,
        "PORTAL_ALLOW_HTTP_URLS": "1",
        # The sandbox's object store, exactly: http:// is admitted for this host and port only.
        "PORTAL_URL_HOSTS": urlsplit(sandbox_s3_url).netloc,
        "PORTAL_POLL_SECONDS": "1",
        "OSC_READ_TIMEOUT": "3",
        "PORTAL_LOG_LEVEL": "INFO",
        # One cache for every process (sessions, the teams' change versions): the private
        # redis-server, another database than the broker's, as the README deploys it.
        "PORTAL_CACHE_URL": cache_url(broker_url),
    }


def cache_url(broker_url: str) -> str:
    """The broker's Redis server with database 1 (the broker's is 0): a flush never empties
    the queue."""
    parts = urlsplit(broker_url)
    return f"{parts.scheme}://{parts.netloc}/1"


def current_database_url() -> str:
    from django.db import connection

    db = connection.settings_dict
    user = db.get("USER") or "postgres"
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or 5432
    return f"postgres://{user}@{host}:{port}/{db['NAME']}"


@contextmanager
def use_broker(url: str) -> Iterator[None]:
    """Points this process's Celery publisher at `url`, as a restart with it would."""
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


@dataclass
class Process:
    process: subprocess.Popen[bytes]
    log_path: Path
    name: str = ""

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def kill(self) -> None:
        stop_in_group(self.process, kill=True)

    def stop(self) -> None:
        """A warm shutdown of the group, also after the main process exited (its children)."""
        stop_in_group(self.process)


_worker_serial = 0


def start_worker(
    log_dir: Path,
    env: dict[str, str],
    *,
    kill_dir: Path | None = None,
    beat: bool = False,
    concurrency: int = 1,
    pool: str = "solo",
    wait: bool = True,
) -> Process:
    """A real Celery worker process (`bench.worker`, so kill points can be armed)."""
    global _worker_serial
    _worker_serial += 1
    name = f"bench-{os.getpid()}-{_worker_serial}@localhost"
    command = [PYTHON, "-m", "bench.worker", "worker", "--loglevel", "INFO", "--hostname", name]
    command += ["--without-gossip", "--without-mingle", "--pool", pool]
    command += ["--concurrency", str(concurrency)]
    log_path = log_dir / f"worker-{_worker_serial}.log"
    if beat:
        command += ["--beat", "--schedule", str(log_path.with_suffix(".schedule"))]
    full_env = {**os.environ, **env, "DJANGO_SETTINGS_MODULE": "snapshots_portal.settings"}
    if kill_dir is not None:
        full_env["BENCH_KILL_DIR"] = str(kill_dir)
    worker = Process(start_in_group(command, env=full_env, log_path=log_path), log_path, name)
    if wait:
        wait_worker(worker)
    return worker


def wait_worker(worker: Process, seconds: float = 60) -> None:
    from snapshots_portal.celery import app

    try:
        wait_for(
            lambda: app.control.ping(destination=[worker.name], timeout=0.5),
            seconds=seconds,
            interval=0.2,
        )
    except TimeoutError:
        worker.kill()
        raise RuntimeError(f"worker did not start:\n{worker.log()[-3000:]}") from None


# The README's production command: `--workers 4 --threads 4 --timeout 60`.
WEB_THREADS = 4
WEB_TIMEOUT = 60


def start_gunicorn(
    log_dir: Path, env: dict[str, str], *, workers: int = 4, threads: int = WEB_THREADS
) -> tuple[Process, str]:
    """The production web server, as the README deploys it, on a free port."""
    port = free_port()
    log_path = log_dir / f"gunicorn-{port}.log"
    command = [PYTHON, "-m", "gunicorn", "snapshots_portal.wsgi", "--workers", str(workers)]
    command += ["--threads", str(threads), "--timeout", str(WEB_TIMEOUT)]
    command += ["--bind", f"127.0.0.1:{port}", "--backlog", "2048"]
    # Its own control socket: the default path is shared by every gunicorn of this user.
    command += ["--control-socket", str(log_dir / f"gunicorn-{port}.ctl")]
    full_env = {**os.environ, **env, "DJANGO_SETTINGS_MODULE": "bench.settings"}
    web = Process(start_in_group(command, env=full_env, log_path=log_path), log_path, "gunicorn")
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: requests.get(f"{base}/bench/trivial", timeout=2).ok, seconds=60)
    except TimeoutError:
        web.kill()
        raise RuntimeError(f"gunicorn did not start:\n{web.log()[-3000:]}") from None
    return web, base


def login(base: str, username: str, password: str) -> requests.Session:
    """A browser-like session: the login form, its CSRF token, then the POST."""
    session = requests.Session()
    session.get(f"{base}/login/", timeout=10)
    answer = session.post(
        f"{base}/login/",
        data={
            "username": username,
            "password": password,
            "csrfmiddlewaretoken": session.cookies["csrftoken"],
        },
        headers={"Referer": f"{base}/login/"},
        timeout=10,
        allow_redirects=False,
    )
    if answer.status_code != 302:
        raise RuntimeError(f"login of {username} failed: {answer.status_code}")
    return session


# --- Results ------------------------------------------------------------------------------


@dataclass
class Figure:
    name: str
    value: str
    target: str = ""
    met: bool | None = None  # None: reported, no target

    @property
    def verdict(self) -> str:
        return {True: "met", False: "MISSED", None: ""}[self.met]


@dataclass
class Results:
    title: str
    figures: list[Figure] = field(default_factory=list)
    notes: dict[str, list[str]] = field(default_factory=dict)

    def add(self, section: str, name: str, value: Any, target: str = "", met: bool | None = None):
        figure = Figure(name, str(value), target, met)
        self.figures.append(figure)
        self.notes.setdefault(section, [])
        self.notes[section].append(f"\x00{len(self.figures) - 1}")
        mark = f"  [{figure.verdict}]" if figure.verdict else ""
        aim = f"  (target: {target})" if target else ""
        print(f"  {name}: {value}{aim}{mark}", flush=True)
        return figure

    def note(self, section: str, text: str) -> None:
        self.notes.setdefault(section, []).append(text)
        print(f"  - {text}", flush=True)

    @property
    def missed(self) -> list[Figure]:
        return [figure for figure in self.figures if figure.met is False]

    def markdown_sections(self) -> str:
        out: list[str] = []
        for section, items in self.notes.items():
            out.append(f"\n## {section}\n")
            table: list[str] = []
            prose: list[str] = []
            for item in items:
                if item.startswith("\x00"):
                    figure = self.figures[int(item[1:])]
                    table.append(
                        f"| {figure.name} | {figure.value} | {figure.target or '-'} | "
                        f"{figure.verdict or '-'} |"
                    )
                else:
                    prose.append(f"- {item}")
            if table:
                out.append("| Measure | Figure | Target | Verdict |\n|---|---|---|---|")
                out.extend(table)
            if prose:
                out.append("")
                out.extend(prose)
        return "\n".join(out) + "\n"
