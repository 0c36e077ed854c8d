"""The sandbox's in-memory cloud: snapshots per account and call counters, behind one lock.

Volumes and OMIs have stores of their own (sandbox/volumes.py, sandbox/images.py) that share
this lock, so that "no OMI uses this snapshot" and "delete it" happen as one step.
"""

from __future__ import annotations

import datetime as dt
import heapq
import itertools
import logging
import math
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from sandbox import errors

logger = logging.getLogger(__name__)

GIB = 1024**3
TERMINAL_STATES = frozenset({"completed", "error"})
# How long a volume stays `creating`, an OMI `pending`, a snapshot copy `pending`: long enough
# for a client to see the first state, short enough for tests.
DEFAULT_LIFECYCLE_SECONDS = 0.2


def api_date(when: dt.datetime) -> str:
    """A date-time as OUTSCALE writes it: `2024-05-01T12:00:00.000Z`."""
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def matches(filters: dict[str, Any], fields: dict[str, Any]) -> bool:
    """Whether a resource passes every filter, given its value (or set of values) per filter name.

    A list filter keeps the resource when one wanted value is among its values (OUTSCALE's "any
    of"); a boolean filter when the value is among them.
    """
    for name, wanted in filters.items():
        have = fields[name]
        values = set(have) if isinstance(have, set | frozenset | list | tuple) else {have}
        if isinstance(wanted, list):
            if not values & set(wanted):
                return False
        elif not any(type(value) is type(wanted) and value == wanted for value in values):
            return False
    return True


@dataclass
class Snapshot:
    snapshot_id: str
    account_id: str
    account_alias: str | None
    created_at: dt.datetime
    state: str
    description: str = ""
    client_token: str | None = None
    progress: int = 0
    volume_size: int | None = None
    volume_id: str | None = None
    snapshot_size: int | None = None
    # The pre-signed URL's signature is a secret: keep it out of reprs and the state dump.
    file_location: str | None = field(default=None, repr=False)
    tags: dict[str, str] = field(default_factory=dict)
    error_reason: str | None = None
    bytes_read: int = 0
    uncompressed_bytes: int = 0
    # Who else may create volumes from it (UpdateSnapshot's PermissionsToCreateVolume).
    permitted_account_ids: list[str] = field(default_factory=list)
    public: bool = False
    cancelled: threading.Event = field(default_factory=threading.Event, repr=False)

    def readable_by(self, account_id: str) -> bool:
        return (
            account_id == self.account_id or account_id in self.permitted_account_ids or self.public
        )

    def to_api(self) -> dict[str, Any]:
        """The snapshot in the exact shape of outscale.yaml's `Snapshot` schema."""
        body: dict[str, Any] = {
            "AccountId": self.account_id,
            "CreationDate": api_date(self.created_at),
            "Description": self.description,
            "PermissionsToCreateVolume": {
                "AccountIds": list(self.permitted_account_ids),
                "GlobalPermission": self.public,
            },
            "Progress": self.progress,
            "SnapshotId": self.snapshot_id,
            "State": self.state,
            "Tags": [{"Key": key, "Value": value} for key, value in self.tags.items()],
        }
        if self.account_alias:
            body["AccountAlias"] = self.account_alias
        if self.client_token is not None:
            body["ClientToken"] = self.client_token
        if self.volume_id is not None:
            body["VolumeId"] = self.volume_id
        if self.volume_size is not None:
            body["VolumeSize"] = self.volume_size
        return body

    def to_state(self) -> dict[str, Any]:
        """The API shape plus what tests want to know about the import (never the URL)."""
        return {
            **self.to_api(),
            "SnapshotSize": self.snapshot_size,
            "Imported": self.file_location is not None,
            "ErrorReason": self.error_reason,
            "BytesRead": self.bytes_read,
            "UncompressedBytes": self.uncompressed_bytes,
        }


def volume_size_gib(snapshot_size: int) -> int:
    return max(1, math.ceil(snapshot_size / GIB))


class Lifecycle:
    """Delayed state changes (a volume `creating` then `available`...), run by one timer thread.

    One thread and a heap rather than a timer per resource: tests make a thousand copies.
    """

    def __init__(self, seconds: float = DEFAULT_LIFECYCLE_SECONDS) -> None:
        self._default_seconds = seconds
        self.seconds = seconds
        self._wakeup = threading.Condition()
        self._due: list[tuple[float, int, Callable[[], None]]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None
        self._stopping = False

    def later(self, change: Callable[[], None]) -> None:
        """Runs `change` in `seconds`; with 0, here and now, so the answer shows the end state."""
        if self.seconds <= 0:
            change()
            return
        with self._wakeup:
            if self._stopping:
                return
            due = time.monotonic() + self.seconds
            heapq.heappush(self._due, (due, next(self._order), change))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="sb-lifecycle", daemon=True)
                self._thread.start()
            self._wakeup.notify()

    def set_seconds(self, seconds: float | None) -> None:
        self.seconds = self._default_seconds if seconds is None else max(0.0, seconds)

    def reset(self) -> None:
        """Forgets the changes still due (their resources are gone) and the pace set by tests."""
        with self._wakeup:
            self._due.clear()
            self.seconds = self._default_seconds

    def stop(self) -> None:
        with self._wakeup:
            self._stopping = True
            self._due.clear()
            self._wakeup.notify()

    def _next(self) -> Callable[[], None] | None:
        with self._wakeup:
            while not self._stopping:
                wait = self._due[0][0] - time.monotonic() if self._due else None
                if wait is not None and wait <= 0:
                    return heapq.heappop(self._due)[2]
                self._wakeup.wait(wait)
            return None

    def _run(self) -> None:
        while (change := self._next()) is not None:
            # Outside the condition's lock: changes take the state's lock, and `later` may be
            # called while holding it.
            try:
                change()
            except Exception as exc:
                logger.error("a lifecycle change crashed: %s", type(exc).__name__)


class CloudState:
    """Every mutation and read goes through one re-entrant lock: simple and safe."""

    def __init__(self, lifecycle_seconds: float = DEFAULT_LIFECYCLE_SECONDS) -> None:
        self.lock = threading.RLock()
        self.lifecycle = Lifecycle(lifecycle_seconds)
        self._snapshots: dict[str, Snapshot] = {}
        self._by_token: dict[tuple[str, str], str] = {}
        self.calls: Counter[str] = Counter()
        self.create_calls_by_token: Counter[str] = Counter()
        # So tests can assert "exactly one volume / OMI was asked for", retries included.
        self.create_volume_calls_by_token: Counter[str] = Counter()
        self.create_image_calls_by_name: Counter[str] = Counter()
        # How many imports an account may have running at once (None: no limit), and the
        # most each account ever had: tests assert a client never went past its own limit.
        self.concurrent_imports_limit: int | None = None
        self.max_concurrent_imports: Counter[str] = Counter()

    def count_call(self, action: str, body: dict[str, Any]) -> None:
        with self.lock:
            self.calls[action] += 1
            token = body.get("ClientToken")
            if action == "CreateSnapshot" and isinstance(token, str):
                self.create_calls_by_token[token] += 1
            if action == "CreateVolume" and isinstance(token, str):
                self.create_volume_calls_by_token[token] += 1
            name = body.get("ImageName")
            if action == "CreateImage" and isinstance(name, str):
                self.create_image_calls_by_name[name] += 1

    def create_snapshot(
        self, account_id: str, account_alias: str | None, client_token: str | None, **fields: Any
    ) -> tuple[Snapshot, bool]:
        """Return (snapshot, created); a known ClientToken returns the existing snapshot."""
        with self.lock:
            if client_token is not None:
                existing_id = self._by_token.get((account_id, client_token))
                if existing_id in self._snapshots:
                    return self._snapshots[existing_id], False
            snapshot = Snapshot(
                snapshot_id=self._new_id(),
                account_id=account_id,
                account_alias=account_alias,
                created_at=dt.datetime.now(dt.UTC),
                client_token=client_token,
                **fields,
            )
            self._snapshots[snapshot.snapshot_id] = snapshot
            if client_token is not None:
                self._by_token[(account_id, client_token)] = snapshot.snapshot_id
            return snapshot, True

    def start_import(
        self, account_id: str, account_alias: str | None, client_token: str | None, **fields: Any
    ) -> tuple[Snapshot, bool]:
        """`create_snapshot` for an import, refused while the account has as many imports
        running as its limit allows (a known ClientToken still returns its snapshot)."""
        with self.lock:
            if client_token is not None and (account_id, client_token) in self._by_token:
                return self.create_snapshot(account_id, account_alias, client_token, **fields)
            running = self.running_imports(account_id) + 1
            limit = self.concurrent_imports_limit
            if limit is not None and running > limit:
                raise errors.too_many_concurrent_imports(limit)
            created = self.create_snapshot(account_id, account_alias, client_token, **fields)
            self.max_concurrent_imports[account_id] = max(
                self.max_concurrent_imports[account_id], running
            )
            return created

    def running_imports(self, account_id: str) -> int:
        """The account's imports the API is still working on."""
        with self.lock:
            return sum(
                1
                for snapshot in self._snapshots.values()
                if snapshot.account_id == account_id
                and snapshot.file_location is not None
                and snapshot.state not in TERMINAL_STATES
            )

    def get(self, account_id: str, snapshot_id: str) -> Snapshot | None:
        with self.lock:
            snapshot = self._snapshots.get(snapshot_id)
            return snapshot if snapshot and snapshot.account_id == account_id else None

    def get_readable(self, account_id: str, snapshot_id: str) -> Snapshot | None:
        """One's own snapshot, or one shared with the account (or with everyone)."""
        with self.lock:
            snapshot = self._snapshots.get(snapshot_id)
            return snapshot if snapshot and snapshot.readable_by(account_id) else None

    def readable(
        self, account_id: str, keep: Callable[[Snapshot], bool] = lambda _: True
    ) -> list[Snapshot]:
        """What ReadSnapshots lists: own snapshots and those others let the account use."""
        with self.lock:
            found = [s for s in self._snapshots.values() if s.readable_by(account_id) and keep(s)]
        return sorted(found, key=lambda s: (s.created_at, s.snapshot_id))

    def change_permissions(
        self, snapshot: Snapshot, *, grant: bool, account_ids: list[str], everyone: bool
    ) -> None:
        """Adds (grant) or removes permissions; `everyone` makes it public, or private again."""
        with self.lock:
            if grant:
                for account_id in account_ids:
                    if account_id not in snapshot.permitted_account_ids:
                        snapshot.permitted_account_ids.append(account_id)
            else:
                removed = set(account_ids)
                snapshot.permitted_account_ids = [
                    a for a in snapshot.permitted_account_ids if a not in removed
                ]
            if everyone:
                snapshot.public = grant

    def delete(self, snapshot: Snapshot) -> None:
        with self.lock:
            snapshot.cancelled.set()
            self._snapshots.pop(snapshot.snapshot_id, None)
            if snapshot.client_token is not None:
                self._by_token.pop((snapshot.account_id, snapshot.client_token), None)

    def list(
        self, account_id: str, keep: Callable[[Snapshot], bool] = lambda _: True
    ) -> list[Snapshot]:
        """Snapshots of one account, by ascending creation date and ID as OUTSCALE pages them."""
        with self.lock:
            found = [s for s in self._snapshots.values() if s.account_id == account_id and keep(s)]
        return sorted(found, key=lambda s: (s.created_at, s.snapshot_id))

    def update(self, snapshot: Snapshot, **changes: Any) -> None:
        with self.lock:
            for name, value in changes.items():
                setattr(snapshot, name, value)

    def all(self) -> Iterable[Snapshot]:
        with self.lock:
            return list(self._snapshots.values())

    def reset(self) -> None:
        with self.lock:
            for snapshot in self._snapshots.values():
                snapshot.cancelled.set()
            self._snapshots.clear()
            self._by_token.clear()
            self.calls.clear()
            self.create_calls_by_token.clear()
            self.create_volume_calls_by_token.clear()
            self.create_image_calls_by_name.clear()
            self.concurrent_imports_limit = None
            self.max_concurrent_imports.clear()
        self.lifecycle.reset()

    def dump(self, account_ids: Iterable[str]) -> dict[str, Any]:
        with self.lock:
            per_account: dict[str, list[dict[str, Any]]] = {aid: [] for aid in account_ids}
            for snapshot in sorted(self._snapshots.values(), key=lambda s: s.created_at):
                per_account.setdefault(snapshot.account_id, []).append(snapshot.to_state())
            return {
                "snapshots": per_account,
                "calls": dict(self.calls),
                "create_snapshot_calls_by_client_token": dict(self.create_calls_by_token),
                "create_volume_calls_by_client_token": dict(self.create_volume_calls_by_token),
                "create_image_calls_by_name": dict(self.create_image_calls_by_name),
                "concurrent_imports_limit": self.concurrent_imports_limit,
                "max_concurrent_imports": dict(self.max_concurrent_imports),
            }

    def _new_id(self) -> str:
        while True:
            snapshot_id = f"snap-{secrets.token_hex(4)}"
            if snapshot_id not in self._snapshots:
                return snapshot_id
