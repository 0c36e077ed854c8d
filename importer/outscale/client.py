from __future__ import annotations

import http.cookiejar
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

from importer.outscale.errors import _MAX_DETAILS_CHARS, OscApiError, redact
from importer.outscale.resources import (
    EXPORT_FORMATS,
    CreateSnapshotExportTaskResult,
    CreateSnapshotResult,
    Snapshot,
    SnapshotExportTask,
    SnapshotExportTaskPage,
    SnapshotPage,
    _as_str,
)
from importer.outscale.signing import OscCredentials, sign_request

logger = logging.getLogger(__name__)


USER_AGENT = "snapshots-portal/0.1"


DEFAULT_REGION = "eu-west-2"


MAX_RESULTS_PER_PAGE = 1000


# 100 pages of 1000 is far beyond any account's snapshot count; more means the API is looping.
DEFAULT_MAX_PAGES = 100


_REGION_RE = re.compile(r"^[a-z0-9][a-z0-9-]*[a-z0-9]$")


_session_lock = threading.Lock()


_session: requests.Session | None = None


_session_pid: int | None = None


def default_session() -> requests.Session:
    """The process's shared Session, made anew after a fork (Celery prefork workers).

    Sockets from a parent's pool must not be shared with children. The Session's own state is
    never changed after creation, so threads can share it.
    """
    global _session, _session_pid
    pid = os.getpid()
    with _session_lock:
        if _session is None or _session_pid != pid:
            session = requests.Session()
            # The API needs no cookies; refusing them keeps the shared Session stateless.
            session.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
            # max_retries=0: the adapter must not resend a CreateSnapshot on its own.
            adapter = HTTPAdapter(pool_connections=4, pool_maxsize=16, max_retries=0)
            session.mount("https://", adapter)
            session.mount("http://", adapter)
            _session, _session_pid = session, pid
        return _session


def _utcnow() -> datetime:
    return datetime.now(UTC)


class OscClient:
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
        if not _REGION_RE.match(region):
            raise ValueError(f"invalid OUTSCALE region name: {region!r}")
        if connect_timeout <= 0 or read_timeout <= 0:
            raise ValueError("timeouts must be positive")
        endpoint = (endpoint or f"https://api.{region}.outscale.com/api/v1").rstrip("/")
        parts = urlsplit(endpoint)
        if (
            parts.scheme not in ("http", "https")
            or not parts.hostname
            or parts.query
            or parts.fragment
            or "#" in endpoint
            or "@" in parts.netloc
        ):
            raise ValueError(f"invalid OUTSCALE endpoint: {redact(endpoint)!r}")
        self.credentials = credentials
        self.region = region
        self.endpoint = endpoint
        self.timeout = (connect_timeout, read_timeout)
        self._host = parts.hostname
        self._base_path = parts.path
        self._session = session
        self._clock = clock

    def __repr__(self) -> str:
        return f"OscClient(region={self.region!r}, endpoint={self.endpoint!r})"

    # --- Actions ---------------------------------------------------------------------------------

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
            data = self._call("CreateSnapshot", body, secrets=secrets)
        except OscApiError as error:
            if dry_run and error.type == "DryRunOperation":
                return CreateSnapshotResult(snapshot=None, request_id=error.request_id)
            raise
        snapshot = data.get("Snapshot")
        if isinstance(snapshot, dict):
            if dry_run:
                logger.warning("OUTSCALE CreateSnapshot returned a snapshot for a DryRun")
            return CreateSnapshotResult(
                snapshot=Snapshot.from_api(snapshot), request_id=_request_id(data)
            )
        if dry_run:
            return CreateSnapshotResult(snapshot=None, request_id=_request_id(data))
        raise OscApiError(
            action="CreateSnapshot",
            http_status=200,
            type="InvalidResponse",
            details="the answer has no Snapshot",
            request_id=_request_id(data),
            # The snapshot may exist: the caller reconciles by ClientToken, then may retry.
            transient=True,
        )

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
            return SnapshotPage(snapshots=[], next_page_token=None, request_id="")
        items, token, request_id = self._read_page(
            "ReadSnapshots", "Snapshots", filters, results_per_page, next_page_token
        )
        return SnapshotPage(
            snapshots=[Snapshot.from_api(item) for item in items],
            next_page_token=token,
            request_id=request_id,
        )

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
        data = self._call(action, body)
        raw = data.get(key)
        if raw is not None and not isinstance(raw, list):
            raise OscApiError(
                action=action,
                http_status=200,
                type="InvalidResponse",
                details=f"{key} is not a list",
                request_id=_request_id(data),
                transient=True,
            )
        token = data.get("NextPageToken")
        items = [item for item in raw or [] if isinstance(item, dict)]
        return items, token if isinstance(token, str) and token else None, _request_id(data)

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
        """Every matching snapshot, fetched page by page as the iteration goes.

        Stops when the API hands back a token it already gave (the rest would be repeats);
        raises `OscApiError` rather than silently truncating after `max_pages` pages.
        """
        seen_tokens: set[str] = set()
        token: str | None = None
        for _ in range(max_pages):
            page = self.read_snapshots_page(
                snapshot_ids=snapshot_ids,
                client_tokens=client_tokens,
                states=states,
                tags=tags,
                results_per_page=results_per_page,
                next_page_token=token,
            )
            yield from page.snapshots
            token = page.next_page_token
            if token is None:
                return
            if token in seen_tokens:
                logger.warning(
                    "OUTSCALE ReadSnapshots repeated a page token; stopping (request id %s)",
                    page.request_id,
                )
                return
            seen_tokens.add(token)
        raise OscApiError(
            action="ReadSnapshots",
            type="TooManyPages",
            details=f"more than {max_pages} pages of results",
        )

    def read_snapshots(
        self,
        *,
        snapshot_ids: Sequence[str] | None = None,
        client_tokens: Sequence[str] | None = None,
        states: Sequence[str] | None = None,
        tags: Mapping[str, str] | None = None,
        results_per_page: int = MAX_RESULTS_PER_PAGE,
        max_pages: int = DEFAULT_MAX_PAGES,
    ) -> list[Snapshot]:
        """Every matching snapshot, following NextPageToken to the end (see iter_snapshots)."""
        return list(
            self.iter_snapshots(
                snapshot_ids=snapshot_ids,
                client_tokens=client_tokens,
                states=states,
                tags=tags,
                results_per_page=results_per_page,
                max_pages=max_pages,
            )
        )

    def create_tags(self, *, resource_ids: Sequence[str], tags: Mapping[str, str]) -> str:
        """Add or overwrite tags; returns the request id."""
        data = self._call("CreateTags", _tags_body(resource_ids, tags))
        return _request_id(data)

    def delete_tags(self, *, resource_ids: Sequence[str], tags: Mapping[str, str]) -> str:
        """Remove tags matching key and value exactly; returns the request id."""
        data = self._call("DeleteTags", _tags_body(resource_ids, tags))
        return _request_id(data)

    def delete_snapshot(self, *, snapshot_id: str) -> str:
        """Delete a snapshot; returns the request id."""
        if not snapshot_id:
            raise ValueError("snapshot_id is required")
        data = self._call("DeleteSnapshot", {"SnapshotId": snapshot_id})
        return _request_id(data)

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
        data = self._call("CreateSnapshotExportTask", {"SnapshotId": snapshot_id, "OsuExport": osu})
        task = data.get("SnapshotExportTask")
        if not isinstance(task, dict):
            raise OscApiError(
                action="CreateSnapshotExportTask",
                http_status=200,
                type="InvalidResponse",
                details="the answer has no SnapshotExportTask",
                request_id=_request_id(data),
                transient=True,
            )
        return CreateSnapshotExportTaskResult(
            task=SnapshotExportTask.from_api(task), request_id=_request_id(data)
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
        filters: dict[str, list[str]] = {}
        for key, name, values in (
            ("TaskIds", "task_ids", task_ids),
            ("SnapshotIds", "snapshot_ids", snapshot_ids),
        ):
            if values is not None:
                items = _strings(name, values)
                if not items:
                    return SnapshotExportTaskPage(tasks=[], next_page_token=None, request_id="")
                filters[key] = items
        found, token, request_id = self._read_page(
            "ReadSnapshotExportTasks",
            "SnapshotExportTasks",
            filters,
            results_per_page,
            next_page_token,
        )
        return SnapshotExportTaskPage(
            tasks=[SnapshotExportTask.from_api(item) for item in found],
            next_page_token=token,
            request_id=request_id,
        )

    def read_snapshot_export_tasks(
        self,
        *,
        task_ids: Sequence[str] | None = None,
        snapshot_ids: Sequence[str] | None = None,
        max_pages: int = DEFAULT_MAX_PAGES,
    ) -> list[SnapshotExportTask]:
        """Every matching export task, following NextPageToken (a repeated token stops it)."""
        tasks: list[SnapshotExportTask] = []
        seen: set[str] = set()
        token: str | None = None
        for _ in range(max_pages):
            page = self.read_snapshot_export_tasks_page(
                task_ids=task_ids, snapshot_ids=snapshot_ids, next_page_token=token
            )
            tasks.extend(page.tasks)
            token = page.next_page_token
            if token is None or token in seen:
                return tasks
            seen.add(token)
        raise OscApiError(
            action="ReadSnapshotExportTasks",
            type="TooManyPages",
            details=f"more than {max_pages} pages of results",
        )

    def delete_export_task(self, *, task_id: str) -> str:
        """Cancel an export task that is still pending or active; returns the request id."""
        if not task_id:
            raise ValueError("task_id is required")
        data = self._call("DeleteExportTask", {"ExportTaskId": task_id})
        return _request_id(data)

    # --- Transport -------------------------------------------------------------------------------

    def _call(
        self, action: str, body: Mapping[str, Any], *, secrets: Sequence[str] = ()
    ) -> dict[str, Any]:
        """POST one action and return its JSON answer, or raise OscApiError.

        `secrets` are extra strings (the pre-signed URL's query) scrubbed from any error text.
        """
        payload = json.dumps(body).encode("utf-8")
        path = f"{self._base_path}/{action}"
        headers = sign_request(
            credentials=self.credentials,
            region=self.region,
            host=self._host,
            path=path,
            body=payload,
            now=self._clock(),
        )
        headers["User-Agent"] = USER_AGENT
        headers["Accept"] = "application/json"
        scrub = (*secrets, self.credentials.secret_key, self.credentials.access_key)
        session = self._session or default_session()
        logger.debug("OUTSCALE %s: sending", action)
        started = time.monotonic()
        try:
            response = session.post(
                f"{self.endpoint}/{action}",
                data=payload,
                headers=headers,
                timeout=self.timeout,
                allow_redirects=False,
            )
            # Read the body inside the try: a connection dropped mid-body surfaces here.
            text = response.text
        except requests.RequestException as exc:
            error = self._transport_error(action, exc, scrub)
            self._log_failure(action, error, started)
            # "from None": the requests exception holds the request, whose body may carry
            # the pre-signed URL.
            raise error from None
        elapsed_ms = (time.monotonic() - started) * 1000
        data = _decode(text)
        request_id = _request_id(data) if data is not None else ""
        request_id = request_id or response.headers.get("x-request-id", "")
        if response.status_code != 200 or data is None:
            content_type = response.headers.get("Content-Type", "").partition(";")[0][:60]
            error = _http_error(
                action, response.status_code, content_type, text, data, request_id, scrub
            )
            self._log_failure(action, error, started)
            raise error
        logger.info(
            "OUTSCALE %s -> HTTP %s in %.0f ms (request id %s)",
            action,
            response.status_code,
            elapsed_ms,
            request_id or "-",
        )
        return data

    def _transport_error(
        self, action: str, exc: requests.RequestException, scrub: Sequence[str]
    ) -> OscApiError:
        connect, read = self.timeout
        # ConnectTimeout is both a Timeout and a ConnectionError: test it first.
        if isinstance(exc, requests.ConnectTimeout):
            kind, details, transient = "ConnectTimeout", f"no connection within {connect}s", True
        elif isinstance(exc, requests.ReadTimeout):
            details = f"no answer within {read}s; the request may have been processed"
            kind, transient = "ReadTimeout", True
        elif isinstance(exc, requests.ConnectionError | requests.exceptions.ChunkedEncodingError):
            kind, details, transient = "ConnectionError", _describe(exc), True
        else:
            kind, details, transient = type(exc).__name__, _describe(exc), False
        return OscApiError(
            action=action, type=kind, details=redact(details, scrub), transient=transient
        )

    def _log_failure(self, action: str, error: OscApiError, started: float) -> None:
        logger.warning(
            "OUTSCALE %s -> %s in %.0f ms (request id %s, transient=%s): %s",
            action,
            error.http_status if error.http_status is not None else "no answer",
            (time.monotonic() - started) * 1000,
            error.request_id or "-",
            error.transient,
            error,
        )


def _http_error(
    action: str,
    status: int,
    content_type: str,
    text: str,
    data: dict[str, Any] | None,
    request_id: str,
    scrub: Sequence[str],
) -> OscApiError:
    code = type_ = details = ""
    errors = data.get("Errors") if data is not None else None
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        first = errors[0]
        code, type_ = _as_str(first.get("Code")), _as_str(first.get("Type"))
        details = "; ".join(
            _as_str(item.get("Details")) for item in errors if isinstance(item, dict)
        ).strip("; ")
    elif data is None:
        # Never echo the body: shown on pages, it would make the client a reader of whatever
        # answers at the endpoint. Its type and size say enough to tell an edge proxy's page.
        details = (
            f"the answer is not the OUTSCALE API's JSON ({content_type or 'no content type'}, "
            f"{len(text)} characters)"
            if text
            else "empty body"
        )
        if status == 200:
            type_ = "InvalidResponse"
    return OscApiError(
        action=action,
        http_status=status,
        code=code,
        type=type_,
        details=redact(details, scrub)[:_MAX_DETAILS_CHARS],
        request_id=request_id,
        transient=status == 200 or status == 429 or status >= 500,
    )


def _describe(exc: BaseException) -> str:
    # requests' messages name the host and the failure (refused, reset, DNS), never the body.
    message = str(exc)
    return " ".join(message.split())[:_MAX_DETAILS_CHARS] or type(exc).__name__


def _decode(text: str) -> dict[str, Any] | None:
    try:
        data = json.loads(text)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _request_id(data: Mapping[str, Any]) -> str:
    context = data.get("ResponseContext")
    return _as_str(context.get("RequestId")) if isinstance(context, dict) else ""


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
    filters: dict[str, list[str]] = {}
    for key, name, values in (
        ("SnapshotIds", "snapshot_ids", snapshot_ids),
        ("ClientTokens", "client_tokens", client_tokens),
        ("States", "states", states),
    ):
        if values is not None:
            items = _strings(name, values)
            if not items:
                return None
            filters[key] = items
    if tags:
        filters["Tags"] = [f"{key}={value}" for key, value in tags.items()]
    return filters


def _tags_body(resource_ids: Sequence[str], tags: Mapping[str, str]) -> dict[str, Any]:
    ids = _strings("resource_ids", resource_ids)
    if not ids or not tags:
        raise ValueError("resource_ids and tags must not be empty")
    return {
        "ResourceIds": ids,
        "Tags": [{"Key": key, "Value": value} for key, value in tags.items()],
    }
