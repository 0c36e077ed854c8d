"""`make reliability`: every reliability and security scenario at full size, figures printed and
written to docs/RELIABILITY.md. Exits non-zero when a figure misses its target.

    .venv/bin/python -m bench.reliability [--kill-runs N] [--fault-imports N] [--inputs N]
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

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
        "--only", default="", help="comma-separated: kill,redis,postgres,faults,hostile,leak"
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
        setup_django(postgres.url, broker.url, sandbox.api_url)
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
            "(`importer.presigned.ForbiddenAddressError`, `Inspection.refusal`).",
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
        f"{args.fault_imports} imports under API faults, {args.inputs} generated form inputs.",
        f"- Verdict: {'every target met' if not missed else 'MISSED: ' + '; '.join(f.name for f in missed)}.",  # noqa: E501
        "- A short version of each scenario runs in CI: `tests/test_reliability.py`.",
        "- Reproduce: `make reliability` (after `make test`'s install step; needs redis-server "
        "and PostgreSQL's server binaries). One scenario alone: `.venv/bin/python -m "
        "bench.reliability --only kill` (or redis, postgres, faults, hostile, leak; "
        "`--output` elsewhere to keep this file). The logs of every process of the run stay in "
        "the temporary folder it prints first.",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n" + results.markdown_sections())


if __name__ == "__main__":
    sys.exit(main())
