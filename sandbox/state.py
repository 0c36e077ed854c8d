"""The sandbox's in-memory cloud: snapshots per account and call counters, behind one lock."""

from __future__ import annotations

import datetime as dt
import math
import secrets
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

GIB = 1024**3
TERMINAL_STATES = frozenset({"completed", "error"})


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
    cancelled: threading.Event = field(default_factory=threading.Event, repr=False)

    def to_api(self) -> dict[str, Any]:
        """The snapshot in the exact shape of outscale.yaml's `Snapshot` schema."""
        body: dict[str, Any] = {
            "AccountId": self.account_id,
            "CreationDate": self.created_at.isoformat(timespec="milliseconds").replace(
                "+00:00", "Z"
            ),
            "Description": self.description,
            "PermissionsToCreateVolume": {"AccountIds": [], "GlobalPermission": False},
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


class CloudState:
    """Every mutation and read goes through one re-entrant lock: simple and safe."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self._snapshots: dict[str, Snapshot] = {}
        self._by_token: dict[tuple[str, str], str] = {}
        self.calls: Counter[str] = Counter()
        self.create_calls_by_token: Counter[str] = Counter()

    def count_call(self, action: str, body: dict[str, Any]) -> None:
        with self.lock:
            self.calls[action] += 1
            token = body.get("ClientToken")
            if action == "CreateSnapshot" and isinstance(token, str):
                self.create_calls_by_token[token] += 1

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

    def get(self, account_id: str, snapshot_id: str) -> Snapshot | None:
        with self.lock:
            snapshot = self._snapshots.get(snapshot_id)
            return snapshot if snapshot and snapshot.account_id == account_id else None

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

    def dump(self, account_ids: Iterable[str]) -> dict[str, Any]:
        with self.lock:
            per_account: dict[str, list[dict[str, Any]]] = {aid: [] for aid in account_ids}
            for snapshot in sorted(self._snapshots.values(), key=lambda s: s.created_at):
                per_account.setdefault(snapshot.account_id, []).append(snapshot.to_state())
            return {
                "snapshots": per_account,
                "calls": dict(self.calls),
                "create_snapshot_calls_by_client_token": dict(self.create_calls_by_token),
            }

    def _new_id(self) -> str:
        while True:
            snapshot_id = f"snap-{secrets.token_hex(4)}"
            if snapshot_id not in self._snapshots:
                return snapshot_id
