from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from importer.audit.models import AuditAction
from importer.core.changes import TEAM_JOBS
from importer.core.units import GIB, how_long
from importer.jobs.models import JobEvent, SubmittedJob, SubmittedJobQuerySet
from importer.teams.models import Team


class JobState(models.TextChoices):
    QUEUED = "queued", "Queued"
    WAITING = "waiting", "Waiting for a slot"
    SUBMITTING = "submitting", "Sending to the API"
    IN_PROGRESS = "in_progress", "Importing"
    COMPLETED = "completed", "Completed"
    ERROR = "error", "Failed"


TERMINAL_STATES = (JobState.COMPLETED, JobState.ERROR)


class TagState(models.TextChoices):
    PENDING = "pending", "Pending"
    DONE = "done", "Tagged"
    FAILED = "failed", "Tagging failed"


class ImportJobQuerySet(SubmittedJobQuerySet["ImportJob"]):
    """Every write of import jobs replaces their teams' change versions once it commits, so that
    a page's poll can tell "nothing changed" from the cache alone (importer.core.changes)."""

    def _teams(self) -> set[int]:
        # One indexed read before the write: the rows' teams cannot be known after it (the
        # filter may no longer match them).
        return set(self.order_by().values_list("team_id", flat=True).distinct())

    def update(self, **fields: Any) -> int:
        return self.update_of_teams(self._teams(), **fields)

    update.alters_data = True  # type: ignore[attr-defined]

    def update_of_teams(self, teams: set[int], **fields: Any) -> int:
        """`update`, when the caller knows the rows' teams: no query to find them."""
        updated = super().update(**fields)
        if updated:
            TEAM_JOBS.changed_on_commit(teams)
        return updated

    update_of_teams.alters_data = True  # type: ignore[attr-defined]

    def bulk_update(self, objs: Any, fields: Any, batch_size: int | None = None) -> int:
        rows = list(objs)
        updated = super().bulk_update(rows, fields, batch_size=batch_size)
        TEAM_JOBS.changed_on_commit(row.team_id for row in rows)
        return updated

    bulk_update.alters_data = True  # type: ignore[attr-defined]

    def bulk_create(self, objs: Any, *args: Any, **kwargs: Any) -> list[ImportJob]:
        made = super().bulk_create(objs, *args, **kwargs)
        TEAM_JOBS.changed_on_commit(row.team_id for row in made)
        return made

    bulk_create.alters_data = True  # type: ignore[attr-defined]

    def delete(self) -> tuple[int, dict[str, int]]:
        teams = self._teams()
        deleted = super().delete()
        TEAM_JOBS.changed_on_commit(teams)
        return deleted

    delete.alters_data = True  # type: ignore[attr-defined]

    def in_flight(self) -> ImportJobQuerySet:
        """Jobs whose snapshot the API is still importing: what the poller follows."""
        return self.filter(state=JobState.IN_PROGRESS).exclude(snapshot_id="")

    def untagged(self, *, now: datetime, after: timedelta) -> ImportJobQuerySet:
        return self.filter(
            tag_state=TagState.PENDING, submitted_at__lt=now - after, dry_run=False
        ).exclude(snapshot_id="")


class ImportJob(SubmittedJob):
    """One IMPORT SNAPSHOT submission: the source of truth for its whole life.

    The pre-signed URL is stored encrypted only until the API has accepted it (or the job has
    ended), then erased; everything shown or logged uses `url_redacted`.
    """

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
    snapshot_id = models.CharField(max_length=64, blank=True)
    # The bulk import that made it, if one did (by name: imports never imports batches).
    batch = models.ForeignKey(
        "importer.ImportBatch",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="jobs",
    )
    # Tags asked at import time, applied with the Name tag once the API has the snapshot.
    tags = models.JSONField(default=dict, blank=True)
    tag_state = models.CharField(max_length=10, choices=TagState.choices, default=TagState.PENDING)
    tag_error = models.CharField(max_length=1000, blank=True)

    objects = ImportJobQuerySet.as_manager()

    noun = "import"
    audit_action = AuditAction.JOB_STATE

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["-created_at"], name="job_created_idx"),
            models.Index(fields=["state", "-created_at"], name="job_state_created_idx"),
            models.Index(fields=["snapshot_id"], name="job_snapshot_idx"),
            # One per history sort, each with the id that breaks ties: a page of the team's
            # history is a range scan from the previous page's last row, either way round.
            models.Index(fields=["team", "created_at", "id"], name="job_team_created_id_idx"),
            models.Index(fields=["team", "name", "id"], name="job_team_name_id_idx"),
            models.Index(fields=["team", "snapshot_size", "id"], name="job_team_size_id_idx"),
            models.Index(fields=["team", "state", "-created_at"], name="job_team_state_idx"),
            models.Index(fields=["team", "submitted_by", "-created_at"], name="job_team_user_idx"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(snapshot_size__gte=1), name="job_size_positive"),
            models.CheckConstraint(condition=Q(progress__lte=100), name="job_progress_max_100"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_state_display()})"

    def save(self, *args: Any, **kwargs: Any) -> None:
        super().save(*args, **kwargs)
        TEAM_JOBS.changed_on_commit([self.team_id])

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        deleted = super().delete(*args, **kwargs)
        TEAM_JOBS.changed_on_commit([self.team_id])
        return deleted

    @property
    def all_tags(self) -> dict[str, str]:
        """Every tag the snapshot gets: its Name, then the ones asked at import time."""
        return {"Name": self.name, **self.tags}

    @property
    def imports_ahead(self) -> int:
        """The team's jobs waiting for a slot that go before this one (oldest first)."""
        return ImportJob.objects.filter(
            team_id=self.team_id, state=JobState.WAITING, created_at__lt=self.created_at
        ).count()

    @property
    def snapshot_size_gib(self) -> float:
        return self.snapshot_size / GIB

    @property
    def duration(self) -> timedelta | None:
        return self.finished_at - self.created_at if self.finished_at else None

    @property
    def duration_text(self) -> str:
        """How long it took, as the job's page says it ("13 seconds"); empty while running."""
        duration = self.duration
        return how_long(duration.total_seconds()) if duration is not None else ""

    # --- Transitions (the shared ones are SubmittedJob's) ---------------------------------

    def mark_accepted(
        self, *, snapshot_id: str, api_state: str, progress: int, request_id: str
    ) -> bool:
        return self.accept(
            message=f"The API accepted the import as {snapshot_id} ({api_state}).",
            progress=progress,
            request_id=request_id,
            snapshot_id=snapshot_id,
            api_state=api_state,
            url_encrypted="",
        )

    def mark_dry_run_passed(self, *, request_id: str) -> bool:
        return self.transition(
            from_states=(JobState.SUBMITTING,),
            message="Dry run: the API would accept this import. Nothing was imported.",
            state=JobState.COMPLETED,
            finished_at=timezone.now(),
            url_encrypted="",
            tag_state=TagState.DONE,
            request_ids=self.with_request_id(request_id),
        )

    def mark_completed(self, *, api_state: str) -> bool:
        return self.complete(
            message=f"The API reports the snapshot {api_state}.", api_state=api_state
        )

    def mark_failed(self, **failure: Any) -> bool:
        # An ended job needs its URL no more: its signature is erased with the failure.
        return super().mark_failed(url_encrypted="", **failure)


class ImportJobEvent(JobEvent):
    """The job's history of states, shown on its page."""

    job = models.ForeignKey(ImportJob, on_delete=models.CASCADE, related_name="events")
    state = models.CharField(max_length=20, choices=JobState.choices)

    class Meta:
        ordering = ["at", "id"]
