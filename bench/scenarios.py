"""The reliability scenarios, each against the real parts, each returning what it measured.

`make reliability` runs them at full size (bench/reliability.py);
tests/jobs/test_reliability.py runs a short version of each on every CI run. Every scenario is
bounded in time and stays on 127.0.0.1.
"""

from __future__ import annotations

import gzip
import math
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import redis
import requests

from bench.stack import (
    PrivatePostgres,
    Process,
    RedisServer,
    cache_url,
    portal_env,
    start_gunicorn,
    start_worker,
    wait_for,
    wait_worker,
)
from importer.imports import services as import_services
from importer.imports.services import UNTAGGED_AFTER, imports_sweep
from importer.imports.slots import MAX_THROTTLED_ATTEMPTS
from importer.jobs.retry import LOST_IN_QUEUE_AFTER, MAX_SUBMIT_ATTEMPTS, STUCK_SUBMITTING_AFTER
from importer.notifications.models import TeamWebhook
from importer.presigned.fetch import read_object_head
from importer.transfers.services import find_exported_object

GIB = 1024**3
KILL_STEPS = ("before_create", "request_out", "after_answer", "tagging", "poll")
STEP_TITLES = {
    "before_create": "before CreateSnapshot",
    "request_out": "request sent, answer not yet back",
    "after_answer": "answer received, database not yet written",
    "tagging": "during tagging (CreateTags in flight)",
    "poll": "during a poll (ReadSnapshots in flight)",
}
APPLICATION_NAME = "portal-bench"
PASSWORD = "bench-password-not-secret"  # noqa: S105 - a throwaway user of a throwaway database


@dataclass
class Env:
    """What every scenario needs: the sandbox (in this process), a private Redis, the database."""

    sandbox: Any  # sandbox.run.Sandbox
    redis: RedisServer
    database_url: str
    log_dir: Path
    postgres: PrivatePostgres | None = None  # a private cluster: restarted for real
    processes: list[Process] = field(default_factory=list)

    def worker_env(self) -> dict[str, str]:
        # Named, so that a "restart" by pg_terminate_backend ends only the bench's connections.
        database_url = self.database_url
        if database_url.startswith("postgres"):
            database_url += f"?application_name={APPLICATION_NAME}"
        return portal_env(database_url, self.redis.url, self.sandbox.api_url, self.sandbox.s3_url)

    def worker(self, extra_env: dict[str, str] | None = None, **options: Any) -> Process:
        process = start_worker(self.log_dir, {**self.worker_env(), **(extra_env or {})}, **options)
        self.processes.append(process)
        return process

    def stop_all(self) -> None:
        for process in self.processes:
            process.stop()
        self.processes.clear()


# --- Shared helpers -----------------------------------------------------------------------


def people() -> dict[str, Any]:
    """A team on the environment's (sandbox) credentials, with one user per role."""
    from django.contrib.auth.models import User

    from importer.teams.models import Membership, Role, Team

    team, _ = Team.objects.get_or_create(
        name="bench", defaults={"uses_environment_credentials": True}
    )
    found: dict[str, Any] = {"team": team}
    for role in (Role.OPERATOR, Role.ADMIN, Role.AUDITOR):
        user = User.objects.filter(username=f"bench-{role}").first()
        if user is None:
            user = User.objects.create_user(username=f"bench-{role}", password=PASSWORD)
        Membership.objects.get_or_create(user=user, team=team, defaults={"role": role})
        found[str(role)] = user
    return found


def parsed(url: str) -> Any:
    from django.utils import timezone

    from importer.presigned.policy import url_policy
    from importer.presigned.urls import parse_presigned_url

    return parse_presigned_url(url, policy=url_policy(), now=timezone.now())


def create_job(sandbox: Any, *, size: int = 10 * GIB, url: Any = None, name: str = "") -> Any:
    """A job through the same service the dialog calls (queued once the row is committed)."""
    from importer.imports.services import import_create

    cast = people()
    return import_create(
        team=cast["team"],
        user=cast["operator"],
        name=name or f"bench-{uuid.uuid4().hex[:8]}",
        description="",
        url=url or parsed(sandbox.presign()),
        snapshot_size=size,
    )


def db_retry(function: Callable[[], Any], seconds: float = 60) -> Any:
    """Runs a query, reconnecting while the database restarts."""
    from django.db import connection
    from django.db.utils import InterfaceError, OperationalError

    deadline = time.monotonic() + seconds
    while True:
        try:
            return function()
        except (OperationalError, InterfaceError):
            connection.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def sweep_now() -> Any:
    """The sweeper, with its clock past every threshold (production runs it every 60 s)."""
    from django.utils import timezone

    shift = max(STUCK_SUBMITTING_AFTER, LOST_IN_QUEUE_AFTER, UNTAGGED_AFTER)
    return imports_sweep(now=timezone.now() + shift + timedelta(seconds=1))


def snapshots_by_token(sandbox: Any) -> Counter[str]:
    tokens: Counter[str] = Counter()
    for snapshots in sandbox.state()["snapshots"].values():
        for snapshot in snapshots:
            if snapshot.get("ClientToken"):
                tokens[snapshot["ClientToken"]] += 1
    return tokens


def duplicates(sandbox: Any) -> int:
    return sum(count - 1 for count in snapshots_by_token(sandbox).values() if count > 1)


def settle(ids: list[Any], seconds: float) -> bool:
    """Waits for every job to be final: a poll each second, the (clock-shifted) sweeper every
    5 s. Sweeping faster floods the queue with re-sent tag tasks and starves the polls."""
    from importer.imports.models import TERMINAL_STATES, ImportJob

    deadline = time.monotonic() + seconds
    last_sweep = 0.0
    while time.monotonic() < deadline:
        done = db_retry(
            lambda: ImportJob.objects.filter(pk__in=ids, state__in=TERMINAL_STATES).count()
        )
        if done == len(ids):
            return True
        if time.monotonic() - last_sweep > 5:
            sweep_now()
            last_sweep = time.monotonic()
        send_poll()
        time.sleep(1.0)
    return False


def untagged_settle(ids: list[Any], seconds: float) -> None:
    """Waits for the tags still retrying (bounded), the sweeper re-sending lost ones every 5 s."""
    from importer.imports.models import ImportJob, JobState, TagState

    deadline = time.monotonic() + seconds
    pending = ImportJob.objects.filter(
        pk__in=ids, state=JobState.COMPLETED, tag_state=TagState.PENDING
    )
    while pending.exists() and time.monotonic() < deadline:
        sweep_now()
        time.sleep(5)


def send_poll() -> None:
    from importer.imports.tasks import poll_imports

    poll_imports.apply_async(expires=5)


class CallRecorder:
    """Wraps the in-process sandbox's API handler: every call, its ClientToken and answer."""

    def __init__(self, sandbox: Any) -> None:
        self.emulator = sandbox._emulator
        self.original = self.emulator.handle_api
        self.lock = threading.Lock()
        # at, action, token, status, code, delivered (False: dropped, or slower than the
        # workers' 3 s read timeout, so the client never saw this answer)
        self.calls: list[tuple[float, str, str, int, str, bool]] = []

    def __enter__(self) -> CallRecorder:
        import json

        def handle(action: str, request: Any) -> Any:
            token = ""
            if action == "CreateSnapshot":
                with suppress(ValueError, AttributeError):
                    token = str(json.loads(request.body or b"{}").get("ClientToken", ""))
            arrived = time.monotonic()
            reply = self.original(action, request)
            code = ""
            if isinstance(reply.body, dict) and reply.status >= 400:
                errors = reply.body.get("Errors") or [{}]
                code = str(errors[0].get("Code", ""))
            with self.lock:
                delivered = not reply.drop and time.monotonic() - arrived < READ_TIMEOUT
                self.calls.append((arrived, action, token, reply.status, code, delivered))
            return reply

        self.emulator.handle_api = handle
        return self

    def __exit__(self, *exc: object) -> None:
        self.emulator.handle_api = self.original

    def first_arrival(self, action: str) -> dict[str, float]:
        with self.lock:
            first: dict[str, float] = {}
            for at, name, token, *_ in self.calls:
                if name == action and token and token not in first:
                    first[token] = at
            return first


# --- 1. Worker killed at each step --------------------------------------------------------


@dataclass
class KillResult:
    step: str
    runs: int
    lost: int
    duplicates: int
    not_reached: int
    recovery_seconds: list[float]

    @property
    def median_recovery(self) -> float:
        ordered = sorted(self.recovery_seconds) or [math.nan]
        return ordered[len(ordered) // 2]

    @property
    def max_recovery(self) -> float:
        return max(self.recovery_seconds, default=math.nan)


def _fired(kill_dir: Path, step: str) -> int | None:
    for marker in kill_dir.glob(f"fired-{step}-*"):
        return int(marker.name.rsplit("-", 1)[1])
    return None


def _job_done(job_id: Any) -> bool:
    from importer.imports.models import ImportJob, JobState, TagState

    return ImportJob.objects.filter(
        pk=job_id, state=JobState.COMPLETED, tag_state=TagState.DONE
    ).exists()


def scenario_killed_worker(env: Env, runs_per_step: int, steps: tuple[str, ...] = KILL_STEPS):
    """SIGKILL the worker holding an import at each step; count lost jobs and duplicates."""
    from importer.imports.models import ImportJob, JobState

    kill_dir = env.log_dir / "kill-points"
    kill_dir.mkdir(exist_ok=True)
    workers = {w.pid: w for w in (env.worker(kill_dir=kill_dir) for _ in range(2))}
    results: list[KillResult] = []
    recover_deadline = 90.0
    try:
        for step in steps:
            result = KillResult(step, 0, 0, 0, 0, [])
            for _ in range(runs_per_step):
                for marker in kill_dir.iterdir():
                    marker.unlink()
                for worker in workers.values():
                    wait_worker(worker)
                sandbox = env.sandbox
                sandbox.reset()
                job_id = None
                if step == "poll":
                    sandbox.set_speed(min_seconds=4.0)
                    job_id = create_job(sandbox).pk
                    wait_for(
                        lambda job_id=job_id: ImportJob.objects.filter(
                            pk=job_id, state=JobState.IN_PROGRESS
                        ).exists(),
                        seconds=30,
                    )
                    sandbox.inject_fault("ReadSnapshots", "slow", count=1, delay=2.0)
                elif step == "request_out":
                    sandbox.inject_fault("CreateSnapshot", "slow", count=1, delay=2.0)
                elif step == "tagging":
                    sandbox.inject_fault("CreateTags", "slow", count=1, delay=2.0)
                (kill_dir / f"arm-{step}").touch()
                if step == "poll":
                    send_poll()
                else:
                    job_id = create_job(sandbox).pk
                try:
                    pid = wait_for(
                        lambda step=step: _fired(kill_dir, step), seconds=30, interval=0.02
                    )
                except TimeoutError:
                    result.not_reached += 1
                    continue
                if step in ("request_out", "tagging", "poll"):
                    action = {"request_out": "CreateSnapshot", "tagging": "CreateTags"}.get(
                        step, "ReadSnapshots"
                    )
                    # Killed once the API holds the request (the sandbox answers 2 s later).
                    wait_for(lambda a=action: env.sandbox.state()["calls"].get(a), seconds=10)
                    time.sleep(0.2)
                killed_at = time.monotonic()
                workers.pop(pid).kill()
                replacement = env.worker(kill_dir=kill_dir, wait=False)
                workers[replacement.pid] = replacement
                result.runs += 1
                deadline = killed_at + recover_deadline
                while not _job_done(job_id) and time.monotonic() < deadline:
                    sweep_now()
                    send_poll()
                    time.sleep(0.5)
                if _job_done(job_id):
                    result.recovery_seconds.append(time.monotonic() - killed_at)
                else:
                    result.lost += 1
                time.sleep(2.2)  # a request the sandbox still held has been answered by now
                result.duplicates += duplicates(sandbox)
            results.append(result)
    finally:
        for worker in workers.values():
            worker.stop()
        env.sandbox.reset()
    return results


# --- 2. Redis stopped while operators submit ----------------------------------------------


def dialog_data(sandbox: Any, **overrides: str) -> dict[str, str]:
    data = {
        "name": f"op-{uuid.uuid4().hex[:8]}",
        "description": "",
        "presigned_url": sandbox.presign(),
        "snapshot_size": str(10 * GIB),
        # No idempotency key: one is bound to the user whose form it was (signed), and each post
        # here is a new import, which is what a post without a key is.
    }
    data.update(overrides)
    return data


def post_dialog(session: requests.Session, base: str, data: dict[str, str]) -> requests.Response:
    return session.post(
        f"{base}/imports/new",
        data={**data, "csrfmiddlewaretoken": session.cookies.get("csrftoken", "")},
        headers={"Referer": f"{base}/imports/new"},
        timeout=30,
        allow_redirects=False,
    )


@dataclass
class RedisDownResult:
    submitted: int
    submitted_while_down: int
    errors: int
    told_queued: int
    final_after_restart: int
    slowest_answer_seconds: float
    seconds_to_final: float
    duplicates: int
    workers_crashed: int = 0


@dataclass
class Site:
    base: str
    workers: list[Process]

    def restart_dead_workers(self, env: Env) -> int:
        """What a supervisor (systemd Restart=always) does: start again any worker that exited."""
        dead = 0
        for index, worker in enumerate(self.workers):
            if worker.process.poll() is not None:
                dead += 1
                self.workers[index] = env.worker(pool="prefork", concurrency=2, beat=index == 0)
        return dead


@contextmanager
def web_and_workers(env: Env, *, workers: int = 2, web_workers: int = 2) -> Iterator[Site]:
    web, base = start_gunicorn(env.log_dir, env.worker_env(), workers=web_workers)
    env.processes.append(web)
    site = Site(
        base,
        [env.worker(pool="prefork", concurrency=2, beat=index == 0) for index in range(workers)],
    )
    try:
        yield site
    finally:
        for process in [*site.workers, web]:
            process.stop()
            if process in env.processes:
                env.processes.remove(process)


def scenario_redis_down(env: Env, submissions: int) -> RedisDownResult:
    from importer.imports.models import TERMINAL_STATES, ImportJob

    people()
    env.sandbox.reset()
    job_ids: list[str] = []
    errors = told = down_count = 0
    slowest = 0.0
    with web_and_workers(env) as site:
        base = site.base
        operators = [login(base, "bench-operator"), login(base, "bench-admin")]

        def submit(index: int, *, down: bool) -> None:
            nonlocal errors, told, slowest, down_count
            session = operators[index % 2]
            started = time.monotonic()
            try:
                answer = post_dialog(session, base, dialog_data(env.sandbox))
            except requests.RequestException:
                errors += 1
                return
            slowest = max(slowest, time.monotonic() - started)
            if answer.status_code != 302:
                errors += 1
                return
            job_id = answer.headers["Location"].rstrip("/").rsplit("/", 1)[1]
            job_ids.append(job_id)
            if down:
                down_count += 1
                page = session.get(f"{base}/imports/{job_id}", timeout=30).text
                told += "Queued" in page

        third = max(submissions // 3, 1)
        for index in range(third):
            submit(index, down=False)
        env.redis.stop()
        for index in range(submissions - 2 * third):
            submit(index, down=True)
        env.redis.start()
        # kombu 5.7 can crash a worker that loses Redis with a message unacknowledged
        # ("Unrecoverable error: AttributeError ... 'hostname'"): count them, restart them.
        time.sleep(1)
        crashed = site.restart_dead_workers(env)
        for index in range(third):
            submit(index, down=False)
        restarted = time.monotonic()

        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not settle(job_ids, seconds=5):
            crashed += site.restart_dead_workers(env)
        final = ImportJob.objects.filter(pk__in=job_ids, state__in=TERMINAL_STATES).count()
        took = time.monotonic() - restarted
    return RedisDownResult(
        submitted=submissions,
        submitted_while_down=submissions - 2 * third,
        errors=errors,
        told_queued=told,
        final_after_restart=final,
        slowest_answer_seconds=slowest,
        seconds_to_final=took,
        duplicates=duplicates(env.sandbox),
        workers_crashed=crashed,
    )


def login(base: str, username: str) -> requests.Session:
    from bench.stack import login as stack_login

    return stack_login(base, username, PASSWORD)


# --- 3. PostgreSQL restarted during polling -----------------------------------------------


@dataclass
class PostgresRestartResult:
    method: str
    jobs: int
    wrong: int
    not_final: int
    seconds_down: float
    seconds_to_final: float


def _terminate_portal_connections(database: str) -> int:
    """Ends every connection of the bench's web server and workers (and this process's)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = %s AND application_name = %s",
            [database, APPLICATION_NAME],
        )
        row = cursor.fetchone()
    return int(row[0]) if row else 0


def scenario_postgres_restart(env: Env, jobs: int) -> PostgresRestartResult:
    """Imports in flight, polled every second by the workers' beat; PostgreSQL goes away."""
    from django.db import connection

    from importer.imports.models import ImportJob, JobState

    env.sandbox.reset()
    env.sandbox.put_object("exports/raw.img.gz", gzip.compress(bytes(300_000)))
    env.sandbox.set_speed(min_seconds=8.0)
    beat = env.worker(pool="prefork", concurrency=2, beat=True)
    helper = env.worker(pool="prefork", concurrency=2)
    ids: list[Any] = []
    try:
        for index in range(jobs):
            if index % 4 == 3:  # the API ends these in error: the image is larger than the size
                url = parsed(env.sandbox.presign(key="exports/raw.img.gz"))
                ids.append(create_job(env.sandbox, url=url, size=1024).pk)
            else:
                ids.append(create_job(env.sandbox).pk)
        # Every job accepted by the API (those it fails end in error quickly); most importing.
        wait_for(
            lambda: (
                not ImportJob.objects.filter(
                    pk__in=ids, state__in=[JobState.QUEUED, JobState.SUBMITTING]
                ).exists()
            ),
            seconds=60,
        )
        time.sleep(1.5)  # polls are running
        started = time.monotonic()
        if env.postgres is not None:
            method = "PostgreSQL server stopped (pg_ctl -m fast), down 5 s, started again"
            connection.close()
            env.postgres.restart(pause=5.0)
        else:
            method = "pg_terminate_backend of every connection of the portal's processes"
            _terminate_portal_connections(str(connection.settings_dict["NAME"]))
            connection.close()
        down = time.monotonic() - started

        def settled() -> bool:
            return ImportJob.objects.filter(
                pk__in=ids, state__in=[JobState.COMPLETED, JobState.ERROR]
            ).count() == len(ids)

        with suppress(TimeoutError):
            wait_for(lambda: db_retry(settled), seconds=90, interval=0.5)
        took = time.monotonic() - started
        truth = {
            s["ClientToken"]: s["State"]
            for snapshots in env.sandbox.state()["snapshots"].values()
            for s in snapshots
        }
        expected = {"completed": JobState.COMPLETED, "error": JobState.ERROR}
        wrong = not_final = 0
        for job in db_retry(lambda: list(ImportJob.objects.filter(pk__in=ids))):
            if not job.is_terminal:
                not_final += 1
            elif expected.get(truth.get(str(job.pk), "")) != job.state or (
                job.state == JobState.COMPLETED and job.progress != 100
            ):
                wrong += 1
    finally:
        beat.stop()
        helper.stop()
        env.processes.remove(beat)
        env.processes.remove(helper)
        env.sandbox.reset()
    return PostgresRestartResult(method, len(ids), wrong, not_final, down, took)


# --- 4. API faults over many imports -------------------------------------------------------

FAULT_PLAN = [
    ("CreateSnapshot", "error", 429, 0.12, None),
    ("CreateSnapshot", "error", 503, 0.10, None),
    ("CreateSnapshot", "error", 500, 0.06, None),
    ("CreateSnapshot", "timeout", 503, 0.03, 4.0),  # past the workers' 3 s read timeout
    ("CreateSnapshot", "drop", 503, 0.05, None),
    ("CreateSnapshot", "slow", 503, 0.05, 1.0),
    ("ReadSnapshots", "error", 503, 0.15, None),
    ("ReadSnapshots", "error", 429, 0.05, None),
    ("ReadSnapshots", "drop", 503, 0.03, None),
    ("ReadSnapshots", "slow", 503, 0.05, 1.0),
    ("CreateTags", "error", 429, 0.15, None),
    ("CreateTags", "error", 500, 0.05, None),
    ("CreateTags", "drop", 503, 0.03, None),
]
TRANSIENT_STATUSES = {429, 500, 502, 503, 504}
READ_TIMEOUT = 3.0  # OSC_READ_TIMEOUT of the bench's workers (portal_env)


@dataclass
class FaultsResult:
    imports: int
    permanent: int
    final: int
    completed: int
    failed_permanent: int
    gave_up: int
    snapshots_not_one: int
    max_create_calls: int
    max_attempts: int
    retries_over_bound: int
    retried_after_permanent: int
    faults_fired: dict[str, int]
    api_calls: int
    seconds: float
    gave_up_reasons: list[str] = field(default_factory=list)


def scenario_api_faults(env: Env, imports: int, permanent_share: float = 0.03):
    """Many imports under a storm of 429/500/503, timeouts, drops and slow answers."""
    from importer.imports.models import ImportJob, JobState
    from importer.presigned.urls import PresignedUrl

    env.sandbox.reset()
    for action, kind, status, probability, delay in FAULT_PLAN:
        env.sandbox.inject_fault(
            action, kind, status=status, count=None, probability=probability, delay=delay
        )
    workers = [env.worker(pool="prefork", concurrency=4, beat=index == 0) for index in range(2)]
    permanent_ids: set[str] = set()
    ids: list[str] = []
    started = time.monotonic()
    with CallRecorder(env.sandbox) as recorder:
        try:
            good = parsed(env.sandbox.presign())
            for index in range(imports):
                if index % round(1 / permanent_share) == 0:
                    # The API refuses this one for good (400 invalid-url-format).
                    bad = PresignedUrl(
                        **{**good.__dict__, "secret_url": "ftp://objects.invalid/x?Signature=q"}
                    )
                    job = create_job(env.sandbox, url=bad)
                    permanent_ids.add(str(job.pk))
                else:
                    job = create_job(env.sandbox, url=good)
                ids.append(str(job.pk))

            settle(ids, seconds=600)
            # Tags may still be retrying; give them their bounded retries.
            untagged_settle(ids, seconds=120)
        finally:
            for worker in workers:
                worker.stop()
                env.processes.remove(worker)
        seconds = time.monotonic() - started
        calls = list(recorder.calls)
    state = env.sandbox.state()
    fired: Counter[str] = Counter()
    for fault in state["faults"]:
        label = f"{fault['action']} {fault['kind']}"
        fired[label + (f" {fault['status']}" if fault["kind"] == "error" else "")] += fault["fired"]
    tokens = snapshots_by_token(env.sandbox)
    env.sandbox.reset()
    jobs = list(ImportJob.objects.filter(pk__in=ids))
    by_token: dict[str, list[tuple[int, bool]]] = defaultdict(list)
    for _, action, token, status, _, delivered in sorted(calls):
        if action == "CreateSnapshot" and token:
            by_token[token].append((status, delivered))
    retried_after_permanent = 0
    for answers in by_token.values():
        for position, (status, delivered) in enumerate(answers):
            # A permanent error the client received must be the last call for that job.
            if delivered and 400 <= status < 500 and status not in TRANSIENT_STATUSES:
                retried_after_permanent += len(answers) - position - 1
                break
    # A completed job has exactly one snapshot; no job has more than one.
    snapshots_not_one = sum(
        tokens.get(str(job.pk), 0) != 1
        for job in jobs
        if job.state == JobState.COMPLETED or tokens.get(str(job.pk), 0) > 1
    )
    completed = [job for job in jobs if job.state == JobState.COMPLETED]
    return FaultsResult(
        imports=len(ids),
        permanent=len(permanent_ids),
        final=sum(job.is_terminal for job in jobs),
        completed=len(completed),
        failed_permanent=sum(
            job.state == JobState.ERROR and str(job.pk) in permanent_ids for job in jobs
        ),
        gave_up=sum(
            job.state == JobState.ERROR and str(job.pk) not in permanent_ids for job in jobs
        ),
        snapshots_not_one=snapshots_not_one,
        max_create_calls=max((len(answers) for answers in by_token.values()), default=0),
        max_attempts=max((job.attempts for job in jobs), default=0),
        # Throttling answers (429, and 503 code 6) pause the account and are bounded on their
        # own (MAX_THROTTLED_ATTEMPTS); every other attempt counts against MAX_SUBMIT_ATTEMPTS.
        retries_over_bound=sum(
            sum(not _throttled(answer) for answer in answers) > MAX_SUBMIT_ATTEMPTS
            or sum(_throttled(answer) for answer in answers) > MAX_THROTTLED_ATTEMPTS
            for answers in by_token.values()
        ),
        retried_after_permanent=retried_after_permanent,
        faults_fired=dict(fired),
        api_calls=len(calls),
        seconds=seconds,
        gave_up_reasons=sorted(
            {
                f"{job.error_code}: {job.error_details[:160]}"
                for job in jobs
                if job.state == JobState.ERROR and str(job.pk) not in permanent_ids
            }
        ),
    )


def _throttled(answer: tuple[int, bool]) -> bool:
    status, delivered = answer
    return delivered and status in (429, 503)


# --- 5. Hostile input -----------------------------------------------------------------------


@dataclass
class HostileResult:
    crafted: int
    generated: int
    server_errors: int
    forbidden_connections: int
    public_connections: int
    invalid_accepted: int
    crafted_accepted: int
    accepted_total: int
    examples: list[str]


class SocketWatch:
    """Counts outbound connections at the socket, and never lets one leave this machine.

    `socket.socket.connect` is wrapped (every Python-level client dials through it); an audit
    hook on "socket.connect" counts any that got past the wrapper. A forbidden address is
    counted and refused; a public one is counted and refused too (there is no network here).
    """

    def __init__(self, allowed_local: set[tuple[str, int]]) -> None:
        import socket

        self.socket_module = socket
        self.allowed_local = allowed_local
        self.forbidden: list[str] = []
        self.public: list[str] = []
        self.audited_forbidden: list[str] = []
        self.active = False
        self.original = socket.socket.connect

    @staticmethod
    def is_forbidden(host: str) -> bool:
        import ipaddress

        try:
            address = ipaddress.ip_address(host.partition("%")[0])
        except ValueError:
            return True  # a name reaching the socket unresolved: count it
        mapped = getattr(address, "ipv4_mapped", None)
        return not (mapped or address).is_global

    def __enter__(self) -> SocketWatch:
        import sys

        watch = self

        def connect(sock: Any, address: Any) -> Any:
            if watch.active and isinstance(address, tuple):
                host, port = str(address[0]), int(address[1])
                if (host, port) not in watch.allowed_local:
                    target = f"{host}:{port}"
                    if watch.is_forbidden(host):
                        watch.forbidden.append(target)
                    else:
                        watch.public.append(target)
                    raise ConnectionRefusedError(f"bench: no outbound connection to {target}")
            return watch.original(sock, address)

        def audit(event: str, args: tuple[Any, ...]) -> None:
            # Installed once for the process: it reports to whichever watch is active.
            current = getattr(SocketWatch, "_current", None)
            if event != "socket.connect" or current is None or not current.active:
                return
            if isinstance(args[1], tuple):
                host, port = str(args[1][0]), int(args[1][1])
                if (host, port) not in current.allowed_local and current.is_forbidden(host):
                    current.audited_forbidden.append(f"{host}:{port}")

        self.socket_module.socket.connect = connect  # type: ignore[method-assign]
        if not getattr(SocketWatch, "_hooked", False):
            sys.addaudithook(audit)  # cannot be removed: it only counts while active
            SocketWatch._hooked = True  # type: ignore[attr-defined]
        SocketWatch._current = self  # type: ignore[attr-defined]
        self.active = True
        return self

    def __exit__(self, *exc: object) -> None:
        self.active = False
        self.socket_module.socket.connect = self.original  # type: ignore[method-assign]


def fake_resolver(host: str, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
    """DNS as an attacker would like it: their names resolve to internal addresses."""
    import socket

    from bench.hostile import FAKE_DNS, OOS, PUBLIC_OOS_ADDRESS

    name = host.rstrip(".").lower()
    addresses = FAKE_DNS.get(name) or ([PUBLIC_OOS_ADDRESS] if name == OOS else None)
    if addresses is None:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    entries = []
    for address in addresses:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        entries.append((family, socket.SOCK_STREAM, 6, "", (address, port or 443)))
    return entries


@contextmanager
def hostile_settings() -> Iterator[None]:
    """Production URL policy (https only, public addresses only) plus attacker-named extra hosts,
    the fake resolver, and no broker publishing (accepted jobs just stay queued)."""
    from django.conf import settings

    from bench.hostile import EXTRA_HOSTS

    saved = (settings.PORTAL_ALLOW_HTTP_URLS, settings.PORTAL_URL_HOSTS)
    defaults = read_object_head.__kwdefaults__ or {}
    saved_resolver = defaults.get("resolver")
    saved_enqueue = import_services.import_enqueue
    settings.PORTAL_ALLOW_HTTP_URLS = False
    settings.PORTAL_URL_HOSTS = list(EXTRA_HOSTS)
    defaults["resolver"] = fake_resolver
    import_services.import_enqueue = lambda **kwargs: True  # type: ignore[assignment]
    try:
        yield
    finally:
        settings.PORTAL_ALLOW_HTTP_URLS, settings.PORTAL_URL_HOSTS = saved
        defaults["resolver"] = saved_resolver
        import_services.import_enqueue = saved_enqueue  # type: ignore[assignment]


def scenario_hostile_input(generated: int, crafted_limit: int | None = None) -> HostileResult:
    """Every crafted URL and generated input through the dialog and the inspector."""
    from django.db import connection
    from django.test import Client

    from bench.hostile import crafted_urls, generated_inputs, why_invalid
    from importer.imports.models import ImportJob

    cast = people()
    client = Client(raise_request_exception=False, HTTP_HOST="127.0.0.1")
    client.force_login(cast["operator"])
    connection.ensure_connection()
    crafted = crafted_urls()[:crafted_limit]
    server_errors = invalid_accepted = crafted_accepted = accepted = 0
    examples: list[str] = []
    before = list(ImportJob.objects.values_list("pk", flat=True))
    with hostile_settings(), SocketWatch(set()) as watch:
        for url in crafted:
            data = {"name": "hostile", "presigned_url": url, "snapshot_size": str(10 * GIB)}
            for path in ("/imports/inspect", "/imports/new"):
                answer = client.post(path, data)
                server_errors += answer.status_code >= 500
                if path == "/imports/new" and answer.status_code == 302:
                    crafted_accepted += 1
                    examples.append(f"crafted accepted: {url[:120]!r}")
        for data in generated_inputs(generated):
            answer = client.post("/imports/new", data)
            server_errors += answer.status_code >= 500
            if answer.status_code >= 500:
                examples.append(f"500 for {data!r}"[:300])
            if answer.status_code == 302:
                accepted += 1
                reason = why_invalid(data)
                if reason:
                    invalid_accepted += 1
                    examples.append(f"accepted though {reason}: {data!r}"[:300])
    # The accepted jobs were never sent (no broker publishing): none may reach the sandbox.
    redirects, redirect_forbidden, redirect_errors = _redirect_phase(client)
    ImportJob.objects.exclude(pk__in=before).delete()
    return HostileResult(
        crafted=len(crafted) + redirects,
        generated=generated,
        server_errors=server_errors + redirect_errors,
        forbidden_connections=len(watch.forbidden)
        + len(watch.audited_forbidden)
        + redirect_forbidden,
        public_connections=len(watch.public),
        invalid_accepted=invalid_accepted,
        crafted_accepted=crafted_accepted,
        accepted_total=accepted,
        examples=examples[:10],
    )


REDIRECT_TARGETS = [
    "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
    "http://127.0.0.1:6379/",
    "http://[::1]/",
    "http://10.0.0.1/",
    "http://[::ffff:169.254.169.254]/",
    "http://metadata.google.internal/computeMetadata/v1/",
    "file:///etc/passwd",
    "/relative/path?X-Amz-Signature=x",
]
REDIRECT_STATUSES = (301, 302, 303, 307, 308)


def _redirect_phase(client: Any) -> tuple[int, int, int]:
    """An object store that answers with redirects to internal addresses.

    It runs on loopback, so this phase admits http:// and loopback URLs (the sandbox setting):
    the only defence left is not following the redirect, and a followed one would dial a
    forbidden address, counted at the socket. Returns (URLs, forbidden, 500s).
    """
    import http.server

    from django.conf import settings

    class Redirector(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            _, status, target = self.path.split("/", 3)[1:4]
            self.send_response(int(status))
            self.send_header("Location", REDIRECT_TARGETS[int(target.split("?")[0])])
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            return

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Redirector)
    port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    saved = settings.PORTAL_ALLOW_HTTP_URLS
    settings.PORTAL_ALLOW_HTTP_URLS = True
    urls = errors = 0
    try:
        with SocketWatch({("127.0.0.1", port)}) as watch:
            for status in REDIRECT_STATUSES:
                for index in range(len(REDIRECT_TARGETS)):
                    from bench.hostile import query

                    url = f"http://127.0.0.1:{port}/bucket/{status}/{index}?{query()}"
                    urls += 1
                    data = {"name": "redirect", "presigned_url": url, "snapshot_size": str(GIB)}
                    for path in ("/imports/inspect", "/imports/new"):
                        answer = client.post(path, data)
                        # Accepting is fine here (loopback is allowed in this mode); dialling
                        # where the redirect points is not.
                        errors += answer.status_code >= 500
    finally:
        settings.PORTAL_ALLOW_HTTP_URLS = saved
        server.shutdown()
        server.server_close()
    return urls, len(watch.forbidden) + len(watch.audited_forbidden), errors


# --- 5b. Hostile person-chosen destinations -------------------------------------------------
#
# A team admin types the team's API endpoint, OOS endpoint and webhook URL; an operator pastes a
# pre-signed URL. Each goes through the outbound guard (importer.core.net) when it is saved and
# again at every send. Loopback listeners count every connection they get: a value let through would
# show there (or at the socket watch, for an address no listener holds).

DESTINATION_KEY = "AKIAHOSTILEDEST0001"
DESTINATION_SECRET = "hostile-destination-secret-key"  # noqa: S105 - a throwaway bench value
WEBHOOK_SECRET = "hostile-destination-webhook-secret"  # noqa: S105 - a throwaway bench value
BASELINE_WEBHOOK = "https://hooks.example.com/baseline"
REDIRECT_DESTINATIONS = 8  # Location targets of the local run's redirects
SANDBOX_LISTENER = "sandbox"


def _http_answer(status: int, body: bytes, content_type: str, *headers: str) -> bytes:
    head = [
        f"HTTP/1.1 {status} Bench",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(body)}",
        "Connection: close",
        *headers,
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


API_ANSWER = b'{"Snapshots": [], "ResponseContext": {"RequestId": "listener"}}'
S3_ANSWER = (
    b'<?xml version="1.0" encoding="UTF-8"?><ListBucketResult><Name>b</Name>'
    b"<KeyCount>0</KeyCount><IsTruncated>false</IsTruncated></ListBucketResult>"
)


class CountingListener:
    """A TCP server on loopback that counts every connection it accepts.

    It answers like the service it stands for (Redis, an HTTP API, a metadata service, a mail
    server): a guard that let a value through would show here, whatever the client expected. It
    also listens on 127.0.0.2 and [::1] on the same port when the machine allows it.
    """

    def __init__(self, name: str, reply: Callable[[bytes], bytes], *, banner: bytes = b"") -> None:
        self.name = name
        self.reply = reply
        self.banner = banner
        self.accepted = 0
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.sockets = [self._bind("127.0.0.1", 0)]
        self.port = int(self.sockets[0].getsockname()[1])
        for extra in ("127.0.0.2", "::1"):
            with suppress(OSError):
                self.sockets.append(self._bind(extra, self.port))
        self.thread = threading.Thread(target=self._serve, daemon=True, name=f"bench-{name}")
        self.thread.start()

    @staticmethod
    def _bind(host: str, port: int) -> Any:
        import socket

        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.bind((host, port))
            sock.listen(64)
        except OSError:
            sock.close()
            raise
        return sock

    @property
    def addresses(self) -> set[tuple[str, int]]:
        return {(str(sock.getsockname()[0]), self.port) for sock in self.sockets}

    @property
    def shown(self) -> str:
        hosts = sorted(host if ":" not in host else f"[{host}]" for host, _ in self.addresses)
        return f"{'/'.join(hosts)} port {self.port}"

    def count(self) -> int:
        with self.lock:
            return self.accepted

    def _serve(self) -> None:
        import select

        while not self.stopping.is_set():
            ready, _, _ = select.select(self.sockets, [], [], 0.1)
            for sock in ready:
                with suppress(OSError):
                    conn, _ = sock.accept()
                    with self.lock:
                        self.accepted += 1
                    threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: Any) -> None:
        with conn, suppress(OSError):
            conn.settimeout(2)
            if self.banner:
                conn.sendall(self.banner)
            conn.sendall(self.reply(conn.recv(65536)))

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=5)
        for sock in self.sockets:
            sock.close()


@dataclass
class Listeners:
    """The hostile values' targets, and the local run's sandbox (the one listed entry)."""

    targets: list[CountingListener]
    sandbox: CountingListener
    locations: list[str]  # where the sandbox's redirects point

    @property
    def ports(self) -> list[int]:
        return [listener.port for listener in self.targets]

    @property
    def addresses(self) -> set[tuple[str, int]]:
        found: set[tuple[str, int]] = set()
        for listener in [*self.targets, self.sandbox]:
            found |= listener.addresses
        return found

    def counts(self) -> dict[str, int]:
        return {listener.name: listener.count() for listener in self.targets}


@contextmanager
def counting_listeners() -> Iterator[Listeners]:
    import re

    locations: list[str] = []

    def sandbox_reply(request: bytes) -> bytes:
        line = request.split(b"\r\n", 1)[0].decode("latin-1")
        path = line.split(" ")[1] if line.count(" ") >= 2 else "/"
        redirect = re.search(r"redirect-(\d{3})-(\d+)", path)
        if redirect:
            status, index = int(redirect[1]), int(redirect[2])
            location = locations[index % len(locations)]
            # An S3-style redirect too: botocore reads the region and the endpoint from these.
            body = (
                f"<Error><Code>PermanentRedirect</Code><Endpoint>{location}</Endpoint></Error>"
            ).encode()
            return _http_answer(
                status,
                body,
                "application/xml",
                f"Location: {location}",
                "x-amz-bucket-region: us-east-1",
            )
        if "list-type=2" in path:
            return _http_answer(200, S3_ANSWER, "application/xml")
        return _http_answer(200, API_ANSWER, "application/json")

    targets = [
        CountingListener("Redis-like", lambda _: b"-ERR unknown command\r\n"),
        CountingListener("HTTP API", lambda _: _http_answer(200, API_ANSWER, "application/json")),
        CountingListener(
            "metadata service",
            lambda _: _http_answer(200, b"AccessKeyId=ASIAINTERNAL\nToken=internal", "text/plain"),
        ),
        CountingListener(
            "mail server",
            lambda _: b"502 5.5.2 Error: command not recognized\r\n",
            banner=b"220 mail.internal ESMTP\r\n",
        ),
    ]
    sandbox = CountingListener(SANDBOX_LISTENER, sandbox_reply)
    redis, api, metadata, mail = targets
    locations += [
        f"http://127.0.0.1:{redis.port}/",
        f"http://127.0.0.2:{api.port}/api/v1/ReadSnapshots",
        f"http://[::1]:{metadata.port}/latest/meta-data/iam/security-credentials/",
        f"http://localhost:{mail.port}/",
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        f"gopher://127.0.0.1:{redis.port}/_INFO",
        "file:///etc/passwd",
        f"//127.0.0.1:{api.port}/",
    ]
    assert len(locations) == REDIRECT_DESTINATIONS  # noqa: S101 - the document says how many
    try:
        yield Listeners(targets, sandbox, locations)
    finally:
        for listener in [*targets, sandbox]:
            listener.stop()


class FakeDns:
    """socket.getaddrinfo for the destinations phase: nothing is looked up for real.

    Attacker names resolve to internal addresses, OUTSCALE's and the webhook receiver's names to a
    public one, numeric spellings (2130706433, 0x7f.1...) as the C library reads them.
    ``rebound`` makes allowed names answer otherwise (DNS rebinding); "flip" answers public on
    the first look-up after ``reset`` and loopback after, to catch a second resolution.
    """

    def __init__(self) -> None:
        import socket

        self.original = socket.getaddrinfo
        self.rebound: dict[str, list[str]] = {}
        self.lookups: Counter[str] = Counter()

    def reset(self) -> None:
        self.lookups.clear()

    def addresses(self, name: str) -> list[str] | None:
        from bench.hostile import ATTACKER_DNS, FAKE_DNS, PUBLIC_NAMES, PUBLIC_OOS_ADDRESS
        from importer.outscale.endpoints import API_HOSTS
        from importer.outscale.regions import OOS_HOSTS

        if name in self.rebound:
            answer = self.rebound[name]
            if answer == ["flip"]:
                self.lookups[name] += 1
                return [PUBLIC_OOS_ADDRESS] if self.lookups[name] == 1 else ["127.0.0.1"]
            return answer
        if name in ATTACKER_DNS:
            return ATTACKER_DNS[name]
        if name in FAKE_DNS:
            return FAKE_DNS[name]
        if name in PUBLIC_NAMES or name in API_HOSTS or name in OOS_HOSTS:
            return [PUBLIC_OOS_ADDRESS]
        return None

    def __call__(
        self, host: Any, port: Any, family: int = 0, type: int = 0, proto: int = 0, flags: int = 0
    ) -> list[Any]:
        import socket

        name = (host.decode() if isinstance(host, bytes) else str(host)).rstrip(".").lower()
        addresses = self.addresses(name)
        if addresses is None:
            with suppress(socket.gaierror, UnicodeError):
                return self.original(host, port, family, type, proto, flags | socket.AI_NUMERICHOST)
            try:
                addresses = [socket.inet_ntoa(socket.inet_aton(name))]
            except (OSError, UnicodeError):
                raise socket.gaierror(socket.EAI_NONAME, "Name or service not known") from None
        entries = []
        for address in addresses:
            is_v6 = ":" in address
            found = socket.AF_INET6 if is_v6 else socket.AF_INET
            if family not in (0, found):
                continue
            sockaddr = (address, int(port or 443), 0, 0) if is_v6 else (address, int(port or 443))
            entries.append((found, socket.SOCK_STREAM, 6, "", sockaddr))
        if not entries:
            raise socket.gaierror(
                socket.EAI_ADDRFAMILY, "Address family for hostname not supported"
            )
        return entries


@contextmanager
def destination_settings(listeners: Listeners, dns: FakeDns, *, local_run: bool) -> Iterator[None]:
    """Production: https only, public addresses only, with partner names (resolving inside) and
    a forgotten sandbox entry on the allow-lists. Local run: PORTAL_ALLOW_HTTP_URLS with exactly
    one listed entry, 127.0.0.1:<sandbox port>, in each list."""
    import socket

    from django.conf import settings

    from bench.hostile import EXTRA_HOSTS

    names = (
        "PORTAL_ALLOW_HTTP_URLS",
        "PORTAL_URL_HOSTS",
        "PORTAL_API_HOSTS",
        "PORTAL_WEBHOOK_HOSTS",
        "OSC_ENDPOINT_API",
    )
    saved = {name: getattr(settings, name) for name in names}
    if local_run:
        entry = f"127.0.0.1:{listeners.sandbox.port}"
        values: dict[str, Any] = {
            "PORTAL_ALLOW_HTTP_URLS": True,
            "PORTAL_URL_HOSTS": [entry],
            "PORTAL_API_HOSTS": [],
            "PORTAL_WEBHOOK_HOSTS": [entry],
            # OSC_ENDPOINT_API's own host:port is on the API list: the one entry there.
            "OSC_ENDPOINT_API": f"http://{entry}/api/v1",
        }
    else:
        forgotten = f"127.0.0.1:{listeners.targets[1].port}"
        values = {
            "PORTAL_ALLOW_HTTP_URLS": False,
            "PORTAL_URL_HOSTS": [*EXTRA_HOSTS, forgotten],
            "PORTAL_API_HOSTS": [
                "api.partner.example",
                f"api-private.partner.example:{listeners.targets[1].port}",
                forgotten,
            ],
            "PORTAL_WEBHOOK_HOSTS": [
                f"hooks.partner.example:{listeners.targets[1].port}",
                forgotten,
            ],
            "OSC_ENDPOINT_API": "https://api.eu-west-2.outscale.com/api/v1",
        }
    defaults = read_object_head.__kwdefaults__ or {}
    saved_resolver = defaults.get("resolver")
    saved_enqueue = import_services.import_enqueue
    for name, value in values.items():
        setattr(settings, name, value)
    defaults["resolver"] = dns
    socket.getaddrinfo = dns  # type: ignore[assignment]  # net.system_resolver reads it per call
    import_services.import_enqueue = lambda **kwargs: True  # type: ignore[assignment]
    try:
        yield
    finally:
        socket.getaddrinfo = dns.original
        for name, value in saved.items():
            setattr(settings, name, value)
        defaults["resolver"] = saved_resolver
        import_services.import_enqueue = saved_enqueue  # type: ignore[assignment]


def destination_people() -> dict[str, Any]:
    """A team with its own (encrypted) credentials and a webhook; its admin and its operator."""
    from django.contrib.auth.models import User

    from importer.core.crypto import encrypt_text
    from importer.teams.models import Membership, Role, Team

    team, _ = Team.objects.get_or_create(name="bench-destinations")
    Team.objects.filter(pk=team.pk).update(
        region="eu-west-2",
        endpoint="",
        oos_endpoint="",
        uses_environment_credentials=False,
        access_key_encrypted=encrypt_text(DESTINATION_KEY),
        secret_key_encrypted=encrypt_text(DESTINATION_SECRET),
        access_key_hint=DESTINATION_KEY[-4:],
    )
    TeamWebhook.objects.update_or_create(
        team=team,
        defaults={
            "url_encrypted": encrypt_text(BASELINE_WEBHOOK),
            "url_redacted": BASELINE_WEBHOOK,
            "secret_encrypted": encrypt_text(WEBHOOK_SECRET),
            "active": True,
        },
    )
    found: dict[str, Any] = {}
    for role in (Role.ADMIN, Role.OPERATOR):
        user = User.objects.filter(username=f"bench-destinations-{role}").first()
        if user is None:
            user = User.objects.create_user(
                username=f"bench-destinations-{role}", password=PASSWORD
            )
        Membership.objects.get_or_create(user=user, team=team, defaults={"role": role})
        found[str(role)] = user
    team.refresh_from_db()
    found["team"] = team
    found["webhook"] = TeamWebhook.objects.get(team=team)
    return found


def _stored_destinations(team_id: int) -> tuple[Any, ...]:
    """Everything a saved destination would change (encrypted values change on every save)."""
    from importer.audit.models import AuditEvent
    from importer.imports.models import ImportJob
    from importer.teams.models import Team

    team = Team.objects.filter(pk=team_id).values_list(
        "region",
        "endpoint",
        "oos_endpoint",
        "uses_environment_credentials",
        "access_key_encrypted",
        "secret_key_encrypted",
        "credentials_updated_at",
    )
    hooks = TeamWebhook.objects.filter(team_id=team_id).values_list(
        "pk", "url_encrypted", "secret_encrypted", "active", "updated_at"
    )
    return (
        tuple(team.get()),
        tuple(hooks),
        ImportJob.objects.filter(team_id=team_id).count(),
        AuditEvent.objects.filter(team_id=team_id).count(),
    )


def _restore_destinations(team_id: int, baseline: tuple[Any, ...]) -> None:
    from importer.imports.models import ImportJob
    from importer.teams.models import Team

    (region, endpoint, oos, env, key, secret, updated), hooks, _, _ = baseline
    Team.objects.filter(pk=team_id).update(
        region=region,
        endpoint=endpoint,
        oos_endpoint=oos,
        uses_environment_credentials=env,
        access_key_encrypted=key,
        secret_key_encrypted=secret,
        credentials_updated_at=updated,
    )
    for pk, url, hook_secret, active, hook_updated in hooks:
        TeamWebhook.objects.filter(pk=pk).update(
            url_encrypted=url, secret_encrypted=hook_secret, active=active, updated_at=hook_updated
        )
    # The audit chain is append-only: a saved value stays recorded there (and is counted).
    ImportJob.objects.filter(team_id=team_id).delete()


@dataclass
class DestinationPass:
    name: str
    tried: Counter[str] = field(default_factory=Counter)  # through the views
    sent: Counter[str] = field(default_factory=Counter)  # stored, then the send path
    saved: Counter[str] = field(default_factory=Counter)
    server_errors: Counter[str] = field(default_factory=Counter)
    not_refused: Counter[str] = field(default_factory=Counter)
    crashes: Counter[str] = field(default_factory=Counter)
    connections: dict[str, int] = field(default_factory=dict)  # listener -> accepted
    sandbox_connections: int = 0  # hostile values reaching the listed entry (local run)
    socket_forbidden: list[str] = field(default_factory=list)
    socket_public: int = 0
    redirects: int = 0
    redirect_connections: int = 0  # at the sandbox, which answered them
    controls: int = 0
    controls_passed: int = 0
    examples: list[str] = field(default_factory=list)

    @property
    def hostile_connections(self) -> int:
        return sum(self.connections.values()) + self.sandbox_connections


@dataclass
class DestinationsResult:
    passes: list[DestinationPass]
    listeners: dict[str, str]  # name -> where it listens


def scenario_hostile_destinations(limit: int | None = None) -> DestinationsResult:
    """Hostile values of every person-chosen destination, through the views and the send paths.

    ``limit`` keeps about that many values per destination (a sample spread over the list).
    """
    from django.db import connection
    from django.test import Client

    cast = destination_people()
    admin = Client(raise_request_exception=False, HTTP_HOST="127.0.0.1")
    admin.force_login(cast["admin"])
    operator = Client(raise_request_exception=False, HTTP_HOST="127.0.0.1")
    operator.force_login(cast["operator"])
    connection.ensure_connection()
    passes = []
    with counting_listeners() as listeners:
        shown = {listener.name: listener.shown for listener in listeners.targets}
        shown[listeners.sandbox.name] = listeners.sandbox.shown
        for local_run in (False, True):
            passes.append(_destinations_pass(cast, (admin, operator), listeners, local_run, limit))
    return DestinationsResult(passes=passes, listeners=shown)


def _sample(values: list[str], limit: int | None) -> list[str]:
    if not limit or len(values) <= limit:
        return values
    step = len(values) / limit
    return [values[int(index * step)] for index in range(limit)]


@dataclass
class _Run:
    """One pass's tools: where results go, who posts, what was stored, the DNS."""

    result: DestinationPass
    cast: dict[str, Any]
    clients: tuple[Any, Any]  # (team admin, operator)
    state: _DestinationState
    dns: FakeDns
    connections: Callable[[], int]  # hostile connections so far, at the listeners and socket


def _destinations_pass(
    cast: dict[str, Any],
    clients: tuple[Any, Any],
    listeners: Listeners,
    local_run: bool,
    limit: int | None,
) -> DestinationPass:
    from bench.hostile import DESTINATIONS, REBOUND_ANSWERS, destination_values, sandbox_variants

    result = DestinationPass("local run" if local_run else "production")
    before = listeners.counts()
    sandbox_before = listeners.sandbox.count()
    rebinds = REBOUND_ANSWERS if not limit else REBOUND_ANSWERS[:2]
    watch = SocketWatch(listeners.addresses)

    def connections() -> int:
        at_listeners = sum(listeners.counts().values()) + listeners.sandbox.count()
        return at_listeners + len(watch.forbidden) + len(watch.audited_forbidden)

    run = _Run(result, cast, clients, _DestinationState(cast["team"].pk), FakeDns(), connections)
    with destination_settings(listeners, run.dns, local_run=local_run), watch:
        for kind in DESTINATIONS:
            values = destination_values(kind, listeners.ports)
            if local_run:
                values += sandbox_variants(kind, listeners.sandbox.port)
            for value in _sample(values, limit):
                _try_destination(run, kind, value)
            # DNS rebinding: the allowed name itself now answers with an internal address.
            for answer in [*rebinds, ["flip"]]:
                run.dns.rebound = dict.fromkeys(_public_names(), answer)
                note = f" (its name resolving to {', '.join(answer)})"
                if answer == ["flip"]:
                    note = " (its name resolving public, then to 127.0.0.1)"
                for value in _official_values(kind):
                    # A flip answers public at save time: only its send path is hostile.
                    _try_destination(run, kind, value, views=answer != ["flip"], note=note)
                run.dns.rebound = {}
        result.sandbox_connections = listeners.sandbox.count() - sandbox_before
        if local_run:
            _redirects_and_controls(run, listeners)
    run.state.restore()
    result.connections = {name: count - before[name] for name, count in listeners.counts().items()}
    result.socket_forbidden = watch.forbidden + watch.audited_forbidden
    result.socket_public = len(watch.public)
    return result


class _DestinationState:
    """The team's stored destinations as the pass found them; a change is a value saved."""

    def __init__(self, team_id: int) -> None:
        self.team_id = team_id
        self.baseline = _stored_destinations(team_id)

    def changed(self) -> bool:
        """True (and everything put back) when something was saved since the last call."""
        now = _stored_destinations(self.team_id)
        if now == self.baseline:
            return False
        self.restore()
        self.baseline = _stored_destinations(self.team_id)  # with the audit event it left
        return True

    def restore(self) -> None:
        _restore_destinations(self.team_id, self.baseline)


def _public_names() -> list[str]:
    from bench.hostile import PUBLIC_NAMES
    from importer.outscale.endpoints import API_HOSTS
    from importer.outscale.regions import OOS_HOSTS

    return [*PUBLIC_NAMES, *API_HOSTS, *OOS_HOSTS]


def _official_values(kind: str) -> list[str]:
    """The values that are right while DNS tells the truth."""
    from bench.hostile import API, OOS, WEBHOOK, good_url

    return {
        "api": [f"https://{API}/api/v1"],
        "oos": [f"https://{OOS}", f"https://exports-bucket.{OOS}"],
        "webhook": [f"https://{WEBHOOK}/hooks/snapshots"],
        "presigned": [
            good_url(),
            good_url().replace(f"{OOS}/exports-bucket", f"exports-bucket.{OOS}"),
        ],
    }[kind]


def _try_destination(
    run: _Run, kind: str, value: str, *, views: bool = True, note: str = ""
) -> None:
    """One hostile value: posted through its views, then stored as if it had got past them and
    sent. Both must refuse it; nothing may be saved, dialled, or answer 500."""
    result = run.result
    shown = f"{value[:160]!r}{note}"
    connected = run.connections()
    if views:
        result.tried[kind] += 1
        statuses = _post_destination(kind, value, run.clients)
        errors = sum(status >= 500 for status in statuses)
        result.server_errors[kind] += errors
        if errors:
            result.examples.append(f"{kind}: 500 for {shown}")
        if run.state.changed() or 302 in statuses:
            result.saved[kind] += 1
            result.examples.append(f"{kind}: saved {shown}")
    if _storable(kind, value):
        result.sent[kind] += 1
        run.dns.reset()
        outcome = _send_stored(kind, value, run.cast)
        run.state.restore()
        if outcome == "sent":
            result.not_refused[kind] += 1
            result.examples.append(f"{kind}: sent to {shown}")
        elif outcome != "refused":
            result.crashes[kind] += 1
            result.examples.append(f"{kind}: {outcome} for {shown}")
    if run.connections() > connected:
        result.examples.append(f"{kind}: connection to a non-public address for {shown}")


def _storable(kind: str, value: str) -> bool:
    # The endpoints are 255-character columns; PostgreSQL stores no NUL in text.
    if kind in ("api", "oos"):
        return len(value) <= 255 and "\x00" not in value
    return True  # the webhook URL is stored encrypted; a pre-signed URL is never stored


def _post_destination(kind: str, value: str, clients: tuple[Any, Any]) -> list[int]:
    admin, operator = clients
    if kind == "api":
        data = {
            "region": "eu-west-2",
            "endpoint": value,
            "access_key": DESTINATION_KEY,
            "secret_key": DESTINATION_SECRET,
        }
        return [admin.post("/team/credentials/", data).status_code]
    if kind in ("oos", "webhook"):
        data = {"oos_endpoint": "", "webhook_url": "", "webhook_secret": ""}
        if kind == "oos":
            data["oos_endpoint"] = value
        else:
            data.update(webhook_url=value, webhook_secret=WEBHOOK_SECRET)
        return [admin.post("/team/transfers/", data).status_code]
    data = {"name": "hostile-destination", "presigned_url": value, "snapshot_size": str(10 * GIB)}
    return [operator.post(path, data).status_code for path in ("/imports/inspect", "/imports/new")]


def _send_stored(kind: str, value: str, cast: dict[str, Any]) -> str:
    """ "sent", "refused", or what was raised that the send path's callers do not expect."""
    from botocore.exceptions import BotoCoreError, ClientError
    from django.utils import timezone

    from importer.core.crypto import DecryptionError, encrypt_text
    from importer.notifications.models import DeliveryState, WebhookDelivery
    from importer.notifications.services import TransientDeliveryError, webhook_deliver
    from importer.outscale.accounts import api_client
    from importer.outscale.errors import OscApiError
    from importer.presigned import urls as presigned_urls
    from importer.presigned.fetch import InspectionError, read_object_head
    from importer.presigned.policy import url_policy
    from importer.teams.models import Team
    from importer.transfers.services import find_exported_object

    team = cast["team"]
    try:
        if kind == "api":
            Team.objects.filter(pk=team.pk).update(endpoint=value)
            team.refresh_from_db()
            try:
                api_client(team).read_snapshots_page(states=["completed"])
            except (OscApiError, ValueError, DecryptionError):  # what the pollers catch
                return "refused"
            return "sent"
        if kind == "oos":
            Team.objects.filter(pk=team.pk).update(oos_endpoint=value)
            team.refresh_from_db()
            export = _BucketOf("exports-bucket")
            try:
                find_exported_object(team, export)  # type: ignore[arg-type]
            except (ClientError, BotoCoreError, ValueError, DecryptionError):  # as _complete
                return "refused"
            return "sent"
        if kind == "webhook":
            webhook = cast["webhook"]
            TeamWebhook.objects.filter(pk=webhook.pk).update(url_encrypted=encrypt_text(value))
            delivery = WebhookDelivery.objects.create(
                webhook=webhook, event="export.completed", payload={"kind": "export"}
            )
            with suppress(TransientDeliveryError):
                webhook_deliver(delivery_id=str(delivery.pk))
            delivery.refresh_from_db()
            delivered = delivery.state == DeliveryState.DELIVERED
            delivery.delete()
            return "sent" if delivered else "refused"
        url = presigned_urls.PresignedUrl(
            scheme="https",
            host="oos.eu-west-2.outscale.com",
            port=443,
            bucket="exports-bucket",
            key="snap.qcow2.gz",
            style="sigv4",
            expires_at=timezone.now() + timedelta(hours=1),
            warnings=(),
            secret_url=value,
        )
        try:
            read_object_head(url, policy=url_policy())
        except InspectionError:
            return "refused"
        return "sent"
    except Exception as error:  # the finding itself: a send path its callers cannot handle
        return f"raised {type(error).__name__}"


@dataclass
class _BucketOf:
    """What find_exported_object reads of an export."""

    bucket: str
    prefix: str = "exports/"
    snapshot_id: str = "snap-00000000"
    disk_image_format: str = "qcow2"


def _redirects_and_controls(run: _Run, listeners: Listeners) -> None:
    """Local run only: the listed sandbox answers every redirect status towards the other
    listeners and internal addresses (never followed), then one right value per destination
    is saved and sent (the suite is not blind: the listener does count it)."""
    from bench.hostile import DESTINATIONS, query

    result, cast, state = run.result, run.cast, run.state
    entry = f"127.0.0.1:{listeners.sandbox.port}"
    before = listeners.sandbox.count()
    for kind in DESTINATIONS:
        for status in REDIRECT_STATUSES:
            for index in range(len(listeners.locations)):
                step = f"redirect-{status}-{index}"
                value = {
                    "api": f"http://{entry}/{step}",
                    "oos": f"http://{entry}",
                    "webhook": f"http://{entry}/{step}",
                    "presigned": f"http://{entry}/{step}/snap.qcow2.gz?{query()}",
                }[kind]
                result.redirects += 1
                if kind == "oos":
                    outcome = _send_stored_bucket(value, step, cast)
                else:
                    outcome = _send_stored(kind, value, cast)
                state.restore()
                if outcome not in ("refused", "sent"):
                    result.crashes[kind] += 1
                    result.examples.append(f"{kind}: {outcome} for redirect {value[:120]!r}")
    result.redirect_connections = listeners.sandbox.count() - before
    controls = {
        "api": f"http://{entry}/api/v1",
        "oos": f"http://{entry}",
        "webhook": f"http://{entry}/hooks/snapshots",
        "presigned": f"http://{entry}/exports-bucket/snap.qcow2.gz?{query()}",
    }
    for kind, value in controls.items():
        result.controls += 1
        reached = listeners.sandbox.count()
        # Saved through its view (302), seen as saved by the same check that counts hostile
        # values, then sent and counted by the listener: each measure of this phase can see.
        accepted = 302 in _post_destination(kind, value, run.clients) and state.changed()
        outcome = _send_stored(kind, value, cast)
        state.restore()
        if accepted and outcome == "sent" and listeners.sandbox.count() > reached:
            result.controls_passed += 1
        else:
            result.examples.append(f"control {kind} not accepted or not reached: {outcome}")


def _send_stored_bucket(endpoint: str, bucket: str, cast: dict[str, Any]) -> str:
    """The OOS send path on a bucket whose listing the sandbox answers with a redirect."""
    from botocore.exceptions import BotoCoreError, ClientError

    from importer.core.crypto import DecryptionError
    from importer.teams.models import Team

    team = cast["team"]
    Team.objects.filter(pk=team.pk).update(oos_endpoint=endpoint)
    team.refresh_from_db()
    try:
        find_exported_object(team, _BucketOf(bucket))  # type: ignore[arg-type]
    except (ClientError, BotoCoreError, ValueError, DecryptionError):
        return "refused"
    except Exception as error:
        return f"raised {type(error).__name__}"
    return "sent"


# --- 6. Secret leak scan ------------------------------------------------------------------


@dataclass
class LeakResult:
    canaries: int
    paths: list[str]
    places: dict[str, int]  # place -> characters scanned
    hits: dict[str, int]  # place -> canary hits


def signature_of(url: str) -> str:
    return url.split("Signature=")[1].split("&")[0]


def everything_in_the_database() -> str:
    from django.db import connection

    dump = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")  # noqa: S608
            dump.extend(repr(row) for row in cursor.fetchall())
    return "\n".join(dump)


def everything_in_redis(url: str) -> str:
    db = redis.Redis.from_url(url, socket_timeout=5)
    readers: dict[bytes, Callable[[bytes], Any]] = {
        b"string": db.get,
        b"list": lambda key: db.lrange(key, 0, -1),
        b"hash": db.hgetall,
        b"set": db.smembers,
        b"zset": lambda key: db.zrange(key, 0, -1),
    }
    dump = []
    for key in db.scan_iter(count=1000):
        reader = readers.get(db.type(key))  # type: ignore[arg-type]
        dump.append(repr((key, reader(key) if reader else None)))
    return "\n".join(dump)


def scenario_secret_leak(env: Env) -> LeakResult:
    """A canary signature per path, then every place a secret could end up is searched."""

    env.sandbox.reset()
    env.sandbox.put_object("exports/raw.img.gz", gzip.compress(bytes(300_000)))
    canaries: list[str] = []
    paths: list[str] = []
    pages: list[str] = []
    exports: list[str] = []
    ids: list[str] = []
    with web_and_workers(env) as site:
        base = site.base
        operator, admin = login(base, "bench-operator"), login(base, "bench-admin")
        auditor = login(base, "bench-auditor")

        def submit(label: str, session: requests.Session, **overrides: str) -> str:
            data = dialog_data(env.sandbox, **overrides)
            canaries.append(signature_of(data["presigned_url"]))
            paths.append(label)
            session.post(
                f"{base}/imports/inspect",
                data={
                    "presigned_url": data["presigned_url"],
                    "csrfmiddlewaretoken": session.cookies.get("csrftoken", ""),
                },
                headers={"Referer": base},
                timeout=30,
            )
            answer = post_dialog(session, base, data)
            if answer.status_code == 302:
                job_id = answer.headers["Location"].rstrip("/").rsplit("/", 1)[1]
                ids.append(job_id)
                return job_id
            return ""

        def key(name: str) -> str:
            return env.sandbox.presign(key=f"exports/{name}")

        env.sandbox.put_object("exports/canary-a.qcow2.gz", _demo_bytes(env.sandbox))
        submit("success", operator, presigned_url=key("canary-a.qcow2.gz"))
        env.sandbox.inject_fault("CreateSnapshot", "error", status=503, count=1)
        submit("transient 503 then success", admin)
        env.sandbox.inject_fault("CreateSnapshot", "drop", count=1)
        submit("dropped answer then success", operator)
        # Enough 500s for one tag to exhaust its retries.
        env.sandbox.inject_fault("CreateTags", "error", status=500, count=6)
        submit("tagging failed (500 until the tag gives up)", operator)
        failed = submit(
            "import failed at the API (image larger than the size)",
            operator,
            presigned_url=key("raw.img.gz"),
            snapshot_size="1024",
        )
        submit("dry run", admin, dry_run="on")
        submit(
            "refused by the form (too small for the image)",
            operator,
            presigned_url=key("raw.img.gz"),
            snapshot_size="1",
        )
        submit(
            "refused by the form (missing object)", operator, presigned_url=key("missing.qcow2.gz")
        )
        expired = env.sandbox.presign(expires=1)
        time.sleep(1.5)
        submit("refused by the form (expired URL)", operator, presigned_url=expired)
        settle(ids, seconds=120)
        env.sandbox.clear_faults()
        if failed:
            new_url = key("canary-a.qcow2.gz")
            canaries.append(signature_of(new_url))
            paths.append("retry of a failed import with a new URL")
            admin.post(
                f"{base}/imports/{failed}/retry",
                data={
                    "name": "retried",
                    "description": "",
                    "presigned_url": new_url,
                    "snapshot_size": str(10 * GIB),
                    "csrfmiddlewaretoken": admin.cookies.get("csrftoken", ""),
                },
                headers={"Referer": base},
                timeout=30,
            )
            time.sleep(3)
        for session in (operator, admin, auditor):
            for path in ["/", "/history/", "/audit/", *(f"/imports/{job}" for job in ids)]:
                pages.append(session.get(f"{base}{path}", timeout=30).text)
            for path in ("/history.csv", "/audit.csv"):
                exports.append(session.get(f"{base}{path}", timeout=30).text)
        worker_logs = "\n".join(p.log() for p in env.processes if p.name != "gunicorn")
        web_log = "\n".join(p.log() for p in env.processes if p.name == "gunicorn")
    places = {
        "web server log": web_log,
        "worker logs": worker_logs,
        "database (every table)": everything_in_the_database(),
        "redis (every key)": everything_in_redis(env.redis.url),
        # The shared cache (sessions, listings, change versions): the same server, database 1.
        "redis cache (every key)": everything_in_redis(cache_url(env.redis.url)),
        "pages (3 roles)": "\n".join(pages),
        "CSV exports (3 roles)": "\n".join(exports),
    }
    env.sandbox.reset()
    hits = {place: sum(text.count(canary) for canary in canaries) for place, text in places.items()}
    return LeakResult(
        canaries=len(canaries),
        paths=paths,
        places={place: len(text) for place, text in places.items()},
        hits=hits,
    )


def _demo_bytes(sandbox: Any) -> bytes:
    answer = requests.get(sandbox.presign(), timeout=10)
    answer.raise_for_status()
    return answer.content


def job_fields(team: Any, user: Any) -> dict[str, Any]:
    """The columns of a job row made directly (benches that need many rows fast)."""
    from django.utils import timezone

    return {
        "team": team,
        "name": "bench-volume",
        "snapshot_size": 10 * GIB,
        "submitted_by": user,
        "url_redacted": "https://oos.eu-west-2.outscale.com/exports-bucket/snap.qcow2.gz",
        "url_host": "oos.eu-west-2.outscale.com",
        "url_bucket": "exports-bucket",
        "url_key": "snap.qcow2.gz",
        "url_expires_at": timezone.now() + timedelta(hours=6),
    }
