from __future__ import annotations

from typing import Any

from importer.core.redaction import redact_strictly

# Error details are cut to this length: they are shown on pages and stored on job rows.
MAX_DETAILS_CHARS = 500
# OUTSCALE's throttling answers: the whole platform (6), the account (24), one call (25).
THROTTLING_CODES = frozenset({"6", "24", "25"})
# How OUTSCALE types a quota: on CreateSnapshot, too many snapshot imports at once.
QUOTA_TYPE = "TooManyResources"


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
        self.details = redact_strictly(details)
        self.request_id = request_id
        self.transient = transient
        super().__init__(self._message())

    @property
    def throttling(self) -> bool:
        """The API asks the whole account to slow down, not only this request: a throttling
        answer (codes 6, 24, 25, or HTTP 429), or CreateSnapshot refused because the account
        has too many snapshots on the way."""
        if self.code in THROTTLING_CODES or self.http_status == 429:
            return True
        return self.action == "CreateSnapshot" and self.type.startswith(QUOTA_TYPE)

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
