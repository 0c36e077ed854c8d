"""`make reliability`: every reliability and security scenario at full size, figures printed and
written to docs/RELIABILITY.md. Exits non-zero when a figure misses its target.

    .venv/bin/python -m bench.reliability [--kill-runs N] [--fault-imports N] [--inputs N]
        [--destination-values N] [--lifecycle-jobs N] [--lifecycle-inputs N]
        [--only kill,redis,postgres,faults,hostile,destinations,lifecycle,leak]
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import time
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kill-runs", type=int, default=6, help="kills per step")
    parser.add_argument("--redis-submissions", type=int, default=30)
    parser.add_argument("--pg-jobs", type=int, default=24)
    parser.add_argument("--fault-imports", type=int, default=1000)
    parser.add_argument("--inputs", type=int, default=10_000, help="generated form inputs")
    parser.add_argument(
        "--destination-values",
        type=int,
        default=0,
        help="hostile values per person-chosen destination (0: every crafted one)",
    )
    parser.add_argument(
        "--lifecycle-jobs",
        type=int,
        default=12,
        help="volumes, OMIs and copies (each) under API faults, a worker killed",
    )
    parser.add_argument(
        "--lifecycle-inputs",
        type=int,
        default=1500,
        help="hostile posts to the snapshot actions' five dialogs",
    )
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated: kill,redis,postgres,faults,hostile,destinations,lifecycle,leak "
        "(hostile includes destinations; lifecycle is lifecycle_faults and lifecycle_hostile, "
        "each selectable alone)",
    )
    parser.add_argument("--output", default=str(ROOT / "docs" / "RELIABILITY.md"))
    args = parser.parse_args(argv)

    from sandbox.run import start_sandbox

    # A plain SIGTERM must still stop the private servers and processes (the finally below).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.monotonic()
    log_dir = Path(tempfile.mkdtemp(prefix="portal-reliability-"))
    print(f"Logs in {log_dir}", flush=True)
    postgres = PrivatePostgres()
    postgres.start()
    broker = RedisServer()
    broker.start()
    sandbox = start_sandbox(api_port=0, s3_port=0)
    results = Results("Reliability and security")
    try:
        setup_django(postgres.url, broker.url, sandbox.api_url, sandbox.s3_url)
        from bench import scenarios

        env = scenarios.Env(sandbox, broker, postgres.url, log_dir, postgres=postgres)
        with use_broker(broker.url):
            scenarios.people()
            run_all(env, args, results)
        env.stop_all()
    finally:
        sandbox.stop()
        broker.stop()
        postgres.destroy()
    minutes = (time.monotonic() - started) / 60
    write_document(Path(args.output), results, args, minutes)
    print(f"\nWrote {args.output} ({minutes:.1f} min).")
    if results.missed:
        print("MISSED: " + "; ".join(f.name for f in results.missed), file=sys.stderr)
        return 1
    return 0


def selected(args: argparse.Namespace, name: str) -> bool:
    return not args.only or name in args.only.split(",")


def run_all(env, args, results: Results) -> None:  # type: ignore[no-untyped-def]
    from bench import scenarios

    if selected(args, "kill"):
        section = "Worker killed (SIGKILL) at each step of an import"
        print(f"\n{section}", flush=True)
        for kill in scenarios.scenario_killed_worker(env, args.kill_runs):
            title = scenarios.STEP_TITLES[kill.step]
            results.add(
                section,
                f"{title}: kills",
                kill.runs,
                f"{args.kill_runs}",
                kill.runs == args.kill_runs,
            )
            results.add(section, f"{title}: jobs lost", kill.lost, "0", kill.lost == 0)
            results.add(
                section, f"{title}: duplicate snapshots", kill.duplicates, "0", kill.duplicates == 0
            )
            results.add(
                section,
                f"{title}: time to recover (median / max)",
                f"{kill.median_recovery:.1f} s / {kill.max_recovery:.1f} s",
            )
        results.note(
            section,
            "Method: two solo-pool workers (`python -m bench.worker`, the real worker with kill "
            "points) on a private Redis; a kill point is armed, an import is created through the "
            "dialog's service, and the worker that reaches the point is SIGKILLed (for the in-"
            "flight steps the sandbox holds the request 2 s, the kill lands while the API has "
            "it). A new worker is started; the sweeper runs every 0.5 s with its clock moved past"
            " its thresholds, and polls are sent every 0.5 s. Recovery = from the kill to the job"
            " completed and tagged.",
        )
        results.note(
            section,
            "In production the sweeper runs every 60 s and treats a claim as dead after "
            "CELERY_TASK_TIME_LIMIT + 60 s = 240 s, a queued job as lost after 2 min and an "
            "untagged snapshot after 5 min: add up to 300 s (submission steps) or 360 s (tagging)"
            " to the times above. A poll lost to a kill is simply replaced by the next one (1-5 "
            "s).",
        )

    if selected(args, "redis"):
        section = "Redis stopped while operators submit, then restarted"
        print(f"\n{section}", flush=True)
        down = scenarios.scenario_redis_down(env, args.redis_submissions)
        results.add(section, "submissions (2 operators, gunicorn)", down.submitted)
        results.add(section, "submissions while Redis was down", down.submitted_while_down)
        results.add(section, "answers that were errors", down.errors, "0", down.errors == 0)
        results.add(
            section,
            "told the job is queued (job page says Queued)",
            f"{down.told_queued}/{down.submitted_while_down}",
            "all",
            down.told_queued == down.submitted_while_down,
        )
        results.add(
            section,
            "jobs final after the restart",
            f"{down.final_after_restart}/{down.submitted}",
            "all",
            down.final_after_restart == down.submitted,
        )
        results.add(section, "slowest answer", f"{down.slowest_answer_seconds:.2f} s")
        results.add(section, "restart to every job final", f"{down.seconds_to_final:.1f} s")
        results.add(section, "duplicate snapshots", down.duplicates, "0", down.duplicates == 0)
        results.add(
            section,
            "workers that exited when Redis went away (restarted, as a supervisor would)",
            down.workers_crashed,
        )
        results.note(
            section,
            "When it is 0, the race was not hit in this run. A worker holding an "
            "unacknowledged message when Redis stops can exit with "
            "`Unrecoverable error: AttributeError(\"'NoneType' object has no attribute "
            "'hostname'\")` (kombu 5.7.0, redis 8.1: closing the Redis channel tries to "
            "restore unacknowledged messages through a connection already gone). Nothing is "
            "lost (the job rows are the truth and the sweeper re-sends), but workers must run "
            "under a supervisor that restarts them (systemd Restart=always, Kubernetes...).",
        )

    if selected(args, "postgres"):
        section = "PostgreSQL restarted during polling"
        print(f"\n{section}", flush=True)
        pg = scenarios.scenario_postgres_restart(env, args.pg_jobs)
        results.note(
            section,
            f"How: {pg.method}; {pg.jobs} imports in flight (1 in 4 ends in error "
            "at the API), beat polling every second.",
        )
        results.add(section, "jobs left wrong once it is back", pg.wrong, "0", pg.wrong == 0)
        results.add(section, "jobs not final", pg.not_final, "0", pg.not_final == 0)
        results.add(section, "database down for", f"{pg.seconds_down:.1f} s")
        results.add(section, "restart to every job final", f"{pg.seconds_to_final:.1f} s")

    if selected(args, "faults"):
        section = "API faults injected by the sandbox"
        print(f"\n{section}", flush=True)
        faults = scenarios.scenario_api_faults(env, args.fault_imports)
        results.add(section, "imports", faults.imports, ">= 1000", faults.imports >= 1000)
        results.add(section, "API calls made", faults.api_calls)
        results.add(
            section,
            "faults fired",
            ", ".join(f"{k}: {v}" for k, v in sorted(faults.faults_fired.items())),
        )
        share = sum(faults.faults_fired.values()) / max(faults.api_calls, 1)
        results.add(section, "share of API calls faulted", f"{share:.0%}")
        results.add(
            section,
            "jobs final",
            f"{faults.final}/{faults.imports}",
            "all",
            faults.final == faults.imports,
        )
        results.add(
            section,
            "completed / refused for good / gave up after 8 attempts",
            f"{faults.completed} / {faults.failed_permanent} of {faults.permanent} / "
            f"{faults.gave_up}",
        )
        results.add(
            section,
            "jobs without exactly one snapshot",
            faults.snapshots_not_one,
            "0",
            faults.snapshots_not_one == 0,
        )
        results.add(
            section,
            "most CreateSnapshot calls for one job",
            faults.max_create_calls,
            "<= 8 (MAX_SUBMIT_ATTEMPTS)",
            faults.retries_over_bound == 0,
        )
        results.add(
            section,
            "calls after a permanent error",
            faults.retried_after_permanent,
            "0",
            faults.retried_after_permanent == 0,
        )
        results.add(section, "time for every job to be final", f"{faults.seconds:.0f} s")

    if selected(args, "hostile"):
        section = "Hostile input"
        print(f"\n{section}", flush=True)
        hostile = scenarios.scenario_hostile_input(args.inputs)
        results.add(
            section,
            "crafted pre-signed URLs (each to /imports/inspect and /imports/new)",
            hostile.crafted,
            ">= 200",
            hostile.crafted >= 200,
        )
        results.add(
            section,
            "generated form inputs",
            hostile.generated,
            ">= 10000",
            hostile.generated >= 10_000,
        )
        results.add(section, "answers 500", hostile.server_errors, "0", hostile.server_errors == 0)
        results.add(
            section,
            "outbound connections to a forbidden address (at the socket)",
            hostile.forbidden_connections,
            "0",
            hostile.forbidden_connections == 0,
        )
        results.add(
            section,
            "crafted URLs accepted",
            hostile.crafted_accepted,
            "0",
            hostile.crafted_accepted == 0,
        )
        results.add(
            section,
            "invalid values accepted",
            hostile.invalid_accepted,
            "0",
            hostile.invalid_accepted == 0,
        )
        results.add(
            section, "generated inputs accepted (valid by the oracle)", hostile.accepted_total
        )
        results.add(
            section,
            "connections to public addresses (refused by the bench)",
            hostile.public_connections,
        )
        results.note(
            section,
            "Redirects: the crafted count includes 40 URLs of an object store on loopback that "
            "answers 301, 302, 303, 307 and 308 towards 8 internal targets (metadata, Redis, "
            "[::1], 10.0.0.1, mapped IPv6, file://...); this phase runs in sandbox mode (http and "
            "loopback admitted, so the store can be reached) and checks that no redirect is "
            "followed: a followed one would dial a forbidden address, counted at the socket.",
        )
        results.note(
            section,
            "Bug found and fixed by this suite: an allowed host name that resolves to an internal "
            "address (10.x, 169.254.169.254, loopback) was only a warning of the inspection, and "
            "the job was created (3 crafted URLs accepted). The form now refuses it "
            "(`importer.presigned.fetch.ForbiddenAddressError`, `Inspection.refusal`).",
        )
        for example in hostile.examples:
            results.note(section, f"Example: `{example}`")
        results.note(
            section,
            "Policy: production (https only, public addresses only) with "
            "PORTAL_URL_HOSTS naming three attacker-controlled names; a fake resolver maps "
            "them to 10.20.30.40, 169.254.169.254 and a public+loopback pair, the OOS name to "
            "a public address. Connections are counted by wrapping socket.socket.connect and "
            "by an audit hook on socket.connect; none leaves the machine.",
        )

    if selected(args, "hostile") or selected(args, "destinations"):
        destinations_section(args, results)

    if selected(args, "lifecycle") or selected(args, "lifecycle_faults"):
        from bench import lifecycle

        lifecycle.faults_section(env, args, results)

    if selected(args, "lifecycle") or selected(args, "lifecycle_hostile"):
        from bench import lifecycle

        lifecycle.hostile_section(env, args, results)

    if selected(args, "leak"):
        section = "Secret leak scan (canary signatures)"
        print(f"\n{section}", flush=True)
        leak = scenarios.scenario_secret_leak(env)
        results.note(
            section,
            "Paths: " + "; ".join(leak.paths) + "; every page of each role "
            "(operator, admin, auditor): dashboard, history, audit log, job pages; both CSVs.",
        )
        results.add(section, "canary signatures", leak.canaries)
        for place, hits in leak.hits.items():
            results.add(
                section,
                f"hits in {place} ({leak.places[place]:,} characters)",
                hits,
                "0",
                hits == 0,
            )


def destinations_section(args: argparse.Namespace, results: Results) -> None:
    from bench import scenarios
    from bench.hostile import DESTINATION_TITLES, DESTINATIONS

    section = "Hostile input: person-chosen destinations"
    print(f"\n{section}", flush=True)
    found = scenarios.scenario_hostile_destinations(args.destination_values or None)
    smallest = 40 if args.destination_values else 200
    for run in found.passes:
        label = run.name
        for kind in DESTINATIONS:
            results.add(
                section,
                f"{label}: hostile values tried, {DESTINATION_TITLES[kind]}",
                f"{run.tried[kind]} posted, {run.sent[kind]} stored and sent",
                f">= {smallest}",
                run.tried[kind] >= smallest,
            )
        for name, count in run.connections.items():
            results.add(
                section,
                f"{label}: connections to the {name} listener ({found.listeners[name]})",
                count,
                "0",
                count == 0,
            )
        if run.name == "local run":
            results.add(
                section,
                f"{label}: connections of hostile values to the sandbox listener, the one "
                f"listed entry ({found.listeners[scenarios.SANDBOX_LISTENER]})",
                run.sandbox_connections,
                "0",
                run.sandbox_connections == 0,
            )
        results.add(
            section,
            f"{label}: other connections to a non-public address (refused at the socket)",
            len(run.socket_forbidden),
            "0",
            not run.socket_forbidden,
        )
        for measure, counter in (
            ("values saved", run.saved),
            ("answers 500", run.server_errors),
            ("stored values sent anyway", run.not_refused),
            ("send paths that raised an error their callers do not catch", run.crashes),
        ):
            total = sum(counter.values())
            results.add(
                section,
                f"{label}: {measure}",
                total if not total else f"{total} ({_per_destination(counter)})",
                "0",
                total == 0,
            )
        results.add(
            section,
            f"{label}: connections to public addresses (refused by the bench)",
            run.socket_public,
        )
        if run.name == "local run":
            results.add(
                section,
                f"{label}: redirects answered by the sandbox (5 statuses x "
                f"{scenarios.REDIRECT_DESTINATIONS} targets x 4 destinations), none followed",
                f"{run.redirects} redirects, {run.redirect_connections} connections to the sandbox",
            )
            results.add(
                section,
                f"{label}: controls (the listed entry, one per destination) saved and reached",
                f"{run.controls_passed}/{run.controls}",
                "all",
                run.controls_passed == run.controls,
            )
        for example in run.examples[:10]:
            results.note(section, f"Example ({label}): `{example}`")
    results.note(
        section,
        "Values: for each destination (a team admin's API endpoint on /team/credentials/, OOS "
        "endpoint and webhook URL on /team/transfers/, an operator's pre-signed URL on "
        "/imports/inspect and /imports/new) loopback in every spelling (127.0.0.1, 127.0.0.2, "
        "127.1, 0.0.0.0, 0, 2130706433, 0x7f.1, 017700000001, [::1], [::], [::ffff:127.0.0.1], "
        "[::127.0.0.1], NAT64 [64:ff9b::7f00:1], 6to4 [2002:7f00:1::1], Teredo, localhost), "
        "metadata and private addresses, names the fake DNS maps to each of them, each on the "
        "default port, on every listener's port over https and http and on well-known ports "
        "(6379, 5432, 11211, 80, 8080, 22, 25, 2375); user-info, fragments and queries that "
        "move the host or the path, percent-encoding, whitespace and control characters, other "
        "schemes (gopher, dict, redis, file...), port tricks (leading zero, +65536, two ports),"
        " brackets and zone ids, trailing dots, non-ASCII look-alikes (Cyrillic letters, "
        "full-width digits, ideographic dots) and overlong values.",
    )
    results.note(
        section,
        "Each value is posted through its view(s) as a logged-in admin or operator (Django test "
        "client); then, as if it had got past the form, it is written to the database "
        "(Team.endpoint, Team.oos_endpoint, TeamWebhook.url_encrypted) and its send path is "
        "called: `services.api_client(team).read_snapshots_page()`, "
        "`export_services.find_exported_object()` (boto3 `list_objects_v2`), "
        "`notifications.webhook_deliver()` and `presigned.read_object_head()`. A value is "
        "saved when a view answered 302 or any stored destination, import job or audit event "
        "changed. Then DNS rebinding: the allowed names themselves (api.*, oos.*, the webhook's "
        "host) answer loopback, metadata, 10.x, mapped, NAT64, 0.0.0.0 or public+loopback, and "
        "once public-then-loopback (a second resolution would dial loopback: only the send "
        "paths, since it is public when saved).",
    )
    results.note(
        section,
        "Listeners: plain TCP servers in threads (a Redis-like one answering -ERR, an HTTP API "
        "answering 200 JSON, a metadata service, a mail server with its banner), each on "
        "127.0.0.1, 127.0.0.2 and [::1] on the same port, counting every accepted connection. "
        "Any other connection is refused and counted at the socket (the wrapped "
        "socket.socket.connect and the socket.connect audit hook).",
    )
    results.note(
        section,
        "Production pass: PORTAL_ALLOW_HTTP_URLS off, OSC_ENDPOINT_API the real one, and on the "
        "allow-lists partner names the fake DNS maps inside (api.partner.example -> "
        "127.0.0.1, hooks.partner.example:<port> -> 127.0.0.1 and ::1, the three "
        "PORTAL_URL_HOSTS of the pre-signed URL phase) and a forgotten sandbox entry "
        "127.0.0.1:<HTTP API listener port> in each list: listed, it is still not dialled. "
        "Local-run pass: PORTAL_ALLOW_HTTP_URLS on with exactly one entry, 127.0.0.1:<sandbox "
        "port>, in each list (and as OSC_ENDPOINT_API); every other way of writing it "
        "(localhost, 127.0.0.2, [::1], 2130706433, user-info, a leading zero...) is among the "
        "values.",
    )


def _per_destination(counter: Any) -> str:
    return ", ".join(f"{kind} {count}" for kind, count in sorted(counter.items()) if count)


def write_document(path: Path, results: Results, args: argparse.Namespace, minutes: float) -> None:
    missed = results.missed
    lines = [
        "# Reliability and security",
        "",
        "Written by `make reliability` (`.venv/bin/python -m bench.reliability`): every figure "
        "below comes from its last run, on the machine named here. Run it again to reproduce; "
        "the options (`--kill-runs`, `--fault-imports`, `--inputs`, ...) change the sizes.",
        "",
        f"- Run: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {minutes:.1f} minutes.",
        f"- Machine: {machine()}.",
        "- Parts, all real and on 127.0.0.1: a private PostgreSQL cluster (initdb in a temporary "
        "directory), a private redis-server, the sandbox (OUTSCALE API emulator and object store), "
        "gunicorn serving the portal, Celery worker processes.",
        f"- Sizes: {args.kill_runs} kills per step, {args.redis_submissions} submissions around "
        f"the Redis outage, {args.pg_jobs} imports across the PostgreSQL restart, "
        f"{args.fault_imports} imports under API faults, {args.inputs} generated form inputs, "
        f"{'every crafted' if not args.destination_values else args.destination_values} "
        f"hostile value(s) per person-chosen destination, {args.lifecycle_jobs} volumes, OMIs "
        f"and copies each under API faults, {args.lifecycle_inputs} hostile posts to the "
        "snapshot actions' dialogs.",
        f"- Verdict: {'every target met' if not missed else 'MISSED: ' + '; '.join(f.name for f in missed)}.",  # noqa: E501
        "- A short version of each scenario runs in CI: `tests/jobs/test_reliability.py` "
        "(the lifecycle ones with 3 jobs of each kind and 250 hostile posts).",
        "- Reproduce: `make reliability` (after `make test`'s install step; needs redis-server "
        "and PostgreSQL's server binaries). One scenario alone: `.venv/bin/python -m "
        "bench.reliability --only kill` (or redis, postgres, faults, hostile, destinations, "
        "lifecycle (= lifecycle_faults,lifecycle_hostile), leak; "
        "`--output` elsewhere to keep this file). The logs of every process of the run stay in "
        "the temporary folder it prints first.",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n" + results.markdown_sections())


if __name__ == "__main__":
    sys.exit(main())
