from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import models, transaction
from django.db.models import F, Q
from django.utils import timezone

from importer.audit.chain import record
from importer.audit.models import AuditAction
from importer.core.units import GIB
from importer.jobs.models import clip_text, clip_to_fields, with_request_id
from importer.teams.models import Team


class JobState(models.TextChoices):
    QUEUED = "queued", "Queued"
    SUBMITTING = "submitting", "Sending to the API"
    IN_PROGRESS = "in_progress", "Importing"
    COMPLETED = "completed", "Completed"
    ERROR = "error", "Failed"


TERMINAL_STATES = (JobState.COMPLETED, JobState.ERROR)


class TagState(models.TextChoices):
    PENDING = "pending", "Pending"
    DONE = "done", "Tagged"
    FAILED = "failed", "Tagging failed"


class ImportJobQuerySet(models.QuerySet["ImportJob"]):
    def in_flight(self) -> ImportJobQuerySet:
        """Jobs whose snapshot the API is still importing: what the poller follows."""
        return self.filter(state=JobState.IN_PROGRESS).exclude(snapshot_id="")

    def unfinished(self) -> ImportJobQuerySet:
        return self.exclude(state__in=TERMINAL_STATES)

    def lost_in_queue(self, *, now: datetime, after: timedelta) -> ImportJobQuerySet:
        """Queued for long with no worker taking them: the broker lost or never got the task."""
        return self.filter(state=JobState.QUEUED, enqueued_at__lt=now - after)

    def stuck_submitting(self, *, now: datetime, after: timedelta) -> ImportJobQuerySet:
        """Claimed by a worker that died (or hung past its hard time limit) mid-submission."""
        return self.filter(state=JobState.SUBMITTING, claimed_at__lt=now - after)

    def untagged(self, *, now: datetime, after: timedelta) -> ImportJobQuerySet:
        return self.filter(
            tag_state=TagState.PENDING, submitted_at__lt=now - after, dry_run=False
        ).exclude(snapshot_id="")


class ImportJob(models.Model):
    """One IMPORT SNAPSHOT submission: the source of truth for its whole life.

    The pre-signed URL is stored encrypted only until the API has accepted it (or the job has
    ended), then erased; everything shown or logged uses `url_redacted`.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="import_jobs")
    name = models.CharField(max_length=255)
    description = models.CharField(max_length=1000, blank=True)
    snapshot_size = models.BigIntegerField(help_text="SnapshotSize sent to the API, in bytes")
    dry_run = models.BooleanField(default=False)
    submitted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="import_jobs"
    )

    url_redacted = models.CharField(max_length=2048)
    url_host = models.CharField(max_length=255)
    url_bucket = models.CharField(max_length=255)
    url_key = models.CharField(max_length=1024)
    url_expires_at = models.DateTimeField()
    url_encrypted = models.TextField(blank=True)

    state = models.CharField(max_length=20, choices=JobState.choices, default=JobState.QUEUED)
    api_state = models.CharField(max_length=40, blank=True, help_text="State as the API says it")
    progress = models.PositiveSmallIntegerField(default=0)
    snapshot_id = models.CharField(max_length=64, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    tag_state = models.CharField(max_length=10, choices=TagState.choices, default=TagState.PENDING)
    tag_error = models.CharField(max_length=1000, blank=True)

    error_code = models.CharField(max_length=64, blank=True)
    error_type = models.CharField(max_length=128, blank=True)
    error_details = models.CharField(max_length=2000, blank=True)
    error_request_id = models.CharField(max_length=64, blank=True)
    request_ids = models.JSONField(default=list, blank=True)

    created_at = models.DateTimeField(default=timezone.now)
    enqueued_at = models.DateTimeField(default=timezone.now)
    claimed_at = models.DateTimeField(null=True, blank=True)
    submitted_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(default=timezone.now, db_index=True)

    objects = ImportJobQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["-created_at"], name="job_created_idx"),
            models.Index(fields=["state", "-created_at"], name="job_state_created_idx"),
            models.Index(fields=["snapshot_id"], name="job_snapshot_idx"),
            models.Index(fields=["team", "-created_at"], name="job_team_created_idx"),
            models.Index(fields=["team", "state", "-created_at"], name="job_team_state_idx"),
            models.Index(fields=["team", "submitted_by", "-created_at"], name="job_team_user_idx"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(snapshot_size__gte=1), name="job_size_positive"),
            models.CheckConstraint(condition=Q(progress__lte=100), name="job_progress_max_100"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_state_display()})"

    @property
    def is_terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    @property
    def snapshot_size_gib(self) -> float:
        return self.snapshot_size / GIB

    @property
    def duration(self) -> timedelta | None:
        return self.finished_at - self.created_at if self.finished_at else None

    # --- Transitions: each is one conditional UPDATE, so concurrent workers cannot both win. ---

    def _transition(self, *, from_states: tuple[str, ...], message: str, **fields: Any) -> bool:
        now = timezone.now()
        fields.setdefault("updated_at", now)
        fields = clip_to_fields(ImportJob, fields)
        message = clip_text(ImportJobEvent, "message", message)
        with transaction.atomic():
            updated = ImportJob.objects.filter(pk=self.pk, state__in=from_states).update(**fields)
            if updated != 1:
                return False
            state = fields.get("state", self.state)
            ImportJobEvent.objects.create(job_id=self.pk, state=state, message=message, at=now)

            record(
                action=AuditAction.JOB_STATE,
                team=self.team,
                target=str(self.pk),
                details={"state": state, "message": message},
            )
        self.refresh_from_db()
        return True

    def claim_for_submission(self) -> bool:
        return self._transition(
            from_states=(JobState.QUEUED,),
            message="A worker is sending the import to the API.",
            state=JobState.SUBMITTING,
            claimed_at=timezone.now(),
            attempts=F("attempts") + 1,
        )

    def mark_accepted(
        self, *, snapshot_id: str, api_state: str, progress: int, request_id: str
    ) -> bool:
        return self._transition(
            from_states=(JobState.SUBMITTING,),
            message=f"The API accepted the import as {snapshot_id} ({api_state}).",
            state=JobState.IN_PROGRESS,
            snapshot_id=snapshot_id,
            api_state=api_state,
            progress=min(max(progress, 0), 100),
            submitted_at=timezone.now(),
            url_encrypted="",
            request_ids=with_request_id(self.request_ids, request_id),
        )

    def mark_dry_run_passed(self, *, request_id: str) -> bool:
        return self._transition(
            from_states=(JobState.SUBMITTING,),
            message="Dry run: the API would accept this import. Nothing was imported.",
            state=JobState.COMPLETED,
            finished_at=timezone.now(),
            url_encrypted="",
            tag_state=TagState.DONE,
            request_ids=with_request_id(self.request_ids, request_id),
        )

    def mark_completed(self, *, api_state: str) -> bool:
        return self._transition(
            from_states=(JobState.IN_PROGRESS,),
            message=f"The API reports the snapshot {api_state}.",
            state=JobState.COMPLETED,
            api_state=api_state,
            progress=100,
            finished_at=timezone.now(),
        )

    def requeue_after_transient_error(
        self, *, summary: str, request_id: str, retry_at: datetime
    ) -> bool:
        return self._transition(
            from_states=(JobState.SUBMITTING,),
            message=f"Temporary API problem, will retry: {summary}",
            state=JobState.QUEUED,
            # When the retry is due: the sweeper only steps in once this has long passed.
            enqueued_at=retry_at,
            request_ids=with_request_id(self.request_ids, request_id),
        )

    def requeue_stuck(self) -> bool:
        return self._transition(
            from_states=(JobState.SUBMITTING,),
            message="The worker sending this import stopped; sending it again.",
            state=JobState.QUEUED,
            enqueued_at=timezone.now(),
        )

    def mark_failed(
        self,
        *,
        code: str,
        type: str,  # noqa: A002 - the API's own word
        details: str,
        request_id: str = "",
        from_states: tuple[str, ...] = (JobState.QUEUED, JobState.SUBMITTING, JobState.IN_PROGRESS),
    ) -> bool:
        return self._transition(
            from_states=from_states,
            message=f"Failed: {type or code}: {details}",
            state=JobState.ERROR,
            error_code=code[:64],
            error_type=type[:128],
            error_details=details[:2000],
            error_request_id=request_id[:64],
            finished_at=timezone.now(),
            url_encrypted="",
            request_ids=with_request_id(self.request_ids, request_id),
        )


class ImportJobEvent(models.Model):
    """The job's history of states, shown on its page."""

    job = models.ForeignKey(ImportJob, on_delete=models.CASCADE, related_name="events")
    at = models.DateTimeField(default=timezone.now)
    state = models.CharField(max_length=20, choices=JobState.choices)
    message = models.CharField(max_length=2500)

    class Meta:
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return f"{self.at:%H:%M:%S} {self.state}: {self.message}"
