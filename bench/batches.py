"""The bulk import's figures, a section of `make bench` (bench.performance runs it last):

- the preview of a 500-row manifest: real objects in the sandbox's S3 store, each row's URL
  inspected over HTTP through the outbound guard, `INSPECTIONS_IN_PARALLEL` at a time;
- `batch_create` for those 500 ready rows on PostgreSQL, with its jobs, events, audit entries
  and the messages on the broker checked (the team's free slots, the rest waiting);
- the pages following 500 imports in flight: requests a real browser makes per poll interval,
  and the SQL queries of each poll.

Alone, with its own servers, replacing its section of docs/PERFORMANCE.md:

    .venv/bin/python -m bench.batches [--rows 500] [--output docs/PERFORMANCE.md]
"""

from __future__ import annotations

import argparse
import csv
import io
import re
import signal
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.stack import (
    ROOT,
    PrivatePostgres,
    RedisServer,
    Results,
    machine,
    setup_django,
    use_broker,
)

SECTION = "Bulk import"
PREVIEW_TARGET_SECONDS = 10.0
CREATE_TARGET_SECONDS = 1.0
RUNS = 3
WATCH_SECONDS = 14.0  # a browser page watched this long: several poll intervals


def batches_section(env: Any, args: argparse.Namespace, results: Results) -> None:
    from bench import scenarios

    rows = getattr(args, "batch_rows", 500)
    print(f"\n{SECTION}", flush=True)
    cast = scenarios.people()
    env.sandbox.reset()
    text = manifest_of_objects(env.sandbox, rows)
    preview = preview_figure(results, text, rows)
    batch_id = create_figure(env, results, cast, preview, rows)
    poll_figures(env, results, cast, batch_id, rows)
    _forget_batches()


def manifest_of_objects(sandbox: Any, rows: int) -> str:
    """A CSV manifest of `rows` distinct objects put in the sandbox's store, sizes left empty
    so that each row's size must come from its own object's header (a real inspection)."""
    from sandbox import qcow2

    image = qcow2.build_gzipped_image(10 * qcow2.GIB)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["name", "description", "url", "size", "tags"])
    for index in range(rows):
        key = f"bench/batch/disk-{index:04d}.qcow2.gz"
        sandbox.put_object(key, image)
        url = sandbox.presign(key=key, expires=6 * 3600)
        writer.writerow([f"bulk-{index:04d}", "bench", url, "", "bench=batch"])
    return out.getvalue()


def preview_figure(results: Results, text: str, rows: int) -> Any:
    from importer.batches.forms import INSPECTIONS_IN_PARALLEL, preview_manifest

    timings: list[float] = []
    preview = None
    for _ in range(RUNS):
        started = time.perf_counter()
        preview = preview_manifest(text, filename="bench.csv")
        timings.append(time.perf_counter() - started)
    assert preview is not None  # noqa: S101 - RUNS >= 1
    ready = len(preview.importable)
    inspected = sum(1 for row in preview.rows if row.size_found)
    slowest = max(timings)
    results.add(
        SECTION,
        f"preview of a {rows}-row manifest, median of {RUNS} (slowest)",
        f"{statistics.median(timings):.2f} s ({slowest:.2f} s); {ready}/{rows} ready, "
        f"{inspected} sizes read from their objects",
        f"< {PREVIEW_TARGET_SECONDS:.0f} s, every row ready",
        slowest < PREVIEW_TARGET_SECONDS and ready == rows == inspected,
    )
    results.add(
        SECTION, "objects inspected at once (INSPECTIONS_IN_PARALLEL)", INSPECTIONS_IN_PARALLEL
    )
    results.note(
        SECTION,
        f"Preview: `preview_manifest` in the bench process on a CSV of {rows} rows, each the "
        "pre-signed URL of its own object in the sandbox's S3 store (moto behind the pre-signed "
        "URL guard, on 127.0.0.1), size left empty so that every row's size comes from its "
        "object's header: each row is one real GET of the object's first bytes through the "
        f"outbound guard (DNS, address checks, redirects refused), {INSPECTIONS_IN_PARALLEL} at "
        "a time, then the IMPORT SNAPSHOT dialog's own form.",
    )
    return preview


def create_figure(env: Any, results: Results, cast: dict[str, Any], preview: Any, rows: int):
    import redis
    from django.db import connection

    from importer.audit.models import AuditEvent
    from importer.batches.services import batch_create
    from importer.imports.models import ImportJob, ImportJobEvent, JobState

    queue = redis.Redis.from_url(env.redis.url)
    timings: list[float] = []
    checks: list[bool] = []
    queries: list[int] = []
    batch_id = None

    def count(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        queries[-1] += 1
        return execute(sql, params, many, context)

    team = cast["team"]
    sent: list[int] = []
    for _ in range(RUNS):
        queue.delete("celery")
        # The earlier runs' jobs end: each run starts with the team's slots free.
        ImportJob.objects.filter(team=team).update(state=JobState.COMPLETED)
        audits = AuditEvent.objects.count()
        queries.append(0)
        with connection.execute_wrapper(count):
            started = time.perf_counter()
            batch, created = batch_create(
                team=team,
                user=cast["operator"],
                preview=preview,
                key=uuid.uuid4(),
                source_name="bench.csv",
            )
            timings.append(time.perf_counter() - started)
        jobs = ImportJob.objects.filter(batch=batch)
        queued = jobs.filter(state=JobState.QUEUED).count()
        sent.append(int(queue.llen("celery")))
        checks.append(
            created
            and jobs.count() == rows
            # The team's free slots queued (one message each), the other rows waiting.
            and queued == min(rows, team.imports_in_flight_limit) == sent[-1]
            and jobs.filter(state=JobState.WAITING).count() == rows - queued
            # A first event per job, and "a slot is free" for each one queued.
            and ImportJobEvent.objects.filter(job__batch=batch).count() == rows + queued
            # One entry per job and one for the batch.
            and AuditEvent.objects.count() - audits == rows + 1
        )
        batch_id = batch.pk
    queue.delete("celery")
    slowest = max(timings)
    results.add(
        SECTION,
        f"batch_create of {rows} ready rows, median of {RUNS} (slowest)",
        f"{statistics.median(timings) * 1000:.0f} ms ({slowest * 1000:.0f} ms), "
        f"{max(queries)} SQL queries",
        f"< {CREATE_TARGET_SECONDS:.0f} s",
        slowest < CREATE_TARGET_SECONDS,
    )
    results.add(
        SECTION,
        "of which: broker messages sent (the team's free slots; the other rows wait for one)",
        f"{max(sent)} (team limit {team.imports_in_flight_limit})",
    )
    results.add(
        SECTION,
        f"each run: {rows} jobs, {rows + 1} audit entries, the free slots queued, the rest waiting",
        "all" if all(checks) else f"{sum(checks)}/{RUNS} runs",
        "all",
        all(checks),
    )
    results.note(
        SECTION,
        "Creation: `batch_create` in the bench process on the private PostgreSQL (one "
        "transaction), timed from the call to its return, which includes the commit and the "
        "messages sent to the private Redis after it (no worker consumes them, so the queue's "
        "length counts them); queries counted with a connection execute wrapper. Each run makes "
        "a new batch from the same preview, the earlier runs' jobs ended first. The jobs and "
        "their first events are one INSERT each (`imports_create_many`), the audit entries one "
        "more (`importer.audit.chain.record_many`: one chain lock, one read of the tail, the "
        "hashes chained in Python). The jobs start waiting for a slot: only the team's free "
        "slots are queued at once (`importer.imports.slots.admit_waiting`), the others follow "
        "as slots free up, so a batch of 500 sends a handful of messages, not 500.",
    )
    if slowest >= CREATE_TARGET_SECONDS:
        results.note(
            SECTION,
            f"MISSED: batch_create took {slowest:.1f} s for {rows} rows on this run; profile it "
            "with `python -m cProfile -m bench.batches`.",
        )
    return batch_id


def poll_figures(env: Any, results: Results, cast: dict[str, Any], batch_id: Any, rows: int):
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from django.urls import reverse

    from importer.core.pages import version as job_version
    from importer.imports.models import ImportJob, JobState

    in_flight = ImportJob.objects.filter(batch_id=batch_id)
    in_flight.update(state=JobState.IN_PROGRESS, progress=40, api_state="pending/queued")
    ImportJob.objects.exclude(batch_id=batch_id).update(state=JobState.COMPLETED)
    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(cast["operator"])
    batch_path = reverse("batch_detail", kwargs={"batch_id": batch_id})
    page = client.get(batch_path).content.decode()
    dashboard = client.get("/").content.decode()
    batch_pollers = len(re.findall(r'hx-trigger="every', page))
    dashboard_pollers = dashboard.count("data-poller")
    carried = re.findall(r'name="v" value="([^"]+)"|data-poll-version="([^"]+)"', dashboard)
    with CaptureQueriesContext(connection) as batch_queries:
        batch_answer = client.get(batch_path, HTTP_HX_REQUEST="true")
    jobs = list(in_flight.order_by("-created_at")[:25])
    poll_path = "/imports/poll?" + "&".join(f"v={job.pk}.{job_version(job)}" for job in jobs)
    with CaptureQueriesContext(connection) as poll_queries:
        poll_answer = client.get(poll_path, HTTP_HX_REQUEST="true")
    results.add(
        SECTION,
        f"pollers on the page with {rows} in flight: batch page / dashboard",
        f"{batch_pollers} / {dashboard_pollers} ({len(carried)} rows carried by the dashboard)",
        "1 / 1",
        batch_pollers == 1 and dashboard_pollers == 1,
    )
    results.add(
        SECTION,
        f"SQL queries per poll with {rows} in flight: batch page / dashboard (session included)",
        f"{len(batch_queries)} ({batch_answer.status_code}) / {len(poll_queries)} "
        f"({poll_answer.status_code})",
    )
    browser_figures(env, results, cast, batch_path, rows)


def browser_figures(
    env: Any, results: Results, cast: dict[str, Any], batch_path: str, rows: int
) -> None:
    """Chromium on the two pages through gunicorn: every request each page sends, timed."""
    from django.test import Client
    from playwright.sync_api import sync_playwright

    from bench.stack import start_gunicorn

    web, base = start_gunicorn(env.log_dir, env.worker_env(), workers=2)
    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(cast["operator"])
    session = client.cookies["sessionid"].value
    watched: dict[str, list[float]] = {}
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path="/usr/bin/chromium",
                args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
            )
            for label, path, polled in (
                ("batch page", batch_path, batch_path),
                ("dashboard", "/", "/imports/poll"),
            ):
                context = browser.new_context()
                context.add_cookies([{"name": "sessionid", "value": session, "url": base}])
                page = context.new_page()
                times: list[float] = []
                page.on(
                    "request",
                    lambda request, polled=polled, times=times: (
                        times.append(time.monotonic())
                        if request.headers.get("hx-request") and polled in request.url
                        else None
                    ),
                )
                page.goto(base + path)
                page.wait_for_timeout(WATCH_SECONDS * 1000)
                watched[label] = times
                context.close()
            browser.close()
    finally:
        web.stop()
    for label, times in watched.items():
        gaps = [later - earlier for earlier, later in zip(times, times[1:], strict=False)]
        shortest = min(gaps) if gaps else 0.0
        results.add(
            SECTION,
            f"{label} in Chromium, {rows} in flight: poll requests in {WATCH_SECONDS:.0f} s "
            "(shortest gap)",
            f"{len(times)} ({shortest:.1f} s)",
            "one per interval (gap >= 1.9 s)",
            len(times) >= 2 and shortest >= 1.9,
        )
    results.note(
        SECTION,
        f"Polling: {rows} imports of one batch in progress. The batch page reloads its progress "
        "fragment every 3 s, the dashboard sends one /imports/poll for the rows it shows (2 s, "
        "doubling while nothing changes); pollers counted in the HTML the test client gets, "
        "queries with Django's CaptureQueriesContext on one poll of each, and the requests "
        f"Chromium (Debian's, headless) sends while each page stays open {WATCH_SECONDS:.0f} s "
        "against gunicorn (2 workers, DEBUG=1 so that static files are served).",
    )


def _forget_batches() -> None:
    from importer.batches.models import ImportBatch
    from importer.imports.models import ImportJob

    ImportJob.objects.filter(batch__isnull=False).delete()
    ImportBatch.objects.all().delete()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", dest="batch_rows", type=int, default=500)
    parser.add_argument("--output", default=str(ROOT / "docs" / "PERFORMANCE.md"))
    args = parser.parse_args(argv)
    from sandbox.run import start_sandbox

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    log_dir = Path(tempfile.mkdtemp(prefix="portal-bench-batches-"))
    postgres = PrivatePostgres()
    postgres.start()
    broker = RedisServer()
    broker.start()
    sandbox = start_sandbox(api_port=0, s3_port=0)
    results = Results("Performance")
    try:
        setup_django(postgres.url, broker.url, sandbox.api_url, sandbox.s3_url)
        from bench import scenarios

        env = scenarios.Env(sandbox, broker, postgres.url, log_dir, postgres=postgres)
        with use_broker(broker.url):
            batches_section(env, args, results)
        env.stop_all()
        results.note(
            SECTION,
            f"This section ran alone (`.venv/bin/python -m bench.batches`) on "
            f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, on {machine()}.",
        )
    finally:
        sandbox.stop()
        broker.stop()
        postgres.destroy()
    replace_section(Path(args.output), results.markdown_sections())
    print(f"\nWrote the {SECTION} section of {args.output}.")
    return 1 if results.missed else 0


def replace_section(path: Path, markdown: str) -> None:
    """The document with its `## Bulk import` section replaced (or added at the end)."""
    text = path.read_text() if path.exists() else "# Performance\n"
    section = markdown.strip("\n")
    pattern = re.compile(rf"^## {re.escape(SECTION)}\n.*?(?=^## |\Z)", re.DOTALL | re.MULTILINE)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n\n", text).rstrip("\n") + "\n"
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text)


if __name__ == "__main__":
    sys.exit(main())
