"""The Celery task names are pinned: messages already queued, retries waiting on a countdown and
the beat schedule all name tasks by these strings, so moving a tasks module must not change them.
"""

from __future__ import annotations

import ast

import pytest
from django.conf import settings

from tests.support.workers import ROOT, StartedProcess

# Changing this set breaks the messages of a running deployment: add names, never rename one.
PINNED_TASK_NAMES = {
    "importer.tasks.record_worker_heartbeat",
    "importer.tasks.submit_import",
    "importer.tasks.tag_snapshot",
    "importer.tasks.poll_imports",
    "importer.tasks.sweep_imports",
    "importer.export_tasks.submit_export",
    "importer.export_tasks.poll_exports",
    "importer.export_tasks.sweep_exports",
    "importer.export_tasks.deliver_webhook",
    "importer.notifications.dispatch_notifications",
    "importer.notifications.sweep_deliveries",
    "importer.lifecycle.submit_derived",
    "importer.lifecycle.poll_derived",
    "importer.lifecycle.sweep_derived",
    "importer.bulk.run_item",
    "importer.bulk.sweep_items",
}


def registered_task_names() -> set[str]:
    """The app's own tasks, as a worker started with `-A snapshots_portal` registers them."""
    from snapshots_portal.celery import app

    # What a worker does at start: the autodiscovered tasks modules are imported.
    app.loader.import_default_modules()
    return {name for name in app.tasks if name.startswith("importer.")}


def enqueued_task_names() -> dict[str, str]:
    """Every task name passed to `enqueue(...)` in importer/, with where it is passed.

    Read from the source tree (not a regex), so a call over several lines or with the name as a
    keyword is found too; a name that is not a literal string fails the test, as it could not be
    checked here.
    """
    found: dict[str, str] = {}
    for path in sorted((ROOT / "importer").rglob("*.py")):
        if "migrations" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if not (isinstance(node, ast.Call) and _called_name(node.func) == "enqueue"):
                continue
            where = f"{path.relative_to(ROOT)}:{node.lineno}"
            name = _task_name_argument(node)
            assert name is not None, f"{where}: enqueue() without a literal task name"
            found[name] = where
    return found


def _called_name(func: ast.expr) -> str | None:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):  # queue.enqueue(...)
        return func.attr
    return None


def _task_name_argument(call: ast.Call) -> str | None:
    candidates = call.args[:1] + [k.value for k in call.keywords if k.arg == "task_name"]
    for value in candidates:
        if isinstance(value, ast.Constant) and isinstance(value.value, str):
            return value.value
    return None


def test_the_registered_task_names_are_the_pinned_ones() -> None:
    registered = registered_task_names()
    assert registered - PINNED_TASK_NAMES == set(), "new task: add its name to the pinned set"
    assert PINNED_TASK_NAMES - registered == set(), "a pinned task name is no longer registered"


def test_every_task_the_beat_schedule_names_is_registered() -> None:
    scheduled = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert scheduled
    assert scheduled - registered_task_names() == set()


def test_every_task_name_enqueued_is_registered() -> None:
    enqueued = enqueued_task_names()
    # The imports, exports and webhooks are enqueued by name; an empty result means the search
    # above no longer finds the calls, not that there are none.
    assert len(enqueued) >= 3, enqueued
    registered = registered_task_names()
    unknown = {name: where for name, where in enqueued.items() if name not in registered}
    assert unknown == {}


def _hostname(worker: StartedProcess) -> str:
    """The name it was started with (tests/support/workers.py passes --hostname)."""
    command = worker.process.args
    assert isinstance(command, list), command
    return str(command[command.index("--hostname") + 1])


@pytest.mark.integration
def test_the_worker_registers_every_pinned_task(celery_worker: StartedProcess) -> None:
    from snapshots_portal.celery import app

    hostname = _hostname(celery_worker)
    answers = app.control.inspect(destination=[hostname], timeout=5).registered() or {}
    assert hostname in answers, f"no answer from {hostname}: {answers}"
    registered = {name for name in answers[hostname] if name.startswith("importer.")}
    assert registered == PINNED_TASK_NAMES
