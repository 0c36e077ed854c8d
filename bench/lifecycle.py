"""The snapshot actions (CREATE VOLUME, CREATE OMI, COPY SNAPSHOT, UPDATE SNAPSHOT PERMISSIONS,
EDIT TAGS) under the reliability suite: two scenarios, each returning what it measured, and the
sections of docs/RELIABILITY.md that report them.

- `scenario_lifecycle_faults`: volumes, OMIs and copies from completed snapshots on real
  workers, under a storm of API faults, one worker SIGKILLed while the API holds its requests.
- `scenario_lifecycle_hostile`: generated hostile posts to the five dialogs (Django's test
  client, as an operator), each answer and what it left behind checked against an oracle.

`python -m bench.reliability --only lifecycle` runs both (or lifecycle_faults,
lifecycle_hostile alone).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import re
import signal
import threading
import time
import traceback
import uuid
from collections import Counter
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from bench.scenarios import GIB, READ_TIMEOUT, TRANSIENT_STATUSES, Env, people
from bench.stack import Process, Results, wait_for, wait_worker

KINDS = ("volume", "image", "copy")
KIND_TITLES = {"volume": "volumes", "image": "OMIs", "copy": "copies"}
CREATE_ACTIONS = {"volume": "CreateVolume", "image": "CreateImage", "copy": "CreateSnapshot"}
# The storm: every create and the two listings the worker and the poll read, as the issue asks.
FAULT_PLAN: list[tuple[str, str, int, float, float | None]] = [
    *(
        fault
        for action in CREATE_ACTIONS.values()
        for fault in (
            (action, "error", 429, 0.10, None),
            (action, "error", 503, 0.10, None),
            (action, "drop", 503, 0.08, None),  # acts, then closes without an answer
            (action, "slow", 503, 0.06, 1.0),
            (action, "slow", 503, 0.04, 4.0),  # past the workers' 3 s read timeout, acts anyway
        )
    ),
    *(
        fault
        for action in ("ReadVolumes", "ReadImages")
        for fault in (
            (action, "error", 503, 0.12, None),
            (action, "error", 429, 0.06, None),
            (action, "drop", 503, 0.05, None),
            (action, "slow", 503, 0.06, 1.0),
        )
    ),
]
KILL_DELAY = 3.0  # the API holds the killed worker's three requests this long, then acts
REFUSED_EVERY = 12  # one job of each kind in this many is one the API refuses for good
FAILED_OMIS = 2  # OMIs the API accepts and then ends `failed` (Sandbox.fail_next_images)
SETTLE_SECONDS = 150.0
FIRST_BATCH = 6  # jobs given to the worker that is killed: 2 of each kind


# --- Shared helpers -------------------------------------------------------------------------


def completed_snapshots(sandbox: Any, count: int) -> list[str]:
    """`count` completed 10 GiB snapshots in the default account, imported from the demo image."""
    ids = []
    for _ in range(count):
        answer = sandbox.call(
            "CreateSnapshot", {"FileLocation": sandbox.presign(), "SnapshotSize": 10 * GIB}
        )
        answer.raise_for_status()
        ids.append(answer.json()["Snapshot"]["SnapshotId"])

    def done() -> bool:
        found = sandbox.state()["snapshots"].get(sandbox.account.account_id, [])
        states = {item["SnapshotId"]: item["State"] for item in found}
        return all(states.get(snapshot_id) == "completed" for snapshot_id in ids)

    wait_for(done, seconds=60, interval=0.2)
    return ids


def subregion_names(sandbox: Any) -> list[str]:
    answer = sandbox.call("ReadSubregions", {})
    answer.raise_for_status()
    return [item["SubregionName"] for item in answer.json()["Subregions"]]


# --- 1. Lifecycle jobs under API faults, one worker killed --------------------------------------


@dataclass
class LifecycleFaultsResult:
    jobs: dict[str, int]  # kind -> jobs
    refused: dict[str, int]  # kind -> jobs the API refuses for good (injected)
    failed_omis: int  # OMIs the API ends failed (injected)
    final: int
    completed: dict[str, int]
    ended_as_injected: int  # refused and failed ones that ended in error, as they should
    unexpected_errors: int  # errors nobody injected
    not_one: dict[str, int]  # kind -> completed jobs without exactly one made, plus strays
    duplicates_by_token: int
    duplicates_by_name: int
    max_create_calls: dict[str, int]
    calls_over_bound: int
    retried_after_permanent: int
    copies_named: int
    killed_held: int  # jobs the killed worker was sending
    killed_recovered: int
    recovery_seconds: float
    sweeper_resent: int
    faults_fired: dict[str, int]
    api_calls: int
    seconds: float
    examples: list[str] = field(default_factory=list)


class CallRecorder:
    """Wraps the in-process sandbox's API handler: each create call, the job it is for (its
    ClientToken, or the OMI's name), its answer, and whether the client saw that answer."""

    def __init__(self, sandbox: Any) -> None:
        self.emulator = sandbox._emulator
        self.original = self.emulator.handle_api
        self.lock = threading.Lock()
        self.calls: list[tuple[float, str, str, int, str, bool]] = []

    def __enter__(self) -> CallRecorder:
        def handle(action: str, request: Any) -> Any:
            key = ""
            if action in CREATE_ACTIONS.values():
                with suppress(ValueError, AttributeError):
                    body = json.loads(request.body or b"{}")
                    key = str(body.get("ClientToken") or body.get("ImageName") or "")
            arrived = time.monotonic()
            reply = self.original(action, request)
            code = ""
            if isinstance(reply.body, dict) and reply.status >= 400:
                code = str((reply.body.get("Errors") or [{}])[0].get("Code", ""))
            with self.lock:
                delivered = not reply.drop and time.monotonic() - arrived < READ_TIMEOUT
                self.calls.append((arrived, action, key, reply.status, code, delivered))
            return reply

        self.emulator.handle_api = handle
        return self

    def __exit__(self, *exc: object) -> None:
        self.emulator.handle_api = self.original


def _form_parameters(form: Any) -> dict[str, Any]:
    if not form.is_valid():
        raise RuntimeError(f"the bench's own values were refused: {form.errors.as_json()}")
    parameters: dict[str, Any] = form.parameters()
    return parameters


def job_parameters(kind: str, index: int, run: str, subregions: list[str]) -> dict[str, Any]:
    """Values as the dialog checks them (its own form), varied across the jobs."""
    from importer.lifecycle.forms import CopyForm, ImageForm, VolumeForm

    size = 10 + index % 5
    if kind == "volume":
        volume_type = ("standard", "gp2", "io1")[index % 3]
        data = {
            "subregion_name": subregions[index % len(subregions)],
            "volume_type": volume_type,
            "size_gib": str(size),
            "iops": str(100 * size) if volume_type == "io1" else "",
        }
        return _form_parameters(VolumeForm(data, subregions=subregions, min_size_gib=10))
    if kind == "image":
        volume_type = ("standard", "gp2", "io1", "standard")[index % 4]
        data = {
            "image_name": f"bench-omi-{run}-{index}",
            "description": f"made by the reliability bench ({index})",
            "architecture": "x86_64",
            "boot_mode": ("legacy", "uefi")[index % 2],
            "root_device_name": "/dev/sda1",
            "volume_type": volume_type,
            "volume_size_gib": str(size),
            "iops": str(100 * size) if volume_type == "io1" else "",
            "delete_on_vm_deletion": "on" if index % 2 else "",
        }
        return _form_parameters(ImageForm(data, min_size_gib=10))
    data = {"name": f"bench copy {run} {index}", "description": f"copy {index}"}
    return _form_parameters(CopyForm(data))


def _sweep(at: datetime) -> int:
    from importer.lifecycle.services import derived_sweep

    return derived_sweep(now=at)


def scenario_lifecycle_faults(env: Env, per_kind: int) -> LifecycleFaultsResult:
    """`per_kind` volumes, OMIs and copies under faults; the first worker is SIGKILLed."""
    from django.utils import timezone

    from importer.imports.models import TagState
    from importer.jobs.retry import LOST_IN_QUEUE_AFTER, MAX_SUBMIT_ATTEMPTS, STUCK_SUBMITTING_AFTER
    from importer.lifecycle.models import DerivedJob, DerivedKind, DerivedState
    from importer.lifecycle.services import derived_create
    from importer.lifecycle.tasks import poll_derived

    cast = people()
    team, user = cast["team"], cast["operator"]
    sandbox = env.sandbox
    sandbox.reset()
    sandbox.set_lifecycle_seconds(0.5)
    sources = completed_snapshots(sandbox, 2)
    subregions = subregion_names(sandbox)
    account = sandbox.account.account_id
    run = uuid.uuid4().hex[:6]
    # An OMI made outside the portal, from the other snapshot: the refused OMI asks for its name.
    taken_name = f"bench-omi-{run}-taken"
    premade = sandbox.call(
        "CreateImage",
        {
            "ImageName": taken_name,
            "RootDeviceName": "/dev/sda1",
            "BlockDeviceMappings": [{"DeviceName": "/dev/sda1", "Bsu": {"SnapshotId": sources[1]}}],
        },
    ).json()["Image"]["ImageId"]

    plan: list[tuple[str, str, dict[str, Any], bool]] = []  # kind, source, parameters, refused
    for index in range(per_kind):
        for kind in KINDS:
            parameters = job_parameters(kind, index, run, subregions)
            source = sources[index % 2]
            refused = index % REFUSED_EVERY == REFUSED_EVERY // 2
            if refused and kind == "volume":
                parameters["size_gib"] = 5  # below the snapshot's 10 GiB: 400 for good
            elif refused and kind == "image":
                parameters["image_name"] = taken_name  # 409, the name is taken
                source = sources[0]
            elif refused:
                source = "snap-0000dead"  # not in the account: 400 for good
            plan.append((kind, source, parameters, refused))

    # The killed worker's three requests: the first create of each kind is held KILL_DELAY s.
    kill_faults = [
        sandbox.inject_fault(action, "slow", count=1, delay=KILL_DELAY)
        for action in CREATE_ACTIONS.values()
    ]
    for action, kind, status, probability, delay in FAULT_PLAN:
        sandbox.inject_fault(
            action, kind, status=status, count=None, probability=probability, delay=delay
        )
    ids: list[str] = []
    refused_ids: set[str] = set()
    kinds_of: dict[str, str] = {}
    workers: list[Process] = []

    def create(kind: str, source: str, parameters: dict[str, Any], refused: bool) -> None:
        job = derived_create(
            team=team, user=user, snapshot_id=source, kind=kind, parameters=parameters
        )
        ids.append(str(job.pk))
        kinds_of[str(job.pk)] = kind
        if refused:
            refused_ids.add(str(job.pk))

    started = time.monotonic()
    examples: list[str] = []
    with CallRecorder(sandbox) as recorder:
        try:
            first = env.worker(pool="prefork", concurrency=4)
            workers.append(first)
            for step in plan[:FIRST_BATCH]:
                create(*step)
            wait_for(lambda: all(f.fired for f in kill_faults), seconds=30, interval=0.05)
            time.sleep(0.3)  # the three requests are in the API's hands
            held = list(
                DerivedJob.objects.filter(pk__in=ids, state=DerivedState.SUBMITTING).values_list(
                    "pk", flat=True
                )
            )
            killed_at, killed_clock = time.monotonic(), timezone.now()
            with suppress(ProcessLookupError):
                os.killpg(first.pid, signal.SIGKILL)  # the worker and its pool, all at once
            first.kill()  # collects them
            workers.remove(first)
            env.processes.remove(first)
            workers += [
                env.worker(pool="prefork", concurrency=4, beat=index == 0, wait=False)
                for index in range(2)
            ]
            # The API acts KILL_DELAY s after each held request arrived: after the worker died.
            time.sleep(KILL_DELAY + 0.5)
            # The sweeper's clock moved past its thresholds as measured from the kill: what the
            # dead worker held is claimed too long ago, what the new workers claim since is not.
            resent = _sweep(killed_clock + STUCK_SUBMITTING_AFTER + timedelta(seconds=1))
            for worker in workers:
                wait_worker(worker)
            sandbox.fail_next_images(FAILED_OMIS)
            for step in plan[FIRST_BATCH:]:
                create(*step)
            recovered_at = None
            deadline = time.monotonic() + SETTLE_SECONDS
            last_sweep = 0.0
            while time.monotonic() < deadline:
                rows = DerivedJob.objects.filter(pk__in=ids)
                if recovered_at is None and not (
                    rows.filter(pk__in=held)
                    .exclude(state__in=[DerivedState.COMPLETED, DerivedState.ERROR])
                    .exists()
                ):
                    recovered_at = time.monotonic()
                pending = rows.exclude(state__in=[DerivedState.COMPLETED, DerivedState.ERROR])
                untagged = rows.filter(
                    kind=DerivedKind.COPY, state=DerivedState.COMPLETED, tag_state=TagState.PENDING
                )
                if not pending.exists() and not untagged.exists():
                    break
                if time.monotonic() - last_sweep > 5:
                    # A lost message is re-sent; a claim is never taken from a live worker (its
                    # threshold, 240 s, is past the task's hard time limit).
                    _sweep(timezone.now() + LOST_IN_QUEUE_AFTER + timedelta(seconds=1))
                    last_sweep = time.monotonic()
                poll_derived.apply_async(expires=5)
                time.sleep(1.0)
        finally:
            for worker in workers:
                worker.stop()
                if worker in env.processes:
                    env.processes.remove(worker)
        seconds = time.monotonic() - started
        calls = list(recorder.calls)
    state = sandbox.state()
    sandbox.reset()

    jobs = {str(job.pk): job for job in DerivedJob.objects.filter(pk__in=ids)}
    made = {
        "volume": state["volumes"].get(account, []),
        "image": [i for i in state["images"].get(account, []) if i["ImageId"] != premade],
        "copy": [s for s in state["snapshots"].get(account, []) if s.get("ClientToken")],
    }

    def made_by(job: Any) -> list[dict[str, Any]]:
        if job.kind == DerivedKind.IMAGE:
            name = job.parameters["image_name"]
            return [item for item in made["image"] if item["ImageName"] == name]
        return [item for item in made[job.kind] if item.get("ClientToken") == str(job.pk)]

    def made_id(item: dict[str, Any]) -> str:
        return str(item.get("VolumeId") or item.get("ImageId") or item.get("SnapshotId"))

    completed: Counter[str] = Counter()
    not_one: Counter[str] = Counter()
    owned: Counter[str] = Counter()
    unexpected = as_injected = failed_omis = 0
    for job_id, job in jobs.items():
        found = made_by(job)
        owned[job.kind] += len(found)
        if job.state == DerivedState.COMPLETED:
            completed[job.kind] += 1
            if len(found) != 1 or made_id(found[0]) != job.resource_id:
                not_one[job.kind] += 1
                examples.append(
                    f"{job.kind} {job_id}: {len(found)} made, job says {job.resource_id}"
                )
        elif job.state == DerivedState.ERROR:
            failed_at_api = (
                job.kind == DerivedKind.IMAGE
                and len(found) == 1
                and found[0]["State"] == "failed"
                and made_id(found[0]) == job.resource_id
            )
            failed_omis += failed_at_api
            if job_id in refused_ids and not found or failed_at_api:
                as_injected += 1
            else:
                unexpected += 1
                examples.append(
                    f"{job.kind} {job_id} ({json.dumps(job.parameters)[:160]}): "
                    f"{job.error_code} {job.error_details[:200]}"
                )
            if len(found) > int(failed_at_api):
                not_one[job.kind] += 1
                examples.append(f"{job.kind} {job_id} failed but {len(found)} made")
    for kind in KINDS:
        # What no job of ours accounts for (an OMI made twice under two names cannot be told
        # from an OMI of someone else, but there is no one else in this account).
        strays = len(made[kind]) - owned[kind]
        if strays:
            not_one[kind] += strays
            examples.append(f"{strays} {KIND_TITLES[kind]} made that no job accounts for")
    tokens = Counter(item["ClientToken"] for kind in ("volume", "copy") for item in made[kind])
    names = Counter(item["ImageName"] for item in made["image"])
    per_call_key: dict[str, Counter[str]] = {
        "volume": Counter(state["create_volume_calls_by_client_token"]),
        "image": Counter(state["create_image_calls_by_name"]),
        "copy": Counter(state["create_snapshot_calls_by_client_token"]),
    }
    job_keys = {
        job.parameters["image_name"] if job.kind == DerivedKind.IMAGE else job_id: job.kind
        for job_id, job in jobs.items()
    }
    max_calls = {
        kind: max(
            (per_call_key[kind][key] for key, of in job_keys.items() if of == kind), default=0
        )
        for kind in KINDS
    }
    over_bound = sum(
        per_call_key[kind][key] > MAX_SUBMIT_ATTEMPTS for key, kind in job_keys.items()
    )
    answers: dict[str, list[tuple[int, bool]]] = {}
    for _, action, key, status, _, delivered in sorted(calls):
        if action in CREATE_ACTIONS.values() and key in job_keys:
            answers.setdefault(key, []).append((status, delivered))
    retried_after_permanent = 0
    for replies in answers.values():
        for position, (status, delivered) in enumerate(replies):
            if delivered and 400 <= status < 500 and status not in TRANSIENT_STATUSES:
                retried_after_permanent += len(replies) - position - 1
                break
    fired: Counter[str] = Counter()
    for fault in state["faults"][len(kill_faults) :]:
        label = f"{fault['action']} {fault['kind']}"
        if fault["kind"] == "error":
            label += f" {fault['status']}"
        elif fault["kind"] == "slow":
            label += f" {fault['delay']:g} s"
        fired[label] += fault["fired"]
    held_ids = {str(pk) for pk in held}
    recovered = sum(
        jobs[job_id].state in (DerivedState.COMPLETED, DerivedState.ERROR) for job_id in held_ids
    )
    return LifecycleFaultsResult(
        jobs=dict(Counter(job.kind for job in jobs.values())),
        refused=dict(Counter(kinds_of[job_id] for job_id in refused_ids)),
        failed_omis=failed_omis,
        final=sum(job.is_terminal for job in jobs.values()),
        completed=dict(completed),
        ended_as_injected=as_injected,
        unexpected_errors=unexpected,
        not_one={kind: not_one[kind] for kind in KINDS},
        duplicates_by_token=sum(count - 1 for count in tokens.values() if count > 1),
        duplicates_by_name=sum(count - 1 for count in names.values() if count > 1),
        max_create_calls=max_calls,
        calls_over_bound=over_bound,
        retried_after_permanent=retried_after_permanent,
        copies_named=sum(
            job.kind == DerivedKind.COPY
            and job.state == DerivedState.COMPLETED
            and job.tag_state == TagState.DONE
            for job in jobs.values()
        ),
        killed_held=len(held_ids),
        killed_recovered=recovered,
        recovery_seconds=(recovered_at or time.monotonic()) - killed_at,
        sweeper_resent=resent,
        faults_fired=dict(fired),
        api_calls=len(calls),
        seconds=seconds,
        examples=examples,
    )


def faults_section(env: Env, args: argparse.Namespace, results: Results) -> None:
    section = "Volumes, OMIs and copies under API faults, a worker killed"
    print(f"\n{section}", flush=True)
    found = scenario_lifecycle_faults(env, args.lifecycle_jobs)
    total = sum(found.jobs.values())
    results.add(
        section,
        "jobs (volumes / OMIs / copies)",
        " / ".join(str(found.jobs.get(kind, 0)) for kind in KINDS),
        f"{args.lifecycle_jobs} each",
        all(found.jobs.get(kind, 0) == args.lifecycle_jobs for kind in KINDS),
    )
    results.add(section, "API calls made", found.api_calls)
    results.add(
        section,
        "faults fired",
        ", ".join(
            f"{label}: {count}" for label, count in sorted(found.faults_fired.items()) if count
        )
        + f" ({sum(found.faults_fired.values())} in all)",
    )
    results.add(section, "jobs final", f"{found.final}/{total}", "all", found.final == total)
    injected = sum(found.refused.values()) + found.failed_omis
    results.add(
        section,
        "completed (volumes / OMIs / copies)",
        " / ".join(str(found.completed.get(kind, 0)) for kind in KINDS),
    )
    results.add(
        section,
        "ended in error as injected (refused for good by the API, OMIs it ended failed)",
        f"{found.ended_as_injected}/{injected} ("
        + ", ".join(f"{found.refused.get(kind, 0)} {KIND_TITLES[kind]}" for kind in KINDS)
        + f" refused, {found.failed_omis} OMIs failed)",
        "all",
        found.ended_as_injected == injected,
    )
    results.add(
        section,
        "ended in error though nothing was injected",
        found.unexpected_errors,
        "0",
        found.unexpected_errors == 0,
    )
    for kind in KINDS:
        results.add(
            section,
            f"{KIND_TITLES[kind]}: completed jobs without exactly one in the account, or made "
            "by none",
            found.not_one[kind],
            "0",
            found.not_one[kind] == 0,
        )
    results.add(
        section,
        "duplicates by ClientToken (volumes, copies) / by name (OMIs)",
        f"{found.duplicates_by_token} / {found.duplicates_by_name}",
        "0 / 0",
        found.duplicates_by_token == 0 and found.duplicates_by_name == 0,
    )
    results.add(
        section,
        "most create calls for one job (CreateVolume / CreateImage / CreateSnapshot)",
        " / ".join(str(found.max_create_calls[kind]) for kind in KINDS),
        "<= 8 (MAX_SUBMIT_ATTEMPTS)",
        found.calls_over_bound == 0,
    )
    results.add(
        section,
        "create calls after a permanent error",
        found.retried_after_permanent,
        "0",
        found.retried_after_permanent == 0,
    )
    copies = found.completed.get("copy", 0)
    results.add(
        section,
        "completed copies tagged with their Name",
        f"{found.copies_named}/{copies}",
        "all",
        found.copies_named == copies,
    )
    results.add(
        section,
        "jobs the killed worker was sending, ended",
        f"{found.killed_recovered}/{found.killed_held} (sweeper re-sent {found.sweeper_resent})",
        "all, >= 3",
        found.killed_recovered == found.killed_held >= 3,
    )
    results.add(section, "kill to those jobs ended", f"{found.recovery_seconds:.1f} s")
    results.add(section, "time for every job to end", f"{found.seconds:.0f} s")
    for example in found.examples[:10]:
        results.note(section, f"Example: `{example}`")
    results.note(
        section,
        "Method: jobs made through the dialogs' service (`derived_create`) with values their "
        "forms checked (standard, gp2 and io1; both boot modes), from two completed "
        "snapshots. One prefork worker (concurrency 4) takes the first six; the sandbox holds "
        f"its first CreateVolume, CreateImage and copy-mode CreateSnapshot {KILL_DELAY:g} s "
        "and acts after that; 0.3 s after all three arrived the worker is SIGKILLed and two "
        "new ones start. Once the API has acted, the sweeper runs with its clock moved past "
        "its thresholds as measured from the kill (only the dead worker's claims are stale); "
        "then every 5 s with it moved past the lost-message threshold only (a claim of a live "
        "worker is never taken: in production its threshold is past the task's hard time "
        "limit). Polls every second (beat, and sent).",
    )
    results.note(
        section,
        f"Injected for good: 1 job of each kind in {REFUSED_EVERY} is one the API refuses "
        "(a volume smaller than its snapshot, an OMI whose name an OMI made outside the "
        "portal has, a copy of a snapshot not in the account), and the API ends "
        f"{FAILED_OMIS} OMIs `failed` after accepting them. Counting is in Sandbox.state(): "
        "volumes and copies by ClientToken (the job's id), OMIs by name; a stray is a volume, "
        "OMI or copy in the account that no job made.",
    )


# --- 2. Hostile input to the five dialogs -----------------------------------------------------

DIALOGS = ("volume", "image", "copy", "permissions", "tags")
DIALOG_PATHS = {
    "volume": "volume",
    "image": "omi",
    "copy": "copy-snapshot",
    "permissions": "permissions",
    "tags": "tags",
}
DIALOG_TITLES = {
    "volume": "CREATE VOLUME",
    "image": "CREATE OMI",
    "copy": "COPY SNAPSHOT",
    "permissions": "UPDATE SNAPSHOT PERMISSIONS",
    "tags": "EDIT TAGS",
}
CREATES = ("volume", "image", "copy")
MUTATING = ("UpdateSnapshot", "CreateTags", "DeleteTags", *CREATE_ACTIONS.values())
BAD_SUBREGIONS = [
    "eu-west-2z",
    "eu-west-2",
    "us-east-2a",
    "cloudgouv-eu-west-1a",
    "EU-WEST-2A",
    "eu-west-2a ",
    " eu-west-2a",
    "eu-west-2a\x00",
    "eu-west-2\u0430",  # a Cyrillic а
    "eu-west-2a\u200b",
    "eu-west-2a,eu-west-2b",
    "*",
    "",
]
MESSAGE = re.compile(r'class="(?:form-error|error field-error)[^"]*"')


@dataclass
class Post:
    """One hostile post: form data (a dict, lists for repeated fields) or a raw body."""

    data: dict[str, Any]
    raw: bytes | None = None
    content_type: str = ""
    htmx: bool = False
    key: str = ""  # none, own, replay, other, garbled
    shape: str = "form"


@dataclass
class LifecycleHostileResult:
    posts: Counter[str] = field(default_factory=Counter)  # dialog -> posts
    accepted: Counter[str] = field(default_factory=Counter)
    server_errors: int = 0
    refused_not_422: int = 0
    refused_without_message: int = 0
    messages_not_shown: int = 0
    jobs_by_refused: int = 0
    changes_by_refused: int = 0  # audit entries, permissions or tags changed by a refused post
    invalid_accepted: int = 0
    invalid_sent_to_api: int = 0
    foreign_keys_accepted: int = 0
    replays_made_job: int = 0
    oversized_400: int = 0
    lenient_numbers: int = 0
    not_found_probes: int = 0
    not_found_wrong: int = 0
    examples: dict[str, list[str]] = field(default_factory=dict)  # measure -> a few
    dialogs: dict[str, Counter[str]] = field(default_factory=dict)  # measure -> dialog -> count
    tracebacks: list[str] = field(default_factory=list)
    seconds: float = 0.0


def _maybe(rng: random.Random, share: float, good: str, bad: Any) -> Any:
    return bad() if rng.random() < share else good


def _volume_input(rng: random.Random, subregions: list[str]) -> dict[str, Any]:
    from bench.hostile import hostile_number, hostile_text

    size = rng.randint(10, 200)
    volume_type = rng.choice(["standard", "gp2", "io1"])
    iops = str(rng.randint(100, min(13000, 300 * size))) if volume_type == "io1" else ""
    return {
        "subregion_name": _maybe(
            rng,
            0.4,
            rng.choice(subregions),
            lambda: rng.choice([*BAD_SUBREGIONS, hostile_text(rng, 64)]),
        ),
        "volume_type": _maybe(
            rng,
            0.25,
            volume_type,
            lambda: rng.choice(
                ["IO1", "io2", "gp3", "st1", "standard ", "", hostile_text(rng, 20)]
            ),
        ),
        "size_gib": _maybe(rng, 0.5, str(size), lambda: hostile_number(rng, 10, 14901)),
        "iops": _maybe(rng, 0.4, iops, lambda: rng.choice(["", hostile_number(rng, 100, 13000)])),
    }


def _image_input(rng: random.Random) -> dict[str, Any]:
    from bench.hostile import hostile_number, hostile_text

    size = rng.randint(10, 200)
    volume_type = rng.choice(["standard", "gp2", "io1"])
    iops = str(rng.randint(100, min(13000, 300 * size))) if volume_type == "io1" else ""
    names = ["web (v2)", "ab", "it's [mine]", "a" * 128, "a" * 129, "x/y.z-1_2", " padded "]
    return {
        "image_name": _maybe(
            rng,
            0.5,
            f"omi-{rng.randrange(10**6)}",
            lambda: rng.choice([*names, hostile_text(rng, 128)]),
        ),
        "description": _maybe(rng, 0.5, "", lambda: hostile_text(rng, 255)),
        "architecture": _maybe(
            rng,
            0.2,
            rng.choice(["x86_64", "i386"]),
            lambda: rng.choice(["arm64", "x86-64", "X86_64", "", "x86_64 "]),
        ),
        "boot_mode": _maybe(
            rng,
            0.2,
            rng.choice(["legacy", "uefi"]),
            lambda: rng.choice(["bios", "UEFI", "", "legacy\x00"]),
        ),
        "root_device_name": _maybe(
            rng,
            0.2,
            "/dev/sda1",
            lambda: rng.choice(
                ["/dev/xvda", " /dev/sda1 ", "/dev/sda1\x00", "/dev/sda", hostile_text(rng, 32)]
            ),
        ),
        "volume_type": _maybe(
            rng, 0.2, volume_type, lambda: rng.choice(["IO1", "io2", "", hostile_text(rng, 20)])
        ),
        "volume_size_gib": _maybe(rng, 0.4, str(size), lambda: hostile_number(rng, 10, 14901)),
        "iops": _maybe(rng, 0.3, iops, lambda: rng.choice(["", hostile_number(rng, 100, 13000)])),
        "delete_on_vm_deletion": rng.choice(["on", "", "false", "0", "yes", "\x00"]),
    }


def _copy_input(rng: random.Random) -> dict[str, Any]:
    from bench.hostile import hostile_text

    return {
        "name": _maybe(rng, 0.6, f"copy {rng.randrange(10**6)}", lambda: hostile_text(rng, 255)),
        "description": _maybe(rng, 0.5, "", lambda: hostile_text(rng, 1000)),
    }


def _permissions_input(rng: random.Random, current: list[str]) -> dict[str, Any]:
    from bench.hostile import hostile_account_ids, hostile_text

    removed = [account for account in current if rng.random() < 0.3]
    if rng.random() < 0.2:
        removed.append(rng.choice(["000000000000", "123456789012\x00", hostile_text(rng, 40)]))
    data: dict[str, Any] = {"add_account_ids": hostile_account_ids(rng)}
    if removed:
        data["remove_account_ids"] = removed
    for name in ("public", "confirm_public"):
        if rng.random() < 0.3:
            data[name] = rng.choice(["on", "false", "0", "", "yes"])
    return data


def _tags_input(rng: random.Random) -> dict[str, Any]:
    from bench.hostile import hostile_number, hostile_text

    rows = rng.choice([0, 1, 2, 3, 4, 5, 6, rng.randint(7, 50), 50, 51, 60, 61, 200])
    data: dict[str, Any] = {
        "tags-TOTAL_FORMS": str(rows),
        "tags-INITIAL_FORMS": "0",
        "tags-MIN_NUM_FORMS": "0",
        "tags-MAX_NUM_FORMS": "50",
    }
    keys = ["Name", "env", "owner", "cost-center", "aws:x", "osc.fcu.x"]
    for index in range(min(rows, 70)):
        data[f"tags-{index}-key"] = _maybe(
            rng,
            0.3,
            rng.choice(keys) + str(index),
            lambda: rng.choice(["", hostile_text(rng, 255)]),
        )
        data[f"tags-{index}-value"] = _maybe(rng, 0.3, "v", lambda: hostile_text(rng, 255))
    if rows >= 2 and rng.random() < 0.2:  # the same key twice (spaces around it are stripped)
        data["tags-1-key"] = rng.choice(["", " ", "  "]) + str(data["tags-0-key"]) + " "
    roll = rng.random()
    if roll < 0.06:
        data.pop("tags-TOTAL_FORMS")
    elif roll < 0.12:
        data["tags-TOTAL_FORMS"] = hostile_number(rng, 0, 50)
    elif roll < 0.16:
        data["tags-INITIAL_FORMS"] = hostile_number(rng, 0, 50)
    elif roll < 0.2:
        data["tags-TOTAL_FORMS"] = str(rows + rng.randint(1, 5))  # rows announced, not sent
    return data


def _shape(rng: random.Random, post: Post) -> Post:
    """Missing fields, wrong types and broken bodies, for a share of the posts."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    roll = rng.random()
    fields = list(post.data)
    if roll < 0.06 and fields:
        for name in rng.sample(fields, rng.randint(1, len(fields))):
            post.data.pop(name)
        post.shape = "missing fields"
    elif roll < 0.09:
        post.data = {}
        post.shape = "empty"
    elif roll < 0.12 and fields:
        name = rng.choice(fields)
        post.data[name] = [str(post.data[name]), "second value"]
        post.shape = "a list for one value"
    elif roll < 0.14 and fields:
        name = rng.choice(fields)
        post.data[name] = SimpleUploadedFile("value.txt", b"10", content_type="text/plain")
        post.shape = "a file for a field"
    elif roll < 0.17:
        post.raw = json.dumps(post.data).encode()
        post.content_type = "application/json"
        post.shape = "JSON body"
    elif roll < 0.19:
        post.raw = b"&".join(
            f"{name}=".encode() + rng.choice([b"%FF%FE", b"\xff\xfe", b"%C0%AF", b"%ED%A0%80"])
            for name in fields or ["x"]
        )
        post.content_type = "application/x-www-form-urlencoded"
        post.shape = "invalid UTF-8"
    return post


def _key_fields(
    rng: random.Random, user: Any, other: Any, accepted: list[str]
) -> tuple[str, dict[str, str]]:
    from bench.hostile import hostile_text
    from importer.lifecycle.views import LIFECYCLE_FORM_KEYS

    roll = rng.random()
    key = uuid.uuid4()
    if roll < 0.3:
        return "none", {}
    if roll < 0.65:
        return "own", {
            "idempotency_key": str(key),
            "idempotency_signature": LIFECYCLE_FORM_KEYS.signature(user.pk, key),
        }
    if roll < 0.75 and accepted:
        old = uuid.UUID(rng.choice(accepted))
        return "replay", {
            "idempotency_key": str(old),
            "idempotency_signature": LIFECYCLE_FORM_KEYS.signature(user.pk, old),
        }
    if roll < 0.88:
        return "other", {
            "idempotency_key": str(key),
            "idempotency_signature": LIFECYCLE_FORM_KEYS.signature(other.pk, key),
        }
    garbled = rng.choice([hostile_text(rng, 40), "not-a-uuid", str(key).upper(), f"{key}\x00"])
    signature = rng.choice(["", hostile_text(rng, 60), LIFECYCLE_FORM_KEYS.signature(user.pk, key)])
    return "garbled", {"idempotency_key": garbled or "x", "idempotency_signature": signature}


def generated_posts(
    dialog: str, count: int, rng: random.Random, subregions: list[str]
) -> list[Post]:
    """The first posts of a dialog are crafted (the 10k-character value in each field, a NUL,
    a bidi override...), the rest random."""
    from bench.hostile import TEN_THOUSAND

    makers = {
        "volume": lambda: _volume_input(rng, subregions),
        "image": lambda: _image_input(rng),
        "copy": lambda: _copy_input(rng),
        "permissions": lambda: _permissions_input(rng, []),
        "tags": lambda: _tags_input(rng),
    }
    base = makers[dialog]()
    posts = []
    for name in list(base)[:10]:
        for value in (TEN_THOUSAND, "\x00", "a\u202eb", "", "-1", "\U0010ffff"):
            posts.append(Post({**base, name: value}, shape="crafted"))
    posts.append(Post({}, shape="empty"))
    while len(posts) < count:
        posts.append(_shape(rng, Post(makers[dialog](), htmx=rng.random() < 0.3)))
    return posts[:count]


@contextmanager
def _no_enqueue() -> Any:
    """Accepted jobs stay queued: no broker message, nothing reaches the API."""
    from importer.lifecycle import services

    saved = services.derived_enqueue
    services.derived_enqueue = lambda **kwargs: True
    try:
        yield
    finally:
        services.derived_enqueue = saved


@contextmanager
def _exceptions() -> Any:
    """The tracebacks of the requests the test client answered 500."""
    from django.core.signals import got_request_exception

    found: list[str] = []

    def keep(sender: Any, request: Any = None, **kwargs: Any) -> None:
        found.append(traceback.format_exc())

    got_request_exception.connect(keep, weak=False)
    try:
        yield found
    finally:
        got_request_exception.disconnect(keep)


def _rebuilt(
    dialog: str, data: Any, subregions: list[str], current: Any, tags: dict[str, str]
) -> Any:
    """The dialog's form, bound to the same data: the messages the answer must show."""
    from importer.lifecycle.forms import (
        CopyForm,
        ImageForm,
        PermissionsForm,
        TagFormSet,
        VolumeForm,
    )

    if dialog == "volume":
        return VolumeForm(data, subregions=subregions, min_size_gib=10)
    if dialog == "image":
        return ImageForm(data, min_size_gib=10)
    if dialog == "copy":
        return CopyForm(data)
    if dialog == "permissions":
        return PermissionsForm(data, current=current)
    initial = [{"key": key, "value": value} for key, value in sorted(tags.items())]
    return TagFormSet(data, initial=initial, prefix="tags", form_kwargs={"empty_permitted": False})


def _messages(form: Any) -> list[str]:
    if hasattr(form, "non_form_errors"):  # a formset
        found = list(form.non_form_errors())
        for row in form.forms:
            found += [m for messages in row.errors.values() for m in messages]
        return [str(m) for m in found]
    return [str(m) for messages in form.errors.values() for m in messages]


def _as_posted(post: Post) -> dict[str, Any]:
    """What Django reads of a post as form data: a file is no POST value, JSON is no form,
    undecodable bytes are read with replacement characters."""
    from django.http import QueryDict

    if post.raw is not None:
        if post.content_type != "application/x-www-form-urlencoded":
            return {}
        return dict(QueryDict(post.raw).lists())
    return {name: value for name, value in post.data.items() if isinstance(value, str | list)}


def _query_dict(data: dict[str, Any]) -> Any:
    from django.http import QueryDict

    posted = QueryDict(mutable=True)
    for name, value in data.items():
        if isinstance(value, list):
            posted.setlist(name, [str(v) for v in value])
        elif isinstance(value, str):
            posted[name] = value
    return posted


def scenario_lifecycle_hostile(env: Env, count: int, seed: int = 11) -> LifecycleHostileResult:
    """`count` hostile posts spread over the five dialogs, as an operator."""
    from django.contrib.auth.models import User
    from django.db import connection
    from django.test import Client
    from django.utils.html import escape

    from bench.hostile import (
        plain_digits,
        why_invalid_copy,
        why_invalid_image,
        why_invalid_permissions,
        why_invalid_tags,
        why_invalid_volume,
    )
    from importer.audit.models import AuditEvent
    from importer.lifecycle.models import DerivedJob
    from importer.outscale.resources import SnapshotPermissions
    from importer.teams.models import Membership, Role

    cast = people()
    team, operator = cast["team"], cast["operator"]
    other = User.objects.filter(username="bench-operator-2").first()
    if other is None:
        other = User.objects.create_user(username="bench-operator-2", password=uuid.uuid4().hex)
    Membership.objects.get_or_create(user=other, team=team, defaults={"role": Role.OPERATOR})
    sandbox = env.sandbox
    sandbox.reset()
    (snapshot_id,) = completed_snapshots(sandbox, 1)
    subregions = subregion_names(sandbox)
    account = sandbox.account.account_id
    client = Client(raise_request_exception=False, HTTP_HOST="127.0.0.1")
    client.force_login(operator)
    connection.ensure_connection()
    rng = random.Random(seed)  # noqa: S311 - reproducible test data, not a secret
    result = LifecycleHostileResult()
    accepted_keys: list[str] = []
    started = time.monotonic()

    emulator = sandbox._emulator  # read in-process: no API call of the bench's own per post

    def current() -> tuple[Any, dict[str, str]]:
        """The snapshot's permissions and tags as the API holds them now."""
        with emulator.state.lock:
            held = emulator.state.get(account, snapshot_id)
            return SnapshotPermissions(
                account_ids=tuple(held.permitted_account_ids), public=held.public
            ), dict(held.tags)

    def mutating_calls() -> int:
        with emulator.state.lock:
            return sum(emulator.state.calls[action] for action in MUTATING)

    def rows() -> tuple[int, int]:
        """How many jobs and audit entries there are (one query)."""
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT (SELECT count(*) FROM {DerivedJob._meta.db_table}), "  # noqa: S608
                f"(SELECT count(*) FROM {AuditEvent._meta.db_table})"
            )
            jobs, entries = cursor.fetchone()
        return int(jobs), int(entries)

    def note(measure: str, text: str) -> None:
        result.dialogs.setdefault(measure, Counter())[dialog] += 1
        kept = result.examples.setdefault(measure, [])
        if len(kept) < 3:
            kept.append(text[:300])

    with _no_enqueue(), _exceptions() as tracebacks:
        for dialog in DIALOGS:
            path = f"/snapshots/{snapshot_id}/{DIALOG_PATHS[dialog]}"
            page = client.get(path)
            if page.status_code != 200 or DIALOG_TITLES[dialog] not in page.content.decode():
                raise RuntimeError(f"{path} did not open: {page.status_code}")
            for post in generated_posts(dialog, count // len(DIALOGS), rng, subregions):
                permissions, tags = current()
                current_ids = list(permissions.account_ids)
                # Some removals of the accounts the snapshot is shared with now.
                shared = dialog == "permissions" and bool(current_ids) and post.raw is None
                if shared and post.shape != "crafted" and rng.random() < 0.5:
                    post.data["remove_account_ids"] = rng.sample(
                        current_ids, rng.randint(1, len(current_ids))
                    )
                if dialog in CREATES and post.raw is None and post.data:
                    post.key, fields = _key_fields(rng, operator, other, accepted_keys)
                    post.data.update(fields)
                before = (*rows(), mutating_calls(), current())
                headers = {"HX-Request": "true"} if post.htmx else {}
                if post.raw is not None:
                    answer = client.post(
                        path, data=post.raw, content_type=post.content_type, headers=headers
                    )
                else:
                    answer = client.post(path, post.data, headers=headers)
                jobs_after, audit_after = rows()
                calls_after, state_after = mutating_calls(), current()
                result.posts[dialog] += 1
                status = answer.status_code
                body = answer.content.decode(errors="replace")
                shown = repr(post.data)[:200] if post.raw is None else repr(post.raw[:200])
                accepted = status == 302 or (status == 200 and "HX-Redirect" in answer)
                posted = _as_posted(post)
                if dialog == "volume":
                    reason = why_invalid_volume(posted, subregions, 10)
                elif dialog == "image":
                    reason = why_invalid_image(posted, 10)
                elif dialog == "copy":
                    reason = why_invalid_copy(posted)
                elif dialog == "permissions":
                    reason = why_invalid_permissions(posted, current_ids, permissions.public)
                else:
                    reason = why_invalid_tags(posted)
                if status >= 500:
                    result.server_errors += 1
                    note("server_errors", f"{dialog}: {status} for {shown}")
                    if tracebacks:
                        result.tracebacks.append(f"{dialog} {shown}\n{tracebacks[-1]}")
                    continue
                if dialog in ("permissions", "tags") and calls_after > before[2] and reason:
                    result.invalid_sent_to_api += 1
                    note(
                        "invalid_sent_to_api",
                        f"{dialog}: sent to the API though {reason}: {shown} -> {status}",
                    )
                if accepted:
                    result.accepted[dialog] += 1
                    made = jobs_after - before[0]
                    if made and post.key == "own":
                        accepted_keys.append(str(post.data["idempotency_key"]))
                    if dialog == "permissions" and len(current_ids) > 20:
                        _unshare(sandbox, snapshot_id)
                    if dialog in CREATES and made and post.key in ("other", "garbled"):
                        result.foreign_keys_accepted += 1
                        note(
                            "foreign_keys_accepted",
                            f"{dialog}: a job from a key not signed for the operator: {shown}",
                        )
                    if post.key == "replay" and made:
                        result.replays_made_job += 1
                        note(
                            "replays_made_job",
                            f"{dialog}: a replayed key made a second job: {shown}",
                        )
                    if reason and (made or dialog not in CREATES):
                        result.invalid_accepted += 1
                        note("invalid_accepted", f"{dialog}: accepted though {reason}: {shown}")
                    numbers = [
                        str(posted.get(name, ""))
                        for name in ("size_gib", "volume_size_gib", "iops")
                        if isinstance(posted.get(name), str) and posted.get(name)
                    ]
                    if made and any(not plain_digits(n.strip()) for n in numbers):
                        result.lenient_numbers += 1
                        note(
                            "lenient_numbers",
                            f"{dialog}: a number not in ASCII digits accepted: {numbers}",
                        )
                    continue
                if status == 400 and post.shape != "form":
                    result.oversized_400 += 1  # Django's own request limits
                    continue
                if status != 422:
                    result.refused_not_422 += 1
                    note("refused_not_422", f"{dialog}: answered {status} for {shown}")
                if not MESSAGE.search(body):
                    result.refused_without_message += 1
                    note("refused_without_message", f"{dialog}: refused without a message: {shown}")
                if jobs_after != before[0]:
                    result.jobs_by_refused += 1
                    note("jobs_by_refused", f"{dialog}: a refused post made a job: {shown}")
                if (audit_after, state_after) != (before[1], before[3]):
                    result.changes_by_refused += 1
                    note(
                        "changes_by_refused", f"{dialog}: a refused post changed something: {shown}"
                    )
                if post.raw is None and post.shape != "a file for a field":
                    form = _rebuilt(
                        dialog,
                        _query_dict(post.data),
                        subregions,
                        permissions,
                        tags,
                    )
                    form.is_valid()
                    missing = [m for m in _messages(form) if escape(m) not in body]
                    if missing:
                        result.messages_not_shown += 1
                        note(
                            "messages_not_shown",
                            f"{dialog}: message not shown ({missing[0][:80]!r}): {shown}",
                        )
            # Permissions drift with every accepted post: back to none shared between dialogs.
            _unshare(sandbox, snapshot_id)
        # The path's snapshot is not the team's, or no snapshot ID: 404, and nothing made.
        for dialog in DIALOGS:
            for wrong in ("snap-0000dead", "snap-ffffffff", "not-a-snapshot", "snap-%00"):
                before_jobs = DerivedJob.objects.count()
                data = {"name": "x", "size_gib": "10", "image_name": "omi-x"}
                answer = client.post(f"/snapshots/{wrong}/{DIALOG_PATHS[dialog]}", data)
                result.not_found_probes += 1
                if answer.status_code != 404 or DerivedJob.objects.count() != before_jobs:
                    result.not_found_wrong += 1
                    note(
                        "not_found_wrong",
                        f"{dialog}: {answer.status_code} for the snapshot {wrong!r}",
                    )
        # Over Django's field limit (DATA_UPLOAD_MAX_NUMBER_FIELDS): refused before the form
        # (Django logs each as a security event with its traceback: not the bench's to print).
        security = logging.getLogger("django.security")
        level = security.level
        security.setLevel(logging.CRITICAL)
        for dialog in DIALOGS:
            data = {f"tags-{index}-key": "k" for index in range(1200)}
            answer = client.post(f"/snapshots/{snapshot_id}/{DIALOG_PATHS[dialog]}", data)
            result.posts[dialog] += 1
            if answer.status_code >= 500:
                result.server_errors += 1
            elif answer.status_code == 400:
                result.oversized_400 += 1
            elif answer.status_code != 422:
                result.refused_not_422 += 1
        security.setLevel(level)
    result.seconds = time.monotonic() - started
    DerivedJob.objects.filter(team=team, source_snapshot_id=snapshot_id).delete()
    sandbox.reset()
    return result


def _unshare(sandbox: Any, snapshot_id: str) -> None:
    """Makes the snapshot private again, through the API as any client would."""
    answer = sandbox.call("ReadSnapshots", {"Filters": {"SnapshotIds": [snapshot_id]}})
    permissions = answer.json()["Snapshots"][0]["PermissionsToCreateVolume"]
    removal: dict[str, Any] = {"GlobalPermission": True} if permissions["GlobalPermission"] else {}
    if permissions["AccountIds"]:
        removal["AccountIds"] = permissions["AccountIds"]
    if removal:
        sandbox.call(
            "UpdateSnapshot",
            {"SnapshotId": snapshot_id, "PermissionsToCreateVolume": {"Removals": removal}},
        )


def hostile_section(env: Env, args: argparse.Namespace, results: Results) -> None:
    section = "Hostile input: the snapshot actions' dialogs"
    print(f"\n{section}", flush=True)
    found = scenario_lifecycle_hostile(env, args.lifecycle_inputs)
    total = sum(found.posts.values())
    smallest = args.lifecycle_inputs // len(DIALOGS)
    for dialog in DIALOGS:
        results.add(
            section,
            f"{DIALOG_TITLES[dialog]}: posts (accepted)",
            f"{found.posts[dialog]} ({found.accepted[dialog]})",
            f">= {smallest}",
            found.posts[dialog] >= smallest,
        )
    measures = [
        ("server_errors", "answers >= 500"),
        ("refused_not_422", "refused posts answered other than 422 (besides Django's 400s)"),
        ("refused_without_message", "refused posts without an error message in the answer"),
        ("messages_not_shown", "refused posts whose form's messages are not all in the answer"),
        ("jobs_by_refused", "jobs made by a refused post"),
        (
            "changes_by_refused",
            "refused posts that changed something (job, audit entry, permissions, tags)",
        ),
        (
            "invalid_accepted",
            "accepted though the oracle refuses it (job made, permissions or tags changed)",
        ),
        (
            "invalid_sent_to_api",
            "values the oracle refuses sent to the API anyway (permissions, tags)",
        ),
        ("foreign_keys_accepted", "jobs made with a key signed for another user, or garbled"),
        ("replays_made_job", "second jobs made by a replayed key"),
    ]
    for measure, title in measures:
        count = getattr(found, measure)
        where = found.dialogs.get(measure, Counter())
        shown = f"{count} ({', '.join(f'{d} {n}' for d, n in sorted(where.items()))})"
        results.add(section, title, shown if count and where else count, "0", count == 0)
    results.add(
        section,
        "posts to a snapshot not the team's or no snapshot ID: not 404, or a job made",
        f"{found.not_found_wrong} of {found.not_found_probes}",
        "0",
        found.not_found_wrong == 0,
    )
    results.add(
        section,
        "posts refused by Django before the form (400: over its field limit, undecodable)",
        found.oversized_400,
    )
    results.add(
        section,
        "jobs whose size or IOPS was typed other than in ASCII digits (+10, 10.0, ١٠, １０)",
        found.lenient_numbers,
    )
    results.add(section, "time", f"{found.seconds:.0f} s ({total} posts)")
    # Examples of what missed first, then of what is only reported.
    for measure in sorted(found.examples, key=lambda m: m == "lenient_numbers"):
        for example in found.examples[measure][:2]:
            results.note(section, f"Example ({measure.replace('_', ' ')}): `{example}`")
    for trace in found.tracebacks[:3]:
        results.note(section, "Traceback: `" + " | ".join(trace.strip().splitlines()[-6:]) + "`")
    results.note(
        section,
        "Method: a completed snapshot in the sandbox; each dialog "
        "(/snapshots/<id>/volume, /omi, /copy-snapshot, /permissions, /tags) gets its share of "
        "the posts from Django's test client, logged in as an operator, some as htmx requests. "
        "Values: bench/hostile.py's random text plus field-specific ones (sizes and IOPS at and "
        "past their bounds, negative, 9 x 400 and 10,000 digits, decimals, exponents, hex, "
        "Arabic-Indic and full-width digits, units), NUL, C0/C1 controls, bidi overrides and "
        "isolates, zero-width and private-use characters, 10,000-character strings, unknown "
        "and look-alike Subregions, bad account IDs among good ones with odd separators, tag "
        "keys twice (spaces around one), broken, missing or lying formset management data, "
        "up to 200 rows; then missing fields, an empty post, a list or a file for one value, a "
        "JSON body, undecodable bytes; for the three create dialogs the idempotency key is "
        "none, the operator's, one already used, one signed for another operator, or garbled.",
    )
    results.note(
        section,
        "Checks: an accepted post (302, or 200 with HX-Redirect) must pass the oracle "
        "(bench/hostile.py: why_invalid_volume, why_invalid_image, why_invalid_copy (the import "
        "dialog's why_invalid for Name and Description), why_invalid_permissions, "
        "why_invalid_tags: necessary conditions only); a refused one must answer 422 with a "
        "message, every message its form has (rebuilt from the same data) in the answer, and "
        "leave no job, no audit entry and the snapshot's permissions and tags as they were; a "
        "value the oracle refuses must not reach the API (UpdateSnapshot, CreateTags, "
        "DeleteTags). Accepted jobs are never sent (no broker message) and are deleted "
        "afterwards.",
    )
