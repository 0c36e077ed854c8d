from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, ParamSpec, TypeVar
from urllib.parse import urlsplit

import requests

from importer.outscale.errors import OscApiError
from importer.outscale.resources import (
    EXPORT_FORMATS,
    CreateSnapshotExportTaskResult,
    CreateSnapshotResult,
    Page,
    Snapshot,
    SnapshotExportTask,
    SnapshotExportTaskPage,
    SnapshotPage,
)
from importer.outscale.signing import OscCredentials
from importer.outscale.transport import Transport, invalid_response, request_id_of

logger = logging.getLogger(__name__)


DEFAULT_REGION = "eu-west-2"


MAX_RESULTS_PER_PAGE = 1000


# 100 pages of 1000 is far beyond any account's snapshot count; more means the API is looping.
DEFAULT_MAX_PAGES = 100


Item = TypeVar("Item")
Query = ParamSpec("Query")


def _every_item_of(iterate: Callable[Query, Iterator[Item]]) -> Callable[Query, list[Item]]:
    """The listing method that returns at once every item `iterate` yields, with its parameters."""

    def read_all(*args: Query.args, **kwargs: Query.kwargs) -> list[Item]:
        return list(iterate(*args, **kwargs))

    return read_all


def _utcnow() -> datetime:
    return datetime.now(UTC)


class OscClient:
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
        snapshot_ids: Sequence[str] | None = None,
        client_tokens: Sequence[str] | None = None,
        states: Sequence[str] | None = None,
        tags: Mapping[str, str] | None = None,
        results_per_page: int = MAX_RESULTS_PER_PAGE,
        next_page_token: str | None = None,
    ) -> SnapshotPage:
        """One page of ReadSnapshots.

        An empty `snapshot_ids`, `client_tokens` or `states` matches nothing and sends no
        request: the API would ignore an empty filter and list every snapshot.
        """
        if not 1 <= results_per_page <= MAX_RESULTS_PER_PAGE:
            raise ValueError(f"results_per_page must be between 1 and {MAX_RESULTS_PER_PAGE}")
        filters = _snapshot_filters(
            snapshot_ids=snapshot_ids, client_tokens=client_tokens, states=states, tags=tags
        )
        if filters is None:
            return SnapshotPage(items=[], next_page_token=None, request_id="")
        items, token, request_id = self._read_page(
            "ReadSnapshots", "Snapshots", filters, results_per_page, next_page_token
        )
        return SnapshotPage([Snapshot.from_api(item) for item in items], token, request_id)

    def _read_page(
        self,
        action: str,
        key: str,
        filters: Mapping[str, Any],
        results_per_page: int,
        next_page_token: str | None,
    ) -> tuple[list[dict[str, Any]], str | None, str]:
        """One page of a Read* call: its items under `key`, the next token, the request id."""
        body: dict[str, Any] = {"ResultsPerPage": results_per_page}
        if filters:
            body["Filters"] = dict(filters)
        if next_page_token:
            body["NextPageToken"] = next_page_token
        data = self._transport.call(action, body)
        raw = data.get(key)
        if raw is not None and not isinstance(raw, list):
            raise invalid_response(action, f"{key} is not a list", data)
        token = data.get("NextPageToken")
        items = [item for item in raw or [] if isinstance(item, dict)]
        return items, token if isinstance(token, str) and token else None, request_id_of(data)

    def iter_snapshots(
        self,
        *,
        snapshot_ids: Sequence[str] | None = None,
        client_tokens: Sequence[str] | None = None,
        states: Sequence[str] | None = None,
        tags: Mapping[str, str] | None = None,
        results_per_page: int = MAX_RESULTS_PER_PAGE,
        max_pages: int = DEFAULT_MAX_PAGES,
    ) -> Iterator[Snapshot]:
        """Every matching snapshot, page by page as the iteration goes (see _follow_pages)."""

        def read_page(token: str | None) -> SnapshotPage:
            return self.read_snapshots_page(
                snapshot_ids=snapshot_ids,
                client_tokens=client_tokens,
                states=states,
                tags=tags,
                results_per_page=results_per_page,
                next_page_token=token,
            )

        return _follow_pages(read_page, action="ReadSnapshots", max_pages=max_pages)

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
        if not snapshot_id:
            raise ValueError("snapshot_id is required")
        data = self._transport.call("DeleteSnapshot", {"SnapshotId": snapshot_id})
        return request_id_of(data)

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
        data = self._transport.call(
            "CreateSnapshotExportTask", {"SnapshotId": snapshot_id, "OsuExport": osu}
        )
        task = data.get("SnapshotExportTask")
        if not isinstance(task, dict):
            raise invalid_response(
                "CreateSnapshotExportTask", "the answer has no SnapshotExportTask", data
            )
        return CreateSnapshotExportTaskResult(
            task=SnapshotExportTask.from_api(task), request_id=request_id_of(data)
        )

    def read_snapshot_export_tasks_page(
        self,
        *,
        task_ids: Sequence[str] | None = None,
        snapshot_ids: Sequence[str] | None = None,
        results_per_page: int = MAX_RESULTS_PER_PAGE,
        next_page_token: str | None = None,
    ) -> SnapshotExportTaskPage:
        """One page of ReadSnapshotExportTasks; an empty id list matches nothing (no request)."""
        filters = _filters(
            ("TaskIds", "task_ids", task_ids), ("SnapshotIds", "snapshot_ids", snapshot_ids)
        )
        if filters is None:
            return SnapshotExportTaskPage(items=[], next_page_token=None, request_id="")
        items, token, request_id = self._read_page(
            "ReadSnapshotExportTasks",
            "SnapshotExportTasks",
            filters,
            results_per_page,
            next_page_token,
        )
        tasks = [SnapshotExportTask.from_api(item) for item in items]
        return SnapshotExportTaskPage(tasks, token, request_id)

    def read_snapshot_export_tasks(
        self,
        *,
        task_ids: Sequence[str] | None = None,
        snapshot_ids: Sequence[str] | None = None,
        max_pages: int = DEFAULT_MAX_PAGES,
    ) -> list[SnapshotExportTask]:
        """Every matching export task, following NextPageToken (see _follow_pages)."""

        def read_page(token: str | None) -> SnapshotExportTaskPage:
            return self.read_snapshot_export_tasks_page(
                task_ids=task_ids, snapshot_ids=snapshot_ids, next_page_token=token
            )

        return list(_follow_pages(read_page, action="ReadSnapshotExportTasks", max_pages=max_pages))

    def delete_export_task(self, *, task_id: str) -> str:
        """Cancel an export task that is still pending or active; returns the request id."""
        if not task_id:
            raise ValueError("task_id is required")
        data = self._transport.call("DeleteExportTask", {"ExportTaskId": task_id})
        return request_id_of(data)


def _query_of(url: str) -> tuple[str, ...]:
    query = urlsplit(url).query
    return (query,) if query else ()


def _strings(name: str, values: Sequence[str]) -> list[str]:
    # A bare string is a Sequence[str] too, and would be sent one character per item.
    if isinstance(values, str):
        raise TypeError(f"{name} must be a sequence of strings, not a string")
    return list(values)


def _snapshot_filters(
    *,
    snapshot_ids: Sequence[str] | None,
    client_tokens: Sequence[str] | None,
    states: Sequence[str] | None,
    tags: Mapping[str, str] | None,
) -> dict[str, list[str]] | None:
    """The FiltersSnapshot object, or None when an empty list means nothing can match."""
    filters = _filters(
        ("SnapshotIds", "snapshot_ids", snapshot_ids),
        ("ClientTokens", "client_tokens", client_tokens),
        ("States", "states", states),
    )
    if filters is not None and tags:
        filters["Tags"] = [f"{key}={value}" for key, value in tags.items()]
    return filters


def _filters(*entries: tuple[str, str, Sequence[str] | None]) -> dict[str, list[str]] | None:
    """Filters from (API key, argument name, values) entries; None when one is an empty list.

    An empty list matches nothing, but the API would ignore the empty filter and list everything.
    """
    filters: dict[str, list[str]] = {}
    for key, name, values in entries:
        if values is not None:
            items = _strings(name, values)
            if not items:
                return None
            filters[key] = items
    return filters


def _tags_body(resource_ids: Sequence[str], tags: Mapping[str, str]) -> dict[str, Any]:
    ids = _strings("resource_ids", resource_ids)
    if not ids or not tags:
        raise ValueError("resource_ids and tags must not be empty")
    return {
        "ResourceIds": ids,
        "Tags": [{"Key": key, "Value": value} for key, value in tags.items()],
    }


def _follow_pages(
    read_page: Callable[[str | None], Page[Item]], *, action: str, max_pages: int
) -> Iterator[Item]:
    """Every item of a listing, page by page as the iteration goes.

    Stops when the API hands back a token it already gave (the rest would be repeats);
    raises `OscApiError` rather than silently truncating after `max_pages` pages.
    """
    seen_tokens: set[str] = set()
    token: str | None = None
    for _ in range(max_pages):
        page = read_page(token)
        yield from page.items
        token = page.next_page_token
        if token is None:
            return
        if token in seen_tokens:
            logger.warning(
                "OUTSCALE %s repeated a page token; stopping (request id %s)",
                action,
                page.request_id,
            )
            return
        seen_tokens.add(token)
    raise OscApiError(
        action=action, type="TooManyPages", details=f"more than {max_pages} pages of results"
    )
