from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypedDict, Unpack
from urllib.parse import urlsplit

import requests

from importer.outscale.errors import OscApiError
from importer.outscale.lifecycle import LifecycleCalls
from importer.outscale.listing import (
    DEFAULT_MAX_PAGES,
    MAX_RESULTS_PER_PAGE,
    ListingAction,
    _every_item_of,
    _strings,
)
from importer.outscale.resources import (
    EXPORT_FORMATS,
    CreateSnapshotExportTaskResult,
    CreateSnapshotResult,
    Snapshot,
    SnapshotExportTask,
    SnapshotExportTaskPage,
    SnapshotPage,
)
from importer.outscale.signing import OscCredentials
from importer.outscale.transport import Transport, invalid_response, request_id_of

logger = logging.getLogger(__name__)


DEFAULT_REGION = "eu-west-2"


# The page limits live in listing.py; they stay importable from here (paginator.py does).
__all__ = ["DEFAULT_MAX_PAGES", "DEFAULT_REGION", "MAX_RESULTS_PER_PAGE", "OscClient"]


def _utcnow() -> datetime:
    return datetime.now(UTC)


class SnapshotFilters(TypedDict, total=False):
    """ReadSnapshots' filters (see SNAPSHOTS); each one left out, or None, filters nothing."""

    snapshot_ids: Sequence[str] | None
    client_tokens: Sequence[str] | None
    states: Sequence[str] | None
    # Snapshots with every one of these tags; an empty mapping filters nothing.
    tags: Mapping[str, str] | None


SNAPSHOTS = ListingAction(
    "ReadSnapshots",
    "Snapshots",
    Snapshot.from_api,
    SnapshotPage,
    filters=(
        ("SnapshotIds", "snapshot_ids"),
        ("ClientTokens", "client_tokens"),
        ("States", "states"),
    ),
    tagged=True,
)


class SnapshotExportTaskFilters(TypedDict, total=False):
    """ReadSnapshotExportTasks' filters; each one left out, or None, filters nothing."""

    task_ids: Sequence[str] | None
    snapshot_ids: Sequence[str] | None


SNAPSHOT_EXPORT_TASKS = ListingAction(
    "ReadSnapshotExportTasks",
    "SnapshotExportTasks",
    SnapshotExportTask.from_api,
    SnapshotExportTaskPage,
    filters=(("TaskIds", "task_ids"), ("SnapshotIds", "snapshot_ids")),
)


class OscClient(LifecycleCalls):
    """The OUTSCALE API actions the portal uses: plain values in, typed results out.

    Every failure raises `OscApiError`; nothing is retried here.
    """

    def __init__(
        self,
        *,
        credentials: OscCredentials,
        region: str = DEFAULT_REGION,
        endpoint: str | None = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        session: requests.Session | None = None,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self._transport = Transport(
            credentials=credentials,
            region=region,
            endpoint=endpoint,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            session=session,
            clock=clock,
        )
        self.credentials = credentials
        self.region = region
        self.endpoint = self._transport.endpoint
        self.timeout = self._transport.timeout

    def __repr__(self) -> str:
        return f"OscClient(region={self.region!r}, endpoint={self.endpoint!r})"

    def create_snapshot(
        self,
        *,
        file_location: str,
        snapshot_size: int,
        description: str | None = None,
        client_token: str | None = None,
        dry_run: bool = False,
    ) -> CreateSnapshotResult:
        """Import a snapshot from the pre-signed URL `file_location` (never retried here).

        With `dry_run`, OUTSCALE only checks permissions: a success answer without a Snapshot
        (or an EC2-style DryRunOperation error) returns `snapshot=None`; a refusal raises
        `OscApiError`. Should the API create a snapshot anyway, it is returned, not hidden.
        """
        if snapshot_size <= 0:
            raise ValueError("snapshot_size must be a positive number of bytes")
        body: dict[str, Any] = {"FileLocation": file_location, "SnapshotSize": snapshot_size}
        if description is not None:
            body["Description"] = description
        if client_token is not None:
            body["ClientToken"] = client_token
        if dry_run:
            body["DryRun"] = True
        secrets = _query_of(file_location)
        try:
            data = self._transport.call("CreateSnapshot", body, secrets=secrets)
        except OscApiError as error:
            if dry_run and error.type == "DryRunOperation":
                return CreateSnapshotResult(snapshot=None, request_id=error.request_id)
            raise
        snapshot = data.get("Snapshot")
        if isinstance(snapshot, dict):
            if dry_run:
                logger.warning("OUTSCALE CreateSnapshot returned a snapshot for a DryRun")
            return CreateSnapshotResult(
                snapshot=Snapshot.from_api(snapshot), request_id=request_id_of(data)
            )
        if dry_run:
            return CreateSnapshotResult(snapshot=None, request_id=request_id_of(data))
        # The snapshot may exist: the caller reconciles by ClientToken, then may retry.
        raise invalid_response("CreateSnapshot", "the answer has no Snapshot", data)

    def read_snapshots_page(
        self,
        *,
        results_per_page: int = MAX_RESULTS_PER_PAGE,
        next_page_token: str | None = None,
        **filters: Unpack[SnapshotFilters],
    ) -> SnapshotPage:
        """One page of ReadSnapshots.

        An empty `snapshot_ids`, `client_tokens` or `states` matches nothing and sends no
        request: the API would ignore an empty filter and list every snapshot.
        """
        return SNAPSHOTS.read_page(self._transport, filters, results_per_page, next_page_token)

    def iter_snapshots(
        self,
        *,
        results_per_page: int = MAX_RESULTS_PER_PAGE,
        max_pages: int = DEFAULT_MAX_PAGES,
        **filters: Unpack[SnapshotFilters],
    ) -> Iterator[Snapshot]:
        """Every matching snapshot, page by page as the iteration goes (see _follow_pages)."""
        return SNAPSHOTS.iterate(
            self.read_snapshots_page,
            filters,
            max_pages=max_pages,
            results_per_page=results_per_page,
        )

    # Every matching snapshot, following NextPageToken to the end, as one list.
    read_snapshots = _every_item_of(iter_snapshots)

    def create_tags(self, *, resource_ids: Sequence[str], tags: Mapping[str, str]) -> str:
        """Add or overwrite tags; returns the request id."""
        data = self._transport.call("CreateTags", _tags_body(resource_ids, tags))
        return request_id_of(data)

    def delete_tags(self, *, resource_ids: Sequence[str], tags: Mapping[str, str]) -> str:
        """Remove tags matching key and value exactly; returns the request id."""
        data = self._transport.call("DeleteTags", _tags_body(resource_ids, tags))
        return request_id_of(data)

    def delete_snapshot(self, *, snapshot_id: str) -> str:
        """Delete a snapshot; returns the request id."""
        return _delete(self._transport, "DeleteSnapshot", "SnapshotId", "snapshot_id", snapshot_id)

    def create_snapshot_export_task(
        self,
        *,
        snapshot_id: str,
        bucket: str,
        disk_image_format: str,
        prefix: str = "",
    ) -> CreateSnapshotExportTaskResult:
        """Start exporting a snapshot to an OOS bucket of the account (never retried here).

        The API takes no ClientToken here: a caller that lost the answer must look for the task
        (`read_snapshot_export_tasks(snapshot_ids=...)`) before sending it again.
        """
        if not snapshot_id or not bucket:
            raise ValueError("snapshot_id and bucket are required")
        if disk_image_format not in EXPORT_FORMATS:
            raise ValueError(f"disk_image_format must be one of {', '.join(EXPORT_FORMATS)}")
        osu: dict[str, Any] = {"DiskImageFormat": disk_image_format, "OsuBucket": bucket}
        if prefix:
            osu["OsuPrefix"] = prefix
        task, request_id = self._transport.call_for(
            "CreateSnapshotExportTask",
            {"SnapshotId": snapshot_id, "OsuExport": osu},
            "SnapshotExportTask",
            SnapshotExportTask.from_api,
        )
        return CreateSnapshotExportTaskResult(task=task, request_id=request_id)

    def read_snapshot_export_tasks_page(
        self,
        *,
        results_per_page: int = MAX_RESULTS_PER_PAGE,
        next_page_token: str | None = None,
        **filters: Unpack[SnapshotExportTaskFilters],
    ) -> SnapshotExportTaskPage:
        """One page of ReadSnapshotExportTasks; an empty id list matches nothing (no request)."""
        return SNAPSHOT_EXPORT_TASKS.read_page(
            self._transport, filters, results_per_page, next_page_token
        )

    def read_snapshot_export_tasks(
        self,
        *,
        max_pages: int = DEFAULT_MAX_PAGES,
        **filters: Unpack[SnapshotExportTaskFilters],
    ) -> list[SnapshotExportTask]:
        """Every matching export task, following NextPageToken (see _follow_pages)."""
        tasks = SNAPSHOT_EXPORT_TASKS.iterate(
            self.read_snapshot_export_tasks_page, filters, max_pages=max_pages
        )
        return list(tasks)

    def delete_export_task(self, *, task_id: str) -> str:
        """Cancel an export task that is still pending or active; returns the request id."""
        return _delete(self._transport, "DeleteExportTask", "ExportTaskId", "task_id", task_id)


def _query_of(url: str) -> tuple[str, ...]:
    query = urlsplit(url).query
    return (query,) if query else ()


def _delete(transport: Transport, action: str, key: str, name: str, resource_id: str) -> str:
    """Delete the resource whose id, the caller's argument `name`, the API takes as `key`;
    returns the request id."""
    if not resource_id:
        raise ValueError(f"{name} is required")
    return request_id_of(transport.call(action, {key: resource_id}))


def _tags_body(resource_ids: Sequence[str], tags: Mapping[str, str]) -> dict[str, Any]:
    ids = _strings("resource_ids", resource_ids)
    if not ids or not tags:
        raise ValueError("resource_ids and tags must not be empty")
    return {
        "ResourceIds": ids,
        "Tags": [{"Key": key, "Value": value} for key, value in tags.items()],
    }
