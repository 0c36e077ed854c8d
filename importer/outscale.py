"""A small client for the OUTSCALE API (api/v1), limited to what the portal needs.

It knows nothing of Django: it takes plain values, returns frozen dataclasses and raises one
exception type, `OscApiError`. Requests are signed like the official SDK (osc_sdk_python) does,
with OSC4-HMAC-SHA256, and sent through one `requests.Session` per process.

Nothing here retries: CreateSnapshot must never be sent twice blindly (the caller first looks the
snapshot up by ClientToken), and the caller decides whether a read is worth repeating from
`OscApiError.transient`.
"""

from __future__ import annotations

import hashlib
import hmac
import http.cookiejar
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

logger = logging.getLogger(__name__)

USER_AGENT = "snapshots-portal/0.1"
DEFAULT_REGION = "eu-west-2"
ALGORITHM = "OSC4-HMAC-SHA256"
SERVICE = "api"
# The exact value the SDK signs; the header sent must be byte-identical to it.
CONTENT_TYPE = "application/json; charset=utf-8"
SIGNED_HEADERS = "content-type;host;x-osc-date"
MAX_RESULTS_PER_PAGE = 1000
# 100 pages of 1000 is far beyond any account's snapshot count; more means the API is looping.
DEFAULT_MAX_PAGES = 100

IN_PROGRESS_STATES = frozenset({"in-queue", "pending", "importing", "queued", "pending/queued"})
COMPLETED_STATE = "completed"
FAILED_STATE = "error"

_REGION_RE = re.compile(r"^[a-z0-9][a-z0-9-]*[a-z0-9]$")
# A URL with a query string: the query of a pre-signed URL carries its signature.
_URL_QUERY_RE = re.compile(r"(?P<base>https?://[^\s?#\"'<>]*)\?[^\s#\"'<>]*", re.IGNORECASE)
# Signature-bearing parameters seen outside a URL (an echoed fragment, a URL-encoded URL).
_SIGNATURE_PARAM_RE = re.compile(
    r"(?P<key>(?:x-amz-signature|x-amz-credential|x-amz-security-token|signature"
    r"|awsaccesskeyid)(?:=|%3D))[^&\s\"'<>]+",
    re.IGNORECASE,
)
REDACTED = "[REDACTED]"
_MAX_DETAILS_CHARS = 500


def redact(text: str, secrets: Sequence[str] = ()) -> str:
    """Remove URL query strings, signature parameters and the given secrets from `text`."""
    for secret in secrets:
        # Short values would blank out ordinary words; real secrets are long.
        if len(secret) >= 8:
            text = text.replace(secret, REDACTED)
    text = _URL_QUERY_RE.sub(lambda m: f"{m.group('base')}?{REDACTED}", text)
    return _SIGNATURE_PARAM_RE.sub(lambda m: f"{m.group('key')}{REDACTED}", text)


class OscApiError(Exception):
    """Every failure of an OUTSCALE call: an API error, a bad answer or a transport problem.

    `transient` tells the caller whether the same request may succeed later: throttling (HTTP 429,
    codes 24 and 25), platform overload (HTTP 503, code 6), other 5xx, timeouts and connection
    errors. A read timeout on CreateSnapshot is transient but the snapshot may exist: reconcile
    by ClientToken before sending it again.
    """

    def __init__(
        self,
        *,
        action: str,
        http_status: int | None = None,
        code: str = "",
        type: str = "",  # the API's own field name, kept for callers
        details: str = "",
        request_id: str = "",
        transient: bool = False,
    ) -> None:
        self.action = action
        self.http_status = http_status
        self.code = code
        self.type = type
        self.details = redact(details)
        self.request_id = request_id
        self.transient = transient
        super().__init__(self._message())

    def _message(self) -> str:
        label = " ".join(part for part in (self.code, self.type) if part)
        if not label:
            label = f"HTTP {self.http_status}" if self.http_status is not None else "error"
        message = f"{self.action} failed: {label}"
        if self.details:
            message += f": {self.details}"
        if self.request_id:
            message += f" (request id {self.request_id})"
        return message

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only __init__ defeats the default pickling that Celery result backends use.
        return (_rebuild_error, (self._fields(),))

    def _fields(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "http_status": self.http_status,
            "code": self.code,
            "type": self.type,
            "details": self.details,
            "request_id": self.request_id,
            "transient": self.transient,
        }


def _rebuild_error(fields: dict[str, Any]) -> OscApiError:
    return OscApiError(**fields)


@dataclass(frozen=True)
class OscCredentials:
    access_key: str
    secret_key: str

    def __post_init__(self) -> None:
        if not self.access_key or not self.secret_key:
            raise ValueError("OUTSCALE access key and secret key must both be set")

    def __repr__(self) -> str:
        return f"OscCredentials(access_key={self.masked_access_key!r}, secret_key='***')"

    __str__ = __repr__

    @property
    def masked_access_key(self) -> str:
        return f"{self.access_key[:4]}…"


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
            snapshot_id=_as_str(data.get("SnapshotId")),
            state=_as_str(data.get("State")),
            progress=_as_int(data.get("Progress")) or 0,
            description=_as_str(data.get("Description")),
            volume_size_gib=_as_int(data.get("VolumeSize")),
            creation_date=_as_datetime(data.get("CreationDate")),
            client_token=_as_str(data.get("ClientToken")),
            account_id=_as_str(data.get("AccountId")),
            tags=_tags_from_api(data.get("Tags")),
        )


@dataclass(frozen=True)
class SnapshotPage:
    snapshots: list[Snapshot]
    next_page_token: str | None
    request_id: str


@dataclass(frozen=True)
class CreateSnapshotResult:
    # None when DryRun only checked permissions.
    snapshot: Snapshot | None
    request_id: str


def _as_str(value: Any) -> str:
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
        tag["Key"]: _as_str(tag.get("Value"))
        for tag in value
        if isinstance(tag, dict) and isinstance(tag.get("Key"), str)
    }


# --- Signing -------------------------------------------------------------------------------------


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode("utf-8"), hashlib.sha256).digest()


def sign_request(
    *,
    credentials: OscCredentials,
    region: str,
    host: str,
    path: str,
    body: bytes,
    now: datetime,
) -> dict[str, str]:
    """Headers that authenticate a POST of `body` to `path` on `host`, as osc_sdk_python signs.

    `host` is the bare host name: the SDK signs the URL's host without its port.
    """
    now = now.astimezone(UTC)
    osc_date = now.strftime("%Y%m%dT%H%M%SZ")
    day = now.strftime("%Y%m%d")
    scope = f"{day}/{region}/{SERVICE}/osc4_request"
    canonical_request = "\n".join(
        [
            "POST",
            path,
            "",  # the query string: the API takes everything in the body
            f"content-type:{CONTENT_TYPE}\nhost:{host}\nx-osc-date:{osc_date}\n",
            SIGNED_HEADERS,
            hashlib.sha256(body).hexdigest(),
        ]
    )
    string_to_sign = "\n".join(
        [ALGORITHM, osc_date, scope, hashlib.sha256(canonical_request.encode()).hexdigest()]
    )
    key = _hmac(f"OSC4{credentials.secret_key}".encode(), day)
    for part in (region, SERVICE, "osc4_request"):
        key = _hmac(key, part)
    signature = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
    return {
        "Content-Type": CONTENT_TYPE,
        "X-Osc-Date": osc_date,
        "Authorization": (
            f"{ALGORITHM} Credential={credentials.access_key}/{scope}, "
            f"SignedHeaders={SIGNED_HEADERS}, Signature={signature}"
        ),
    }


# --- Session -------------------------------------------------------------------------------------

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


# --- Client --------------------------------------------------------------------------------------


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


# --- Snapshot export tasks -------------------------------------------------------------------

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
            task_id=_as_str(data.get("TaskId")),
            snapshot_id=_as_str(data.get("SnapshotId")),
            state=_as_str(data.get("State")),
            progress=_as_int(data.get("Progress")) or 0,
            comment=redact(_as_str(data.get("Comment"))),
            disk_image_format=_as_str(osu.get("DiskImageFormat")),
            bucket=_as_str(osu.get("OsuBucket")),
            prefix=_as_str(osu.get("OsuPrefix")),
            tags=_tags_from_api(data.get("Tags")),
        )


@dataclass(frozen=True)
class SnapshotExportTaskPage:
    tasks: list[SnapshotExportTask]
    next_page_token: str | None
    request_id: str


@dataclass(frozen=True)
class CreateSnapshotExportTaskResult:
    task: SnapshotExportTask
    request_id: str
