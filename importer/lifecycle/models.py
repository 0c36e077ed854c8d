"""What an operator makes from a snapshot that the API finishes later: a volume, an OMI, a copy.

One kind of tracked job for the three: they are claimed, sent, retried and followed the same
way; only the API calls differ, and those are the services'. The values the dialog checked are
kept in `parameters`, so a retry sends exactly what was asked.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models

from importer.audit.models import AuditAction
from importer.imports.models import TagState
from importer.jobs.models import JobEvent, SubmittedJob, SubmittedJobQuerySet
from importer.teams.models import Team


class DerivedKind(models.TextChoices):
    VOLUME = "volume", "Volume"
    IMAGE = "image", "OMI"
    COPY = "copy", "Snapshot copy"


class DerivedState(models.TextChoices):
    QUEUED = "queued", "Queued"
    SUBMITTING = "submitting", "Sending to the API"
    IN_PROGRESS = "in_progress", "In progress"
    COMPLETED = "completed", "Completed"
    ERROR = "error", "Failed"


# How a job's page names what the dialog asked (its `parameters`).
PARAMETER_LABELS = {
    "subregion_name": "Subregion",
    "volume_type": "Volume type",
    "size_gib": "Size (GiB)",
    "iops": "IOPS",
    "image_name": "OMI name",
    "description": "Description",
    "architecture": "Architecture",
    "boot_mode": "Boot mode",
    "root_device_name": "Root device name",
    "volume_size_gib": "Volume size (GiB)",
    "delete_on_vm_deletion": "Delete on VM deletion",
    "name": "Name",
}


class DerivedJobQuerySet(SubmittedJobQuerySet["DerivedJob"]):
    def in_flight(self) -> DerivedJobQuerySet:
        """Accepted by the API and not yet ended: what the poller follows."""
        return self.filter(state=DerivedState.IN_PROGRESS).exclude(resource_id="")

    def made_from(self, team: Team | int, snapshot_id: str) -> DerivedJobQuerySet:
        return self.filter(team=team, source_snapshot_id=snapshot_id)


class DerivedJob(SubmittedJob):
    """One CreateVolume, CreateImage or copy-mode CreateSnapshot from a team's snapshot.

    The job's id is the ClientToken of CreateVolume and CreateSnapshot; CreateImage has none,
    so an OMI is found again by its name, which the API keeps unique in an account.
    """

    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="derived_jobs")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="derived_jobs"
    )
    source_snapshot_id = models.CharField(max_length=64)
    kind = models.CharField(max_length=10, choices=DerivedKind.choices)
    parameters = models.JSONField(default=dict)
    state = models.CharField(
        max_length=20, choices=DerivedState.choices, default=DerivedState.QUEUED
    )
    resource_id = models.CharField(max_length=64, blank=True, help_text="vol-, ami- or snap- id")
    api_state = models.CharField(max_length=40, blank=True)
    # A copy's Name tag, set once the API has made it (volumes and OMIs take theirs as asked).
    tag_state = models.CharField(max_length=10, choices=TagState.choices, default=TagState.PENDING)

    objects = DerivedJobQuerySet.as_manager()

    noun = "request"
    audit_action = AuditAction.DERIVED_STATE

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(
                fields=["team", "source_snapshot_id", "-created_at"], name="derived_source_idx"
            ),
            models.Index(fields=["state", "-created_at"], name="derived_state_created_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} from {self.source_snapshot_id} ({self.state})"

    @property
    def label(self) -> str:
        """What the "Made from this snapshot" list calls it: the OMI's or the copy's name."""
        return str(self.parameters.get("image_name") or self.parameters.get("name") or "")

    @property
    def place(self) -> str:
        """Where a volume lives (its Subregion); empty for the others."""
        return str(self.parameters.get("subregion_name", ""))

    @property
    def asked(self) -> list[tuple[str, Any]]:
        """What the dialog asked, labelled, in the dialog's order."""
        return [
            (PARAMETER_LABELS.get(key, key), value)
            for key, value in self.parameters.items()
            if value is not None and value != ""
        ]

    # --- Transitions (the shared ones are SubmittedJob's) ---------------------------------

    def mark_accepted(
        self, *, resource_id: str, api_state: str, progress: int, request_id: str
    ) -> bool:
        return self.accept(
            message=f"The API accepted it as {resource_id} ({api_state}).",
            progress=progress,
            request_id=request_id,
            resource_id=resource_id,
            api_state=api_state,
        )

    def mark_completed(self, *, api_state: str) -> bool:
        return self.complete(message=f"{self.resource_id} is {api_state}.", api_state=api_state)

    def mark_failed(self, *, api_state: str = "", **failure: Any) -> bool:
        return super().mark_failed(api_state=api_state or self.api_state, **failure)


class DerivedEvent(JobEvent):
    job = models.ForeignKey(DerivedJob, on_delete=models.CASCADE, related_name="events")
    state = models.CharField(max_length=20, choices=DerivedState.choices)
