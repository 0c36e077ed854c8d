"""Structured logs: with `PORTAL_LOG_FORMAT=json`, one JSON object a line (time, level, logger,
message, and the job id, team and API request id where there is one), for a log pipeline.

The job and team come from the context a task runs in (`log_context`, `bind`), the request id
from a record's `extra`. Every record has passed the redaction filter first (settings'
LOGGING): its message and exception text hold no pre-signed URL signature; the context's values
are redacted here too.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from types import MappingProxyType

from importer.core.redaction import redact_text

CONTEXT_FIELDS = ("job_id", "team", "request_id")

# Never changed in place: each context is a new mapping, so a task's fields never leak into
# another's. Outside any `log_context` it is this one, which `bind` leaves alone.
_OUTSIDE: Mapping[str, str] = MappingProxyType({})
_context: ContextVar[Mapping[str, str]] = ContextVar("portal_log_context", default=_OUTSIDE)


def _cleaned(fields: dict[str, object]) -> dict[str, str]:
    return {name: str(value) for name, value in fields.items() if value not in (None, "")}


@contextmanager
def log_context(**fields: object) -> Iterator[None]:
    """Every record logged inside carries these fields (a task's job id, say)."""
    token = _context.set({**_context.get(), **_cleaned(fields)})
    try:
        yield
    finally:
        _context.reset(token)


def bind(**fields: object) -> None:
    """Adds fields to the current `log_context`, once they are known (the job's team, once
    loaded). Outside one it does nothing: the fields would stay on every later line of the
    thread (a service called directly, not by its task)."""
    current = _context.get()
    if current is not _OUTSIDE:
        _context.set({**current, **_cleaned(fields)})


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, str] = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        context = _context.get()
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None) or context.get(name)
            if value:
                entry[name] = redact_text(str(value))
        # The redaction filter has rendered (and redacted) the traceback into exc_text.
        if record.exc_text:
            entry["exception"] = record.exc_text
        elif record.exc_info:
            entry["exception"] = redact_text(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False)
