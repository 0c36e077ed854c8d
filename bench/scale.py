"""The pages at scale (1,000 then 1,000,000 jobs in one team, with as many audit entries) and
the history's CSV export of all of them through gunicorn. The rows are made with SQL
(`INSERT ... SELECT ... FROM generate_series`): a million ORM objects would take longer than
the whole bench.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import requests

from bench.stack import Results, children, rss_kib, start_gunicorn

SCALE_TEAM = "bench-scale"
SCALE_USER = "bench-scale-admin"
SMALL_JOBS = 1_000
PAGE_ROWS = 50  # importer.core.pages.PAGE_SIZE
DEEP_PAGE = 1_000
RENDERS = 15
WARM_UPS = 3

# The row whose name holds the fragment the "few rows" search looks for: inside the small set,
# so both sizes find it (and, at a million rows, the few others whose random part holds it too).
FEW_ROW = 500
MANY_FRAGMENT = "prod"  # one row in four: the environment part of the names

APPS = ["billing", "checkout", "search", "auth", "mailer", "ledger", "catalog", "reports"]
APPS += ["gateway", "ingest", "media", "analytics", "crm", "payroll", "wiki", "backup"]
ROLES = ["db", "web", "cache", "queue", "api", "worker", "batch", "vault"]
ENVS = ["prod", "staging", "dev", "qa"]
BUCKETS = ["exports-bucket", "backups-eu-west-2", "vm-images", "archive-2026", "dr-copies"]


def few_fragment() -> str:
    """Six hex characters of FEW_ROW's name: about one row in 5.6 million has them by chance."""
    return hashlib.md5(str(FEW_ROW).encode(), usedforsecurity=False).hexdigest()[:6]


def _array(values: list[str]) -> str:
    return "ARRAY[" + ", ".join(f"'{value}'" for value in values) + "]"


# Each generated row `i` (1 is the newest; `at` is when it was made, `h` md5 of i). The names
# are app-role-env-v<n>-<8 hex>: realistic words many rows share, and a random part that makes
# a short fragment rare, so the trigram search is measured on both. (Only this module's
# constants are formatted into the SQL.)
_ROW = f"""
SELECT i, at, h,
       ({_array(APPS)})[1 + i %% {len(APPS)}] AS app,
       ({_array(ROLES)})[1 + (i / {len(APPS)}) %% {len(ROLES)}] AS role,
       ({_array(ENVS)})[1 + i %% {len(ENVS)}] AS env,
       ({_array(BUCKETS)})[1 + (i / 7) %% {len(BUCKETS)}] AS bucket,
       CASE WHEN i %% 10 = 3 THEN 'error' ELSE 'completed' END AS state
FROM (
    SELECT i, now() - i * interval '7 seconds' AS at, md5(i::text) AS h
    FROM generate_series(%s, %s) AS i
) AS numbered
"""  # noqa: S608

_JOB_COLUMNS = {
    "id": "gen_random_uuid()",
    "name": "app || '-' || role || '-' || env || '-v' || (i %% 997) || '-' || substr(h, 1, 8)",
    "description": "CASE WHEN i %% 3 = 0 THEN '' ELSE 'Nightly backup of ' || app || ' ' || role "
    "|| ' (' || env || '), ticket OPS-' || (i %% 7919) END",
    "snapshot_size": "(1 + i %% 500)::bigint * 1073741824",
    "url_redacted": "'https://oos.eu-west-2.outscale.com/' || bucket || '/' || app || '/' || "
    "substr(h, 1, 8) || '.qcow2.gz'",
    "url_host": "'oos.eu-west-2.outscale.com'",
    "url_bucket": "bucket",
    "url_key": "app || '/' || substr(h, 1, 8) || '.qcow2.gz'",
    "url_expires_at": "at + interval '6 hours'",
    "state": "state",
    "api_state": "state",
    "snapshot_id": "'snap-' || substr(h, 9, 8)",
    "progress": "CASE WHEN state = 'completed' THEN 100 ELSE 40 END",
    "attempts": "1",
    "error_code": "CASE WHEN state = 'error' THEN '9010' ELSE '' END",
    "error_type": "CASE WHEN state = 'error' THEN 'InvalidParameterValue' ELSE '' END",
    "error_details": "CASE WHEN state = 'error' THEN 'The file at the pre-signed URL is not a "
    "valid disk image.' ELSE '' END",
    "created_at": "at",
    "updated_at": "at + (i %% 3600) * interval '1 second'",
    "enqueued_at": "at",
    "claimed_at": "at + interval '1 second'",
    "submitted_at": "at + interval '2 seconds'",
    "finished_at": "at + (i %% 3600) * interval '1 second'",
    "tag_state": "'done'",
}

_AUDIT_COLUMNS = {
    "at": "at + interval '2 seconds'",
    "action": "CASE i %% 5 WHEN 0 THEN 'import_submitted' WHEN 4 THEN 'csv_export' "
    "ELSE 'job_state' END",
    "target": "substr(h, 1, 8) || '-' || substr(h, 9, 4) || '-4' || substr(h, 14, 3) || '-a' "
    "|| substr(h, 18, 3) || '-' || substr(h, 21, 12)",
    "details": "jsonb_build_object('state', state, 'message', 'The API reports the snapshot ' "
    "|| state || '.')",
    # A chain of made-up hashes: the audit page shows entries, it never verifies the chain.
    "prev_hash": "md5(i::text) || md5(h)",
    "hash": "md5((i - 1)::text) || md5(md5((i - 1)::text))",
    "ip": "('10.0.' || (i %% 250) || '.' || (i %% 199 + 1))::inet",
}


def _insert(model: Any, columns: dict[str, str], fixed: dict[str, Any], first: int, last: int):
    """Rows `first` to `last` of `model`: `columns` as SQL over the numbered row, `fixed` as
    parameters, every other column its field's default (the id left to the database)."""
    from django.db import connection

    names, values, params = [], [], [first, last]
    fixed_params: list[Any] = []
    for field in model._meta.concrete_fields:
        if field.name in columns:
            names.append(field.column)
            values.append(columns[field.name])
        elif field.primary_key:
            continue
        else:
            value = fixed[field.name] if field.name in fixed else field.get_default()
            names.append(field.column)
            values.append("%s")
            fixed_params.append(field.get_db_prep_save(value, connection))
    sql = (
        f"INSERT INTO {model._meta.db_table} ({', '.join(names)}) "  # noqa: S608 - constants
        f"SELECT {', '.join(values)} FROM ({_ROW}) AS row"
    )
    with connection.cursor() as cursor:
        # The fixed values come first in the SELECT list, the series bounds in the subquery.
        cursor.execute(sql, [*fixed_params, *params])


@contextmanager
def gin_indexes_rebuilt(table: str) -> Iterator[None]:
    """The table's GIN indexes dropped meanwhile, then made again from their own definitions.

    A GIN index built once over a million rows takes seconds; kept up row by row through one
    INSERT it takes many minutes (migration 0014 gives the trigram indexes a small pending list,
    which suits the portal's writes of a few rows at a time, not a seed of a million).
    """
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s "
            "AND indexdef ILIKE '%% USING gin %%'",
            [table],
        )
        definitions = cursor.fetchall()
        for name, _ in definitions:
            cursor.execute(f'DROP INDEX "{name}"')
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            for _, definition in definitions:
                cursor.execute(definition)


def seed(team: Any, user: Any, first: int, last: int) -> float:
    """Jobs and audit entries `first` to `last` of the team; returns the seconds it took."""
    from django.db import connection

    from importer.audit.models import AuditEvent
    from importer.imports.models import ImportJob

    started = time.monotonic()
    # Each statement commits on its own: PostgreSQL refuses CREATE INDEX in a transaction that
    # still holds deferred foreign key checks of its INSERT.
    with gin_indexes_rebuilt(ImportJob._meta.db_table):
        _insert(ImportJob, _JOB_COLUMNS, {"team": team.pk, "submitted_by": user.pk}, first, last)
        audit_fixed = {
            "team": team.pk,
            "team_name": team.name,
            "actor": user.pk,
            "actor_name": user.username,
        }
        _insert(AuditEvent, _AUDIT_COLUMNS, audit_fixed, first, last)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    return time.monotonic() - started


def scale_people() -> tuple[Any, Any]:
    """A team of its own and its admin (no password: the bench signs in with force_login)."""
    from django.contrib.auth.models import User

    from importer.teams.models import Membership, Role, Team

    team, _ = Team.objects.get_or_create(
        name=SCALE_TEAM, defaults={"uses_environment_credentials": True}
    )
    user, created = User.objects.get_or_create(username=SCALE_USER)
    if created:
        user.set_unusable_password()
        user.save()
    Membership.objects.get_or_create(user=user, team=team, defaults={"role": Role.ADMIN})
    return team, user


def deep_page_path(team: Any, page: int) -> tuple[str, str]:
    """The history page reached by following "next" `page - 1` times, built from its cursor,
    and the name of the first row it must show (a cursor not understood shows page 1)."""
    from importer.imports.models import ImportJob
    from importer.imports.selectors import history_keyset

    keyset = history_keyset("")
    ordered = ImportJob.objects.filter(team=team).order_by(*keyset.fields)
    # The last row of the page before: "next" on that page carries its cursor.
    edge = ordered[(page - 1) * PAGE_ROWS - 1]
    first = ordered[(page - 1) * PAGE_ROWS] if page > 1 else edge
    return f"/history/?after={keyset.cursor_for(edge)}", first.name


@dataclass
class Render:
    seconds: float
    queries: int
    rows: int
    slowest_query: float  # seconds, the median over the renders of each render's slowest


def render(client: Any, path: str) -> Render:
    """Median of RENDERS renders of `path` after WARM_UPS, with the last one's query count."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    for _ in range(WARM_UPS):  # templates compiled, the API's listing in its 15 s cache
        client.get(path)
    samples, slowest = [], []
    for _ in range(RENDERS):
        with CaptureQueriesContext(connection) as queries:
            started = time.perf_counter()
            answer = client.get(path)
            samples.append(time.perf_counter() - started)
        if answer.status_code != 200:
            raise RuntimeError(f"{path} answered {answer.status_code}")
        slowest.append(max((float(query["time"]) for query in queries.captured_queries), default=0))
    body = answer.content.decode()
    rows = body.count("<tr") - body.count("<thead")
    return Render(statistics.median(samples), len(queries), rows, statistics.median(slowest))


def scale_section(env: Any, args: argparse.Namespace, results: Results) -> None:
    from django.test import Client

    section = f"Pages with {SMALL_JOBS:,} and {args.jobs_big:,} jobs"
    print(f"\n{section}", flush=True)
    env.sandbox.reset()
    team, user = scale_people()
    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(user)
    few = few_fragment()
    pages = {
        "dashboard (/)": "/",
        "history (/history/)": "/history/",
        "audit log (/audit/)": "/audit/",
        f"history search '{few}' (few rows)": f"/history/?q={few}",
        f"history search '{MANY_FRAGMENT}' (many rows)": f"/history/?q={MANY_FRAGMENT}",
    }
    renders: dict[tuple[str, int], Render] = {}
    seeded: dict[int, float] = {}
    done = 0
    for size in (SMALL_JOBS, args.jobs_big):
        seeded[size] = seed(team, user, done + 1, size)
        done = size
        print(f"  seeded {size:,} jobs and audit entries ({seeded[size]:.0f} s)", flush=True)
        for label, path in pages.items():
            renders[(label, size)] = render(client, path)
    big = args.jobs_big
    # Page 1,000 needs 49,951 rows or more: a run shrunk below that measures its last page.
    deep_page = max(2, min(DEEP_PAGE, (big - 1) // PAGE_ROWS + 1))
    deep_path, deep_first = deep_page_path(team, deep_page)
    deep = render(client, deep_path)
    if deep_first not in client.get(deep_path).content.decode():
        raise RuntimeError(f"history page {deep_page} does not show {deep_first}: {deep_path}")
    for label in pages:
        small, large = renders[(label, SMALL_JOBS)], renders[(label, big)]
        ratio = large.seconds / small.seconds
        has_target = "many rows" not in label
        results.add(
            section,
            f"{label}: render with {SMALL_JOBS:,} / {big:,} jobs (queries, slowest, rows shown)",
            f"{small.seconds * 1000:.1f} ms / {large.seconds * 1000:.1f} ms (x{ratio:.2f}; "
            f"{small.queries} / {large.queries} queries, slowest {small.slowest_query * 1000:.1f}"
            f" / {large.slowest_query * 1000:.1f} ms; {small.rows} / {large.rows} rows)",
            "<= x1.5" if has_target else "",
            ratio <= 1.5 if has_target else None,
        )
    first = renders[("history (/history/)", big)]
    ratio = deep.seconds / first.seconds
    results.add(
        section,
        f"history page {deep_page:,} / page 1, {big:,} jobs (queries, slowest)",
        f"{deep.seconds * 1000:.1f} ms / {first.seconds * 1000:.1f} ms (x{ratio:.2f}; "
        f"{deep.queries} / {first.queries} queries, slowest {deep.slowest_query * 1000:.1f} / "
        f"{first.slowest_query * 1000:.1f} ms)",
        "<= x1.5",
        ratio <= 1.5,
    )
    results.note(
        section,
        f"One team ({SCALE_TEAM}) with {SMALL_JOBS:,} jobs, then {big - SMALL_JOBS:,} more, older "
        "(page 1 shows the same rows at both sizes), and one audit entry per job; made with "
        f"one INSERT from generate_series per table ({seeded[SMALL_JOBS]:.0f} s and "
        f"{seeded[big]:.0f} s; the trigram GIN indexes dropped meanwhile and made again from "
        "their own definitions), then ANALYZE. Names are "
        "app-role-env-v<n>-<8 hex> (16 apps, 8 roles, 4 environments, a random part), two "
        "descriptions in three, 5 buckets, snapshot ids from the same random source, one job in "
        f"ten failed. The few-rows search '{few}' is 6 hex characters of row {FEW_ROW}'s name "
        f"(about one row in 5.6 million holds it by chance); '{MANY_FRAGMENT}' matches one row "
        "in four. The audit entries' hashes are made up: the audit page shows entries and never "
        "verifies the chain (`importer.audit.views.audit_log`).",
    )
    results.note(
        section,
        f"Median of {RENDERS} renders through Django's test client in the bench process, after "
        f"{WARM_UPS} warm-up renders, as the team's admin, on PostgreSQL; queries counted with "
        'CaptureQueriesContext, "slowest" the median of each render\'s slowest query (as '
        "the bench process times it: the query's round trip, to the millisecond); rows counted "
        "in the HTML. "
        f"History page {deep_page:,} is the page "
        f'reached by following "next" {deep_page - 1:,} times ({PAGE_ROWS} rows a page): its '
        "URL is built from the cursor of the last row of the page before "
        '(`importer.imports.selectors.history_keyset`), as the "next" link carries it.',
    )
    csv_section(env, args, results, team, client)


# --- The history's CSV export ----------------------------------------------------------------


class RssSampler:
    """The peak resident memory of one process, read from /proc every `interval` seconds."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.pid = pid
        self.interval = interval
        self.peak = rss_kib(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_kib(self.pid))
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_kib(self.pid))


def download(url: str, cookie: str) -> tuple[int, int, float]:
    """Reads the CSV at `url` to its end and throws it away: (data rows, bytes, seconds)."""
    started = time.monotonic()
    lines = size = 0
    with requests.get(url, headers={"Cookie": cookie}, stream=True, timeout=60) as answer:
        answer.raise_for_status()
        for chunk in answer.iter_content(1 << 16):
            lines += chunk.count(b"\n")
            size += len(chunk)
    return lines - 1, size, time.monotonic() - started  # the header line is no row


def csv_section(
    env: Any, args: argparse.Namespace, results: Results, team: Any, client: Any
) -> None:
    from bench.performance import production_env
    from importer.imports.models import ImportJob

    section = f"CSV export of {args.jobs_big:,} rows"
    print(f"\n{section}", flush=True)
    expected = ImportJob.objects.filter(team=team).count()
    # One web worker, so the one serving the export is the one whose memory is read; with the
    # README's threads and timeout: a threaded worker keeps telling gunicorn it is alive while
    # one of its threads streams for minutes (a sync worker was killed after its timeout).
    web, base = start_gunicorn(env.log_dir, {**env.worker_env(), **production_env()}, workers=1)
    env.processes.append(web)
    try:
        worker_pid = children(web.pid)[0]
        cookie = f"sessionid={client.cookies['sessionid'].value}"
        download(f"{base}/history.csv?q={few_fragment()}", cookie)  # warm: code loaded
        before = rss_kib(worker_pid)
        with RssSampler(worker_pid) as sampler:
            rows, size, seconds = download(f"{base}/history.csv", cookie)
        after = rss_kib(worker_pid)
    finally:
        web.stop()
        env.processes.remove(web)
    growth = (sampler.peak - before) / 1024
    results.add(
        section,
        "rows received / rows of the team",
        f"{rows:,} / {expected:,} ({size / 1024**2:.0f} MiB)",
        "all",
        rows == expected,
    )
    results.add(
        section,
        "serving worker's RSS: before / peak / after (growth)",
        f"{before / 1024:.1f} / {sampler.peak / 1024:.1f} / {after / 1024:.1f} MiB "
        f"(+{growth:.1f} MiB)",
        "< 50 MiB",
        growth < 50,
    )
    results.add(
        section,
        "rows per second (whole download)",
        f"{rows / seconds:,.0f} rows/s ({seconds:.1f} s)",
    )
    results.note(
        section,
        "`/history.csv` (the history's export, no filter: every job of the team, newest first) "
        "through gunicorn with the production settings (DEBUG=0) and one worker of the "
        "README's command (4 threads, `--timeout 60`), after one small export to load the "
        "code; the client streams the answer and throws it away (64 KiB reads), and the "
        "worker's RSS is read from /proc every 50 ms. The rows are read 2,000 at a time "
        "(`QuerySet.iterator`, a server-side cursor on PostgreSQL), so memory stays flat "
        f"whatever the size. The export takes {seconds:.0f} s: a sync worker would have been "
        "killed after its timeout and the file cut off mid-way; a threaded worker tells "
        "gunicorn it is alive while one of its threads streams.",
    )
