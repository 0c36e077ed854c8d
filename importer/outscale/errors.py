from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

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
