from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from importer.core.redaction import redact_strictly

IN_PROGRESS_STATES = frozenset({"in-queue", "pending", "importing", "queued", "pending/queued"})


COMPLETED_STATE = "completed"


FAILED_STATE = "error"


Item = TypeVar("Item")


@dataclass(frozen=True)
class Page(Generic[Item]):
    """One page of a Read* call; `next_page_token` is None on the last page."""

    items: list[Item]
    next_page_token: str | None
    request_id: str


@dataclass(frozen=True)
class Snapshot:
    snapshot_id: str
    state: str
    progress: int
    description: str
    volume_size_gib: int | None
    creation_date: datetime | None
    client_token: str
    account_id: str
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def is_in_progress(self) -> bool:
        return self.state in IN_PROGRESS_STATES

    @property
    def is_completed(self) -> bool:
        return self.state == COMPLETED_STATE

    @property
    def is_failed(self) -> bool:
        return self.state == FAILED_STATE

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> Snapshot:
        return cls(
            snapshot_id=as_str(data.get("SnapshotId")),
            state=as_str(data.get("State")),
            progress=_as_int(data.get("Progress")) or 0,
            description=as_str(data.get("Description")),
            volume_size_gib=_as_int(data.get("VolumeSize")),
            creation_date=_as_datetime(data.get("CreationDate")),
            client_token=as_str(data.get("ClientToken")),
            account_id=as_str(data.get("AccountId")),
            tags=_tags_from_api(data.get("Tags")),
        )


class SnapshotPage(Page[Snapshot]):
    @property
    def snapshots(self) -> list[Snapshot]:
        return self.items


@dataclass(frozen=True)
class CreateSnapshotResult:
    # None when DryRun only checked permissions.
    snapshot: Snapshot | None
    request_id: str


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


EXPORT_FORMATS = ("qcow2", "raw")


EXPORT_IN_PROGRESS_STATES = frozenset({"pending", "active", "pending/queued", "queued"})


@dataclass(frozen=True)
class SnapshotExportTask:
    task_id: str
    snapshot_id: str
    state: str
    progress: int
    comment: str
    disk_image_format: str
    bucket: str
    prefix: str
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def is_in_progress(self) -> bool:
        return self.state in EXPORT_IN_PROGRESS_STATES

    @property
    def is_completed(self) -> bool:
        return self.state == "completed"

    @property
    def is_failed(self) -> bool:
        return self.state == "failed"

    @property
    def is_cancelled(self) -> bool:
        return self.state == "cancelled"

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> SnapshotExportTask:
        osu = data.get("OsuExport")
        osu = osu if isinstance(osu, dict) else {}
        return cls(
            task_id=as_str(data.get("TaskId")),
            snapshot_id=as_str(data.get("SnapshotId")),
            state=as_str(data.get("State")),
            progress=_as_int(data.get("Progress")) or 0,
            comment=redact_strictly(as_str(data.get("Comment"))),
            disk_image_format=as_str(osu.get("DiskImageFormat")),
            bucket=as_str(osu.get("OsuBucket")),
            prefix=as_str(osu.get("OsuPrefix")),
            tags=_tags_from_api(data.get("Tags")),
        )


class SnapshotExportTaskPage(Page[SnapshotExportTask]):
    @property
    def tasks(self) -> list[SnapshotExportTask]:
        return self.items


@dataclass(frozen=True)
class CreateSnapshotExportTaskResult:
    task: SnapshotExportTask
    request_id: str
