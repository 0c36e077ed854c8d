"""What every OUTSCALE call shares: the process's Session and the reading of answers and errors."""

from __future__ import annotations

import http.cookiejar
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

from importer.core.metrics import api_call_observed, api_outcome
from importer.core.redaction import redact_strictly
from importer.outscale.errors import MAX_DETAILS_CHARS, OscApiError
from importer.outscale.resources import as_str
from importer.outscale.signing import OscCredentials, sign_request

# The client's call log: deployments filter on this name, kept from before the split.
logger = logging.getLogger("importer.outscale.client")


USER_AGENT = "snapshots-portal/0.1"


Made = TypeVar("Made")


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


class Transport:
    """One account's way to the API: signs each action, POSTs it, reads the answer or the error."""

    def __init__(
        self,
        *,
        credentials: OscCredentials,
        region: str,
        endpoint: str | None,
        connect_timeout: float,
        read_timeout: float,
        session: requests.Session | None,
        clock: Callable[[], datetime],
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
            raise ValueError(f"invalid OUTSCALE endpoint: {redact_strictly(endpoint)!r}")
        self.credentials = credentials
        self.region = region
        self.endpoint = endpoint
        self.timeout = (connect_timeout, read_timeout)
        self._host = parts.hostname
        self._base_path = parts.path
        self._session = session
        self._clock = clock

    def call(
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
            error = transport_error(action, exc, self.timeout, scrub)
            self._log_failure(action, error, started)
            # "from None": the requests exception holds the request, whose body may carry
            # the pre-signed URL.
            raise error from None
        elapsed_ms = (time.monotonic() - started) * 1000
        data = decode(text)
        request_id = request_id_of(data) if data is not None else ""
        request_id = request_id or response.headers.get("x-request-id", "")
        if response.status_code != 200 or data is None:
            content_type = response.headers.get("Content-Type", "").partition(";")[0][:60]
            error = http_error(
                action, response.status_code, content_type, text, data, request_id, scrub
            )
            self._log_failure(action, error, started)
            raise error
        api_call_observed(action, api_outcome(failed=False), elapsed_ms / 1000)
        logger.info(
            "OUTSCALE %s -> HTTP %s in %.0f ms (request id %s)",
            action,
            response.status_code,
            elapsed_ms,
            request_id or "-",
            extra={"request_id": request_id},
        )
        return data

    def call_for(
        self,
        action: str,
        body: Mapping[str, Any],
        key: str,
        parse: Callable[[Mapping[str, Any]], Made],
    ) -> tuple[Made, str]:
        """Send a call whose answer must hold an object under `key`: the object, parsed, and
        the request id. Never retried here.

        An answer without it raises `OscApiError`: the object may exist all the same, and the
        caller reconciles (by ClientToken, or by name) before sending the call again.
        """
        data = self.call(action, body)
        found = data.get(key)
        if not isinstance(found, dict):
            raise invalid_response(action, f"the answer has no {key}", data)
        return parse(found), request_id_of(data)

    def _log_failure(self, action: str, error: OscApiError, started: float) -> None:
        api_call_observed(
            action,
            api_outcome(failed=True, code=error.code, http_status=error.http_status),
            time.monotonic() - started,
        )
        logger.warning(
            "OUTSCALE %s -> %s in %.0f ms (request id %s, transient=%s): %s",
            action,
            error.http_status if error.http_status is not None else "no answer",
            (time.monotonic() - started) * 1000,
            error.request_id or "-",
            error.transient,
            error,
            extra={"request_id": error.request_id},
        )


def decode(text: str) -> dict[str, Any] | None:
    """The answer's JSON object, or None when the body is not one."""
    try:
        data = json.loads(text)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def request_id_of(data: Mapping[str, Any]) -> str:
    context = data.get("ResponseContext")
    return as_str(context.get("RequestId")) if isinstance(context, dict) else ""


def invalid_response(action: str, details: str, data: Mapping[str, Any]) -> OscApiError:
    """An HTTP 200 answer that lacks what it should hold.

    Transient: the action may have taken effect, and the same request may be answered well.
    """
    return OscApiError(
        action=action,
        http_status=200,
        type="InvalidResponse",
        details=details,
        request_id=request_id_of(data),
        transient=True,
    )


def http_error(
    action: str,
    status: int,
    content_type: str,
    text: str,
    data: dict[str, Any] | None,
    request_id: str,
    scrub: Sequence[str],
) -> OscApiError:
    """The error for an answer that is not HTTP 200, or not the API's JSON."""
    code = type_ = details = ""
    errors = data.get("Errors") if data is not None else None
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        first = errors[0]
        code, type_ = as_str(first.get("Code")), as_str(first.get("Type"))
        details = "; ".join(
            as_str(item.get("Details")) for item in errors if isinstance(item, dict)
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
        details=redact_strictly(details, scrub)[:MAX_DETAILS_CHARS],
        request_id=request_id,
        transient=status == 200 or status == 429 or status >= 500,
    )


def transport_error(
    action: str,
    exc: requests.RequestException,
    timeout: tuple[float, float],
    scrub: Sequence[str],
) -> OscApiError:
    """The error for a request that got no answer (timeouts, connection failures)."""
    connect, read = timeout
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
        action=action, type=kind, details=redact_strictly(details, scrub), transient=transient
    )


def _describe(exc: BaseException) -> str:
    # requests' messages name the host and the failure (refused, reset, DNS), never the body.
    message = str(exc)
    return " ".join(message.split())[:MAX_DETAILS_CHARS] or type(exc).__name__
