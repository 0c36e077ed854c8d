"""A batch: the imports one manifest made, created together and followed together."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone

from importer.teams.models import Team


class ImportBatch(models.Model):
    """The rows of one manifest that were ready, imported as one batch (one job each).

    Its id is the preview form's idempotency key: sending the same preview twice finds the
    batch it already made instead of importing everything again.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="import_batches")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="import_batches"
    )
    source_name = models.CharField(max_length=255, blank=True, help_text="The manifest's file")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["team", "-created_at"], name="batch_team_created_idx")]

    def __str__(self) -> str:
        return f"batch {self.source_name or self.pk} of {self.team}"
