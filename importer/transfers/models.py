from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from importer.audit.models import AuditAction
from importer.core.units import GIB
from importer.imports.models import ImportJob
from importer.jobs.models import JobEvent, SubmittedJob, SubmittedJobQuerySet, TrackedJob
from importer.teams.models import Team


class ExportState(models.TextChoices):
    QUEUED = "queued", "Queued"
    SUBMITTING = "submitting", "Sending to the API"
    IN_PROGRESS = "in_progress", "Exporting"
    COMPLETED = "completed", "Completed"
    ERROR = "error", "Failed"
    CANCELLED = "cancelled", "Cancelled"


EXPORT_TERMINAL_STATES = (ExportState.COMPLETED, ExportState.ERROR, ExportState.CANCELLED)


class DiskImageFormat(models.TextChoices):
    QCOW2 = "qcow2", "qcow2"
    RAW = "raw", "raw"


@dataclass(frozen=True)
class ExportDestination:
    """Where an export writes the image: a bucket, a key prefix in it, and the disk format."""

    bucket: str
    prefix: str
    disk_image_format: str

    def __str__(self) -> str:
        return f"{self.bucket}/{self.prefix}"

    def audit_details(self) -> dict[str, str]:
        return {"bucket": self.bucket, "prefix": self.prefix, "format": self.disk_image_format}


class ExportTaskQuerySet(SubmittedJobQuerySet["ExportTask"]):
    def in_flight(self) -> ExportTaskQuerySet:
        """Exports the API is working on: what the poller follows."""
        return self.filter(state=ExportState.IN_PROGRESS).exclude(task_id="")


class ExportTask(SubmittedJob):
    """One CreateSnapshotExportTask of a team's snapshot to a bucket of the team's account."""

    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="export_tasks")
    snapshot_id = models.CharField(max_length=64)
    bucket = models.CharField(max_length=255)
    prefix = models.CharField(max_length=512, blank=True)
    disk_image_format = models.CharField(
        max_length=8, choices=DiskImageFormat.choices, default=DiskImageFormat.QCOW2
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="export_tasks"
    )

    state = models.CharField(max_length=20, choices=ExportState.choices, default=ExportState.QUEUED)
    api_state = models.CharField(max_length=40, blank=True)
    task_id = models.CharField(max_length=64, blank=True)
    comment = models.CharField(max_length=2000, blank=True, help_text="The API's Comment")
    cancel_requested = models.BooleanField(default=False)

    object_key = models.CharField(max_length=1024, blank=True)
    object_size = models.BigIntegerField(null=True, blank=True, help_text="Bytes in the bucket")
    snapshot_size = models.BigIntegerField(
        null=True, blank=True, help_text="The snapshot's uncompressed size, in bytes"
    )

    objects = ExportTaskQuerySet.as_manager()

    noun = "export"
    audit_action = AuditAction.EXPORT_STATE
    terminal_states = EXPORT_TERMINAL_STATES

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["team", "-created_at"], name="export_team_created_idx"),
            models.Index(fields=["state", "-created_at"], name="export_state_created_idx"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(progress__lte=100), name="export_progress_max_100")
        ]

    def __str__(self) -> str:
        return f"export of {self.snapshot_id} to {self.bucket} ({self.get_state_display()})"

    @property
    def can_cancel(self) -> bool:
        return self.state in (ExportState.QUEUED, ExportState.IN_PROGRESS)

    @property
    def object_location(self) -> str:
        return f"{self.bucket}/{self.object_key}" if self.object_key else ""

    @property
    def snapshot_size_gib(self) -> float | None:
        return self.snapshot_size / GIB if self.snapshot_size else None

    # --- Transitions (the shared ones are SubmittedJob's) ---------------------------------

    def mark_accepted(
        self, *, task_id: str, api_state: str, progress: int, comment: str, request_id: str
    ) -> bool:
        return self.accept(
            message=f"The API accepted the export as {task_id} ({api_state}).",
            progress=progress,
            request_id=request_id,
            task_id=task_id,
            api_state=api_state,
            comment=comment,
        )

    def mark_completed(self, *, api_state: str, object_key: str, object_size: int | None) -> bool:
        where = f"{self.bucket}/{object_key}" if object_key else self.bucket
        return self.complete(
            message=f"Exported to {where}.",
            api_state=api_state,
            object_key=object_key,
            object_size=object_size,
        )

    def mark_cancelled(self, *, message: str, api_state: str = "") -> bool:
        return self.transition(
            from_states=(ExportState.QUEUED, ExportState.SUBMITTING, ExportState.IN_PROGRESS),
            message=message,
            state=ExportState.CANCELLED,
            api_state=api_state[:40] or self.api_state,
            finished_at=timezone.now(),
        )

    def mark_failed(self, *, comment: str = "", api_state: str = "", **failure: Any) -> bool:
        return super().mark_failed(
            api_state=api_state or self.api_state, comment=comment or self.comment, **failure
        )


class ExportEvent(JobEvent):
    export = models.ForeignKey(ExportTask, on_delete=models.CASCADE, related_name="events")
    state = models.CharField(max_length=20, choices=ExportState.choices)

    class Meta:
        ordering = ["at", "id"]


class SharedUrl(models.Model):
    """A pre-signed URL made of an exported object: who made it, until when, its redacted form.

    The URL itself is shown once, in the answer that made it, and never stored.
    """

    export = models.ForeignKey(ExportTask, on_delete=models.PROTECT, related_name="shares")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="shared_urls"
    )
    url_redacted = models.CharField(max_length=2048)
    expires_at = models.DateTimeField()
    lifetime_seconds = models.PositiveIntegerField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.url_redacted} until {self.expires_at:%Y-%m-%d %H:%M}"

    @property
    def expired(self) -> bool:
        return self.expires_at <= timezone.now()


class CopyState(models.TextChoices):
    EXPORTING = "exporting", "Exporting"
    IMPORTING = "importing", "Importing"
    COMPLETED = "completed", "Completed"
    ERROR = "error", "Failed"


COPY_TERMINAL_STATES = (CopyState.COMPLETED, CopyState.ERROR)


class CopyChain(TrackedJob):
    """Export, pre-signed URL and import into another team's account, followed as one job.

    Each step is one conditional transition; the step that makes the URL and the import job
    commits both with the transition or neither, so a worker killed between (or during) steps
    leaves nothing half done and nothing done twice.
    """

    source_team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="copies_out")
    target_team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="copies_in")
    snapshot_id = models.CharField(max_length=64)
    name = models.CharField(max_length=255)
    description = models.CharField(max_length=1000, blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="copies"
    )
    export = models.OneToOneField(ExportTask, on_delete=models.PROTECT, related_name="copy")
    share = models.OneToOneField(
        SharedUrl, null=True, blank=True, on_delete=models.PROTECT, related_name="copy"
    )
    import_job = models.OneToOneField(
        ImportJob, null=True, blank=True, on_delete=models.PROTECT, related_name="copy"
    )
    # The id the import job will have, and so its CreateSnapshot ClientToken: drawn at random
    # when the chain is made (one derived from the chain's id, which is in every copy link,
    # could be computed by anyone who saw the link), and fixed from then on, so a step retried
    # after a crash finds the import it already made instead of making a second one.
    import_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    state = models.CharField(max_length=20, choices=CopyState.choices, default=CopyState.EXPORTING)

    audit_action = AuditAction.COPY_STATE

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"copy of {self.snapshot_id} to {self.target_team_id} ({self.state})"

    @property
    def audit_team(self) -> Team:
        return self.source_team

    def mark_importing(self, *, share: SharedUrl, import_job: ImportJob) -> bool:
        return self.transition(
            from_states=(CopyState.EXPORTING,),
            message=f"Exported; importing into {self.target_team.name} from {share.url_redacted}.",
            state=CopyState.IMPORTING,
            share=share,
            import_job=import_job,
        )

    def mark_completed(self, *, snapshot_id: str) -> bool:
        return self.transition(
            from_states=(CopyState.IMPORTING,),
            message=f"Imported into {self.target_team.name} as {snapshot_id}.",
            state=CopyState.COMPLETED,
            finished_at=timezone.now(),
        )

    def mark_failed(self, *, details: str) -> bool:
        """Ends the chain, if it is still at the step it was read at."""
        return self.transition(
            from_states=(self.state,),
            message=f"Failed: {details}",
            state=CopyState.ERROR,
            error_details=details[:2000],
            finished_at=timezone.now(),
        )


class CopyEvent(JobEvent):
    chain = models.ForeignKey(CopyChain, on_delete=models.CASCADE, related_name="events")
    state = models.CharField(max_length=20, choices=CopyState.choices)

    class Meta:
        ordering = ["at", "id"]
