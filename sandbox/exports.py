"""Snapshot export tasks that really happen: the exported image is written to the object store.

CreateSnapshotExportTask starts a task `pending`, then `active` while the image is "copied"
(paced by `seconds`, so progress and cancellation can be watched), then `completed` once the
gzip-compressed image is in the bucket under `{OsuPrefix}{SnapshotId}-{suffix}.{format}.gz`
(the naming OUTSCALE's exports use). A missing bucket ends the task `failed` with a `Comment`,
as the real service reports it; DeleteExportTask cancels a `pending` or `active` task.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import gzip
import logging
import random
import secrets
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from sandbox import errors, qcow2
from sandbox.state import GIB, CloudState

logger = logging.getLogger(__name__)

Body = dict[str, Any]
FORMATS = ("qcow2", "raw")
CANCELLABLE = frozenset({"pending", "active"})
_TICK = 0.05


class Store(Protocol):
    def bucket_exists(self, bucket: str) -> bool: ...

    def put_object(
        self, key: str, data: bytes, bucket: str = ..., content_type: str = ...
    ) -> None: ...


@dataclass
class ExportTask:
    task_id: str
    account_id: str
    snapshot_id: str
    disk_image_format: str
    bucket: str
    prefix: str
    volume_size_gib: int
    created_at: dt.datetime
    state: str = "pending"
    progress: int = 0
    comment: str = ""
    object_key: str = ""
    cancelled: threading.Event = field(default_factory=threading.Event, repr=False)

    def to_api(self) -> Body:
        """The task in the exact shape of outscale.yaml's `SnapshotExportTask` schema."""
        osu: Body = {"DiskImageFormat": self.disk_image_format, "OsuBucket": self.bucket}
        if self.prefix:
            osu["OsuPrefix"] = self.prefix
        return {
            "Comment": self.comment,
            "OsuExport": osu,
            "Progress": self.progress,
            "SnapshotId": self.snapshot_id,
            "State": self.state,
            "Tags": [],
            "TaskId": self.task_id,
        }

    def to_state(self) -> Body:
        return {**self.to_api(), "ObjectKey": self.object_key, "AccountId": self.account_id}


class Exporter:
    """Runs export tasks on a small pool of threads, each lasting at least `seconds`."""

    def __init__(self, state: CloudState, store: Store | None, *, seconds: float = 0.0) -> None:
        self._state = state
        self._store = store
        self.seconds = seconds
        self._default_seconds = seconds
        self._lock = threading.RLock()
        self._tasks: dict[str, ExportTask] = {}
        self._stopping = threading.Event()
        self._executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="sb-export")

    def create(
        self, account_id: str, snapshot_id: str, volume_size_gib: int, osu: Body
    ) -> ExportTask:
        task = ExportTask(
            task_id=f"snap-export-{secrets.token_hex(4)}",
            account_id=account_id,
            snapshot_id=snapshot_id,
            disk_image_format=osu["DiskImageFormat"],
            bucket=osu["OsuBucket"],
            prefix=osu.get("OsuPrefix", ""),
            volume_size_gib=volume_size_gib,
            created_at=dt.datetime.now(dt.UTC),
            comment=f"Export of snapshot {snapshot_id}",
        )
        with self._lock:
            self._tasks[task.task_id] = task
        self._executor.submit(self._run, task)
        return task

    def find(self, account_id: str, keep: Callable[[ExportTask], bool]) -> list[ExportTask]:
        with self._lock:
            found = [t for t in self._tasks.values() if t.account_id == account_id and keep(t)]
        return sorted(found, key=lambda t: (t.created_at, t.task_id))

    def cancel(self, account_id: str, task_id: str) -> None:
        with self._lock:
            task = self._tasks.get(task_id)
            if task is None or task.account_id != account_id:
                raise _no_such_task(task_id)
            if task.state not in CANCELLABLE:
                raise errors.OscError(
                    409,
                    "6003",
                    "InvalidState",
                    f"invalid-state: The export task '{task_id}' is in state '{task.state}'.",
                )
            task.cancelled.set()
            task.state = "cancelled"
            task.comment = "Export task cancelled by the user"

    def set_seconds(self, seconds: float | None) -> None:
        self.seconds = self._default_seconds if seconds is None else seconds

    def reset(self) -> None:
        with self._lock:
            for task in self._tasks.values():
                task.cancelled.set()
            self._tasks.clear()
        self.seconds = self._default_seconds

    def stop(self) -> None:
        self._stopping.set()
        self._executor.shutdown(wait=False, cancel_futures=True)

    def dump(self) -> list[Body]:
        with self._lock:
            return [task.to_state() for task in self._tasks.values()]

    # --- The work ------------------------------------------------------------------------------

    def _update(self, task: ExportTask, **changes: Any) -> bool:
        """Applies `changes` unless the task was cancelled meanwhile; says whether it did."""
        with self._lock:
            if task.cancelled.is_set():
                return False
            for name, value in changes.items():
                setattr(task, name, value)
            return True

    def _run(self, task: ExportTask) -> None:
        try:
            self._export(task)
        except Exception as exc:
            logger.error("export %s crashed: %s", task.task_id, type(exc).__name__)
            self._update(task, state="failed", comment=f"Internal error ({type(exc).__name__})")

    def _export(self, task: ExportTask) -> None:
        started = dt.datetime.now(dt.UTC)
        self._wait(0.1 * self.seconds)
        if not self._update(task, state="active"):
            return
        if self._store is None or not self._store.bucket_exists(task.bucket):
            self._update(
                task,
                state="failed",
                comment=f"The bucket '{task.bucket}' does not exist or is not yours.",
            )
            return
        while not task.cancelled.is_set() and not self._stopping.is_set():
            elapsed = (dt.datetime.now(dt.UTC) - started).total_seconds()
            share = 1.0 if self.seconds <= 0 else min(elapsed / self.seconds, 1.0)
            if share >= 1.0:
                break
            self._update(task, progress=min(99, int(share * 100)))
            self._wait(_TICK)
        if task.cancelled.is_set() or self._stopping.is_set():
            return
        key = f"{task.prefix}{task.snapshot_id}-{secrets.token_hex(4)}.{task.disk_image_format}.gz"
        self._store.put_object(
            key, _image(task), bucket=task.bucket, content_type="application/gzip"
        )
        self._update(task, state="completed", progress=100, object_key=key)

    def _wait(self, seconds: float) -> None:
        if seconds > 0:
            self._stopping.wait(seconds)


def _image(task: ExportTask) -> bytes:
    size = task.volume_size_gib * GIB
    if task.disk_image_format == "qcow2":
        return qcow2.build_gzipped_image(size)
    # A raw image as large as the volume would not fit a test; a few clusters stand for it.
    noise = random.Random(task.snapshot_id)  # noqa: S311 - filler bytes, not a secret
    return gzip.compress(noise.randbytes(6 * 64 * 1024), mtime=0)


def _no_such_task(task_id: str) -> errors.OscError:
    return errors.OscError(
        400,
        "5098",
        "InvalidResource",
        f"no-such-export-task: The export task '{task_id}' does not exist.",
    )


# --- The API actions -----------------------------------------------------------------------


def create_snapshot_export_task(exporter: Exporter, context: Any, body: Body) -> Body:
    osu = body["OsuExport"]
    _check_osu_export(osu)
    snapshot_id = body["SnapshotId"]
    if not snapshot_id.startswith("snap-"):
        raise errors.invalid_id_prefix(snapshot_id)
    snapshot = context.state.get(context.account.account_id, snapshot_id)
    if snapshot is None:
        raise errors.no_such_snapshot(snapshot_id)
    if snapshot.state != "completed":
        raise errors.invalid_snapshot_state(snapshot_id, snapshot.state)
    if body.get("DryRun"):
        return {}
    task = exporter.create(context.account.account_id, snapshot_id, snapshot.volume_size or 1, osu)
    return {"SnapshotExportTask": task.to_api()}


def _check_osu_export(osu: Body) -> None:
    allowed = {
        "DiskImageFormat": str, "OsuApiKey": dict, "OsuBucket": str, "OsuManifestUrl": str,
        "OsuPrefix": str,
    }  # fmt: skip
    for name, value in osu.items():
        if name not in allowed:
            raise errors.unknown_parameter(f"OsuExport.{name}")
        if not isinstance(value, allowed[name]):
            raise errors.invalid_type(f"OsuExport.{name}", allowed[name].__name__)
    for name in ("DiskImageFormat", "OsuBucket"):
        if name not in osu:
            raise errors.missing_parameter(f"OsuExport.{name}")
    if osu["DiskImageFormat"] not in FORMATS:
        raise errors.invalid_value("OsuExport.DiskImageFormat", "must be qcow2 or raw")
    if not osu["OsuBucket"]:
        raise errors.invalid_value("OsuExport.OsuBucket", "must not be empty")


def read_snapshot_export_tasks(exporter: Exporter, context: Any, body: Body) -> Body:
    filters = body.get("Filters", {})
    for name, value in filters.items():
        if name not in ("SnapshotIds", "TaskIds"):
            raise errors.unknown_parameter(f"Filters.{name}")
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise errors.invalid_type(f"Filters.{name}", "array of strings")
    task_ids = set(filters["TaskIds"]) if "TaskIds" in filters else None
    snapshot_ids = set(filters["SnapshotIds"]) if "SnapshotIds" in filters else None

    def keep(task: ExportTask) -> bool:
        return (task_ids is None or task.task_id in task_ids) and (
            snapshot_ids is None or task.snapshot_id in snapshot_ids
        )

    found = exporter.find(context.account.account_id, keep)
    per_page = body.get("ResultsPerPage", 100)
    if not 1 <= per_page <= 1000:
        raise errors.invalid_value("ResultsPerPage", "must be between 1 and 1000")
    start = _page_start(body.get("NextPageToken"))
    reply: Body = {"SnapshotExportTasks": [t.to_api() for t in found[start : start + per_page]]}
    if start + per_page < len(found):
        reply["NextPageToken"] = _page_token(start + per_page)
    return reply


def _page_token(offset: int) -> str:
    return base64.b64encode(f"export-offset:{offset}".encode()).decode()


def _page_start(token: str | None) -> int:
    if token is None:
        return 0
    try:
        text = base64.b64decode(token, validate=True).decode()
        prefix, _, offset = text.partition(":")
        if prefix != "export-offset":
            raise ValueError(prefix)
        return max(0, int(offset))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise errors.invalid_value("NextPageToken", "is not a valid page token") from None


def delete_export_task(exporter: Exporter, context: Any, body: Body) -> Body:
    task_id = body["ExportTaskId"]
    if not body.get("DryRun"):
        exporter.cancel(context.account.account_id, task_id)
    return {}


PARAMS: dict[str, dict[str, str]] = {
    "CreateSnapshotExportTask": {
        "DryRun": "boolean", "OsuExport": "object", "SnapshotId": "string",
    },
    "ReadSnapshotExportTasks": {
        "DryRun": "boolean", "Filters": "object", "NextPageToken": "string",
        "ResultsPerPage": "integer",
    },
    "DeleteExportTask": {"DryRun": "boolean", "ExportTaskId": "string"},
}  # fmt: skip
REQUIRED: dict[str, tuple[str, ...]] = {
    "CreateSnapshotExportTask": ("OsuExport", "SnapshotId"),
    "DeleteExportTask": ("ExportTaskId",),
}
HANDLERS: dict[str, Callable[[Exporter, Any, Body], Body]] = {
    "CreateSnapshotExportTask": create_snapshot_export_task,
    "ReadSnapshotExportTasks": read_snapshot_export_tasks,
    "DeleteExportTask": delete_export_task,
}
