"""A bulk action: one kind of action (export, copy, tags, delete) on snapshots picked on the
dashboard, confirmed once with its count, and one item per snapshot followed on its own page."""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.db import models
from django.utils import timezone

from importer.teams.models import Team
from importer.transfers.models import (
    COPY_TERMINAL_STATES,
    EXPORT_TERMINAL_STATES,
    CopyChain,
    CopyState,
    ExportState,
    ExportTask,
)


class BulkKind(models.TextChoices):
    EXPORT = "export", "Export to bucket"
    COPY = "copy", "Copy to team"
    TAGS = "tags", "Edit tags"
    DELETE = "delete", "Delete"


# The kinds whose items a worker runs here (the others each make a tracked job of their own).
WORKER_KINDS = (BulkKind.TAGS, BulkKind.DELETE)


class ItemState(models.TextChoices):
    WAITING = "waiting", "Waiting its turn"
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    # An export or a copy: its tracked job says the rest.
    STARTED = "started", "Started"
    DONE = "done", "Done"
    UNCHANGED = "unchanged", "Nothing to change"
    FAILED = "failed", "Failed"


ITEM_TERMINAL_STATES = (ItemState.DONE, ItemState.UNCHANGED, ItemState.FAILED)
# Taking a place in the action's window of items sent to the workers at once.
ITEM_ACTIVE_STATES = (ItemState.QUEUED, ItemState.RUNNING)


# The badge an item's own state shows as (the states the other jobs' badges know).
_BADGES: dict[str, str] = {
    ItemState.DONE: "completed",
    ItemState.UNCHANGED: "completed",
    ItemState.FAILED: "error",
    ItemState.RUNNING: "in_progress",
}


class BulkAction(models.Model):
    """What one confirmed bulk form did. Its id is the form's idempotency key: the same form
    posted twice finds this action instead of acting again."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="bulk_actions")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="bulk_actions"
    )
    kind = models.CharField(max_length=10, choices=BulkKind.choices)
    # The form's values, none of them secret: bucket, prefix, format, team, tags...
    parameters = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["team", "-created_at"], name="bulk_team_created_idx")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} of {self.team} ({self.pk})"


class BulkItem(models.Model):
    """One snapshot of a bulk action: its state and message, and the job it made if any."""

    action = models.ForeignKey(BulkAction, on_delete=models.CASCADE, related_name="items")
    position = models.PositiveSmallIntegerField()
    snapshot_id = models.CharField(max_length=64)
    state = models.CharField(max_length=12, choices=ItemState.choices)
    message = models.CharField(max_length=2000, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    export = models.OneToOneField(
        ExportTask, null=True, blank=True, on_delete=models.PROTECT, related_name="bulk_item"
    )
    copy = models.OneToOneField(
        CopyChain, null=True, blank=True, on_delete=models.PROTECT, related_name="bulk_item"
    )
    enqueued_at = models.DateTimeField(null=True, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["position"]
        constraints = [
            models.UniqueConstraint(fields=["action", "snapshot_id"], name="bulk_item_once"),
        ]
        indexes = [models.Index(fields=["state", "enqueued_at"], name="bulk_item_state_idx")]

    def __str__(self) -> str:
        return f"{self.snapshot_id} in {self.action_id} ({self.state})"

    @property
    def job(self) -> Any:
        """The export or the copy this item made (None for tags and delete)."""
        return self.copy if self.copy_id else self.export if self.export_id else None

    @property
    def shown_state(self) -> tuple[str, str]:
        """(state, label) as the page shows it: an export's or a copy's own, once started."""
        if self.copy_id:
            assert self.copy is not None  # noqa: S101 - set with its id
            return self.copy.state, self.copy.get_state_display()
        if self.export_id:
            assert self.export is not None  # noqa: S101 - set with its id
            return self.export.state, self.export.get_state_display()
        return _BADGES.get(self.state, "queued"), self.get_state_display()

    @property
    def is_terminal(self) -> bool:
        if self.copy_id:
            return bool(self.copy and self.copy.state in COPY_TERMINAL_STATES)
        if self.export_id:
            return bool(self.export and self.export.state in EXPORT_TERMINAL_STATES)
        return self.state in ITEM_TERMINAL_STATES

    @property
    def succeeded(self) -> bool:
        if self.copy_id:
            return bool(self.copy and self.copy.state == CopyState.COMPLETED)
        if self.export_id:
            return bool(self.export and self.export.state == ExportState.COMPLETED)
        return self.state in (ItemState.DONE, ItemState.UNCHANGED)

    @property
    def problem(self) -> str:
        """What went wrong, in the API's or the portal's words ("" while all is well)."""
        job = self.job
        if job is not None:
            return str(job.error_details) if job.state == "error" else ""
        return self.message if self.state == ItemState.FAILED else ""
