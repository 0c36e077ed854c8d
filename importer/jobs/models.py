from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, ClassVar, Generic, Self, TypeVar

from django.db import DatabaseError, models, transaction
from django.db.models import F
from django.utils import timezone

from importer.audit.chain import record

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


# --- The tracked job: every piece of work the API finishes later ------------------------------

# The states every tracked job shares (each kind names them in its own TextChoices, with its
# own labels, and may add more): the values are what the conditional transitions compare.
QUEUED = "queued"
SUBMITTING = "submitting"
IN_PROGRESS = "in_progress"
COMPLETED = "completed"
ERROR = "error"


class JobEvent(models.Model):
    """One line of a job's history, shown on its page. A kind of job adds the foreign key to
    its job (related name `events`) and `state` with its own choices."""

    at = models.DateTimeField(default=timezone.now)
    message = models.CharField(max_length=2500)

    class Meta:
        abstract = True

    def __str__(self) -> str:
        return f"{self.at:%H:%M:%S} {getattr(self, 'state', '')}: {self.message}"


class TrackedJob(models.Model):
    """A row that is the source of truth for one piece of work, moved by one conditional UPDATE.

    A kind of job declares `state` (its TextChoices), an event model with a foreign key whose
    related name is `events`, the audit action its transitions record (`audit_action`) and the
    team they are recorded for (`audit_team`); then every change of state goes through
    `transition`, so two workers can never both win the same step.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    error_details = models.CharField(max_length=2000, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(default=timezone.now, db_index=True)

    state: Any
    events: Any
    audit_action: ClassVar[str]
    terminal_states: ClassVar[tuple[str, ...]] = (COMPLETED, ERROR)

    class Meta:
        abstract = True

    @property
    def audit_team(self) -> Any:
        return getattr(self, "team")  # noqa: B009 - declared by each kind of job

    @property
    def is_terminal(self) -> bool:
        return self.state in self.terminal_states

    def audit(self, action: str, *, actor: Any, ip: str | None, **details: Any) -> None:
        """Records in the audit log what a person did to this job (in the caller's transaction)."""
        record(
            action=action,
            actor=actor,
            team=self.audit_team,
            target=str(self.pk),
            ip=ip,
            details=details,
        )

    def record_creation(
        self, action: str, *, actor: Any, ip: str | None, message: str, **details: Any
    ) -> None:
        """The new job's first line of history and its audit entry, in the caller's transaction."""
        self.events.create(
            state=self.state, message=clip_text(self.events.model, "message", message)
        )
        self.audit(action, actor=actor, ip=ip, **details)

    def transition(self, *, from_states: tuple[str, ...], message: str, **fields: Any) -> bool:
        """Sets `fields` if the row is still in one of `from_states`, with its event and its
        audit entry in the same transaction. False when another worker (or a user) moved first.
        """
        now = timezone.now()
        fields.setdefault("updated_at", now)
        model = type(self)
        fields = clip_to_fields(model, fields)
        message = clip_text(self.events.model, "message", message)
        with transaction.atomic():
            # Every kind of job declares `state`; the abstract base cannot name it to the stubs.
            rows = model._default_manager.filter(pk=self.pk, state__in=from_states)  # type: ignore[misc]
            if rows.update(**fields) != 1:
                return False
            state = fields.get("state", self.state)
            self.events.create(state=state, message=message, at=now)
            record(
                action=self.audit_action,
                team=self.audit_team,
                target=str(self.pk),
                details={"state": state, "message": message},
            )
        self.refresh_from_db()
        return True


Job = TypeVar("Job", bound="SubmittedJob")


class SubmittedJobQuerySet(models.QuerySet[Job], Generic[Job]):
    def unfinished(self) -> Self:
        return self.exclude(state__in=self.model.terminal_states)

    def lost_in_queue(self, *, now: datetime, after: timedelta) -> Self:
        """Queued for long with no worker taking them: the broker lost or never got the task."""
        return self.filter(state=QUEUED, enqueued_at__lt=now - after)

    def stuck_submitting(self, *, now: datetime, after: timedelta) -> Self:
        """Claimed by a worker that died (or hung past its hard time limit) mid-submission."""
        return self.filter(state=SUBMITTING, claimed_at__lt=now - after)


class SubmittedJob(TrackedJob):
    """A tracked job a worker sends to the API: claimed, sent, retried while the API's problem
    is passing, and followed until the API says it has ended. `noun` names it in its history."""

    progress = models.PositiveSmallIntegerField(default=0)
    attempts = models.PositiveSmallIntegerField(default=0)
    error_code = models.CharField(max_length=64, blank=True)
    error_type = models.CharField(max_length=128, blank=True)
    error_request_id = models.CharField(max_length=64, blank=True)
    request_ids = models.JSONField(default=list, blank=True)
    enqueued_at = models.DateTimeField(default=timezone.now)
    claimed_at = models.DateTimeField(null=True, blank=True)
    submitted_at = models.DateTimeField(null=True, blank=True)

    noun: ClassVar[str]

    class Meta:
        abstract = True

    def with_request_id(self, request_id: str) -> list[str]:
        return with_request_id(self.request_ids, request_id)

    @classmethod
    def submit_new(
        cls,
        *,
        audit: str,
        actor: Any,
        ip: str | None,
        message: str,
        details: dict[str, Any],
        send: Callable[[Any], object],
        **fields: Any,
    ) -> Self:
        """Saves a new job with its first line of history and its audit entry in one
        transaction, then hands its id to `send` (the queue) once that has committed: a
        worker never looks for a row that is not there yet, and a rollback sends nothing."""
        with transaction.atomic():
            job = cls._default_manager.create(**fields)
            job.record_creation(audit, actor=actor, ip=ip, message=message, **details)
            transaction.on_commit(lambda: send(job.pk))
        return job

    def claim_for_submission(self) -> bool:
        return self.transition(
            from_states=(QUEUED,),
            message=f"A worker is sending the {self.noun} to the API.",
            state=SUBMITTING,
            claimed_at=timezone.now(),
            attempts=F("attempts") + 1,
        )

    def accept(self, *, message: str, progress: int, request_id: str, **fields: Any) -> bool:
        """The API took the job: from now on the poll follows it. A kind adds its `fields`."""
        return self.transition(
            from_states=(SUBMITTING,),
            message=message,
            state=IN_PROGRESS,
            progress=min(max(progress, 0), 100),
            submitted_at=timezone.now(),
            request_ids=self.with_request_id(request_id),
            **fields,
        )

    def complete(self, *, message: str, **fields: Any) -> bool:
        """The API says the work has ended well."""
        return self.transition(
            from_states=(IN_PROGRESS,),
            message=message,
            state=COMPLETED,
            progress=100,
            finished_at=timezone.now(),
            **fields,
        )

    def follow(self, *, api_state: str, progress: int, now: datetime, **fields: Any) -> bool:
        """Brings an in-progress row up to what the API says of it: its state (with a line of
        history when that changes), its progress and a kind's `fields`. False when nothing
        changed, or when the row has moved on meanwhile."""
        model = type(self)
        wanted = clip_to_fields(
            model, {"api_state": api_state, "progress": min(max(progress, 0), 100), **fields}
        )
        if all(getattr(self, name) == value for name, value in wanted.items()):
            return False
        if wanted["api_state"] != getattr(self, "api_state"):  # noqa: B009 - each kind declares it
            message = clip_text(self.events.model, "message", f"API state: {api_state}.")
            self.events.create(state=self.state, at=now, message=message)
        rows = model._default_manager.filter(pk=self.pk, state=IN_PROGRESS)  # type: ignore[misc]
        return bool(rows.update(**wanted, updated_at=now))

    def requeue(self, *, message: str, retry_at: datetime, request_id: str = "") -> bool:
        """Back to the queue, due at `retry_at` (the sweeper only steps in once that has long
        passed): after a passing API problem, or when the worker sending it died."""
        return self.transition(
            from_states=(SUBMITTING,),
            message=message,
            state=QUEUED,
            enqueued_at=retry_at,
            request_ids=self.with_request_id(request_id),
        )

    def mark_failed(
        self,
        *,
        code: str,
        type: str,  # noqa: A002 - the API's own word
        details: str,
        request_id: str = "",
        from_states: tuple[str, ...] = (QUEUED, SUBMITTING, IN_PROGRESS),
        **fields: Any,
    ) -> bool:
        """Ends the job with the API's error; a kind of job adds its own `fields`."""
        return self.transition(
            from_states=from_states,
            message=f"Failed: {type or code}: {details}",
            state=ERROR,
            error_code=code,
            error_type=type,
            error_details=details,
            error_request_id=request_id,
            finished_at=timezone.now(),
            request_ids=self.with_request_id(request_id),
            **fields,
        )
