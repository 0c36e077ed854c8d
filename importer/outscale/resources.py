from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, ClassVar, Generic, Self, TypeVar, cast

from importer.core.redaction import redact_strictly

IN_PROGRESS_STATES = frozenset({"in-queue", "pending", "importing", "queued", "pending/queued"})


COMPLETED_STATE = "completed"


FAILED_STATE = "error"


Item = TypeVar("Item")


# What a snapshot ID looks like: a path segment that is not one names no snapshot.
SNAPSHOT_ID = re.compile(r"^snap-[0-9a-f]{8,32}$")


def as_str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return None
    return None


def _as_progress(value: Any) -> int:
    return _as_int(value) or 0


def _as_datetime(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _tags_from_api(value: Any) -> dict[str, str]:
    if not isinstance(value, list):
        return {}
    return {
        tag["Key"]: as_str(tag.get("Value"))
        for tag in value
        if isinstance(tag, dict) and isinstance(tag.get("Key"), str)
    }


# The key of a field's metadata that says where `ApiObject.from_api` finds it.
_API = "api"


def api(*path: str, parse: Callable[[Any], Any] = as_str) -> dict[str, Any]:
    """A field's metadata: the key of its value in the API object (keys into nested objects),
    and what makes the field of that value, whatever it is (missing or odd: an empty value)."""
    return {_API: (path, parse)}


class ApiObject:
    """A frozen dataclass read from an API object, each field from where its `api(...)` says."""

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> Self:
        values: dict[str, Any] = {}
        for item in fields(cast(Any, cls)):
            path, parse = item.metadata[_API]
            value: Any = data
            for key in path:
                value = value.get(key) if isinstance(value, Mapping) else None
            values[item.name] = parse(value)
        return cls(**values)


class Stateful:
    """A resource whose `state` says how far it is; its class names the states of each stage."""

    state: str
    in_progress_states: ClassVar[frozenset[str]]
    failed_states: ClassVar[frozenset[str]]

    @property
    def is_in_progress(self) -> bool:
        return self.state in self.in_progress_states

    @property
    def is_failed(self) -> bool:
        return self.state in self.failed_states


@dataclass(frozen=True)
class Page(Generic[Item]):
    """One page of a Read* call; `next_page_token` is None on the last page."""

    items: list[Item]
    next_page_token: str | None
    request_id: str


@dataclass(frozen=True)
class SnapshotPermissions:
    """Who may create volumes from a snapshot (its PermissionsToCreateVolume)."""

    # Accounts it is shared with, besides its owner.
    account_ids: tuple[str, ...] = ()
    # Every account may use it.
    public: bool = False

    @classmethod
    def from_api(cls, data: Any) -> SnapshotPermissions:
        if not isinstance(data, dict):
            return cls()
        accounts = data.get("AccountIds")
        accounts = accounts if isinstance(accounts, list) else []
        return cls(
            account_ids=tuple(item for item in accounts if isinstance(item, str) and item),
            public=data.get("GlobalPermission") is True,
        )


@dataclass(frozen=True)
class Snapshot(ApiObject, Stateful):
    in_progress_states: ClassVar[frozenset[str]] = IN_PROGRESS_STATES
    failed_states: ClassVar[frozenset[str]] = frozenset({FAILED_STATE})

    snapshot_id: str = field(metadata=api("SnapshotId"))
    state: str = field(metadata=api("State"))
    progress: int = field(metadata=api("Progress", parse=_as_progress))
    description: str = field(metadata=api("Description"))
    volume_size_gib: int | None = field(metadata=api("VolumeSize", parse=_as_int))
    creation_date: datetime | None = field(metadata=api("CreationDate", parse=_as_datetime))
    client_token: str = field(metadata=api("ClientToken"))
    account_id: str = field(metadata=api("AccountId"))
    tags: dict[str, str] = field(default_factory=dict, metadata=api("Tags", parse=_tags_from_api))
    permissions: SnapshotPermissions = field(
        default_factory=SnapshotPermissions,
        metadata=api("PermissionsToCreateVolume", parse=SnapshotPermissions.from_api),
    )

    @property
    def is_completed(self) -> bool:
        return self.state == COMPLETED_STATE


class SnapshotPage(Page[Snapshot]):
    @property
    def snapshots(self) -> list[Snapshot]:
        return self.items


@dataclass(frozen=True)
class CreateSnapshotResult:
    # None when DryRun only checked permissions.
    snapshot: Snapshot | None
    request_id: str


EXPORT_FORMATS = ("qcow2", "raw")


EXPORT_IN_PROGRESS_STATES = frozenset({"pending", "active", "pending/queued", "queued"})


def _redacted(value: Any) -> str:
    return redact_strictly(as_str(value))


@dataclass(frozen=True)
class SnapshotExportTask(ApiObject, Stateful):
    in_progress_states: ClassVar[frozenset[str]] = EXPORT_IN_PROGRESS_STATES
    failed_states: ClassVar[frozenset[str]] = frozenset({"failed"})

    task_id: str = field(metadata=api("TaskId"))
    snapshot_id: str = field(metadata=api("SnapshotId"))
    state: str = field(metadata=api("State"))
    progress: int = field(metadata=api("Progress", parse=_as_progress))
    comment: str = field(metadata=api("Comment", parse=_redacted))
    disk_image_format: str = field(metadata=api("OsuExport", "DiskImageFormat"))
    bucket: str = field(metadata=api("OsuExport", "OsuBucket"))
    prefix: str = field(metadata=api("OsuExport", "OsuPrefix"))
    tags: dict[str, str] = field(default_factory=dict, metadata=api("Tags", parse=_tags_from_api))

    @property
    def is_completed(self) -> bool:
        return self.state == "completed"

    @property
    def is_cancelled(self) -> bool:
        return self.state == "cancelled"


class SnapshotExportTaskPage(Page[SnapshotExportTask]):
    @property
    def tasks(self) -> list[SnapshotExportTask]:
        return self.items


@dataclass(frozen=True)
class CreateSnapshotExportTaskResult:
    task: SnapshotExportTask
    request_id: str
