from __future__ import annotations

import logging
from typing import Any

from django.db import DatabaseError, models, transaction
from django.db.models import F
from django.utils import timezone

logger = logging.getLogger(__name__)


# An API request id is a UUID (36 characters); the rest of a longer one is noise.
REQUEST_ID_LENGTH = 64


def clip_to_fields(model: type[models.Model], values: dict[str, Any]) -> dict[str, Any]:
    """`values` with every string cut to its field's max_length.

    The API's strings (states, ids, comments, error texts) have no length the portal controls;
    PostgreSQL refuses a string longer than its column, which would abort the whole write.
    """
    return {
        name: clip_text(model, name, value) if isinstance(value, str) else value
        for name, value in values.items()
    }


def clip_text(model: type[models.Model], name: str, value: str) -> str:
    """`value` cut to the max_length of the field `name` of `model` (if it has one)."""
    limit = getattr(model._meta.get_field(name), "max_length", None)
    return value[:limit] if limit else value


def note_once(event_model: type[models.Model], owner: str, rows: list[Any], message: str) -> None:
    """Adds `message` to each row's history (its `event_model`, whose foreign key to the row is
    `owner`), once: not again until the row has moved on since. A failure is only logged: a note
    must never stop a poll."""
    message = clip_text(event_model, "message", message)
    manager = event_model._default_manager
    try:
        with transaction.atomic():
            noted = set(
                manager.filter(
                    **{f"{owner}__in": rows, "message": message},
                    at__gte=F(f"{owner}__updated_at"),
                ).values_list(f"{owner}_id", flat=True)
            )
            manager.bulk_create(
                event_model(**{owner: row}, state=row.state, message=message)
                for row in rows
                if row.pk not in noted
            )
    except DatabaseError:
        logger.exception("Could not note a poll problem on %d rows", len(rows))


def with_request_id(request_ids: list[str], request_id: str) -> list[str]:
    """The job's request ids plus one more, cut to a request id's length."""
    return [*request_ids, request_id[:REQUEST_ID_LENGTH]] if request_id else list(request_ids)


class WorkerHeartbeat(models.Model):
    """One row per worker host name, touched by a periodic task: shows the workers are alive."""

    hostname = models.CharField(max_length=255, unique=True)
    seen_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.hostname} at {self.seen_at:%Y-%m-%d %H:%M:%S}"
