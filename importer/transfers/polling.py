from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
)
from django.utils import timezone

from importer.core.crypto import DecryptionError
from importer.jobs.models import note_once
from importer.jobs.polling import (
    POLL_TEAM_BUDGET_SECONDS,
    by_team,
    fail_vanished,
    poll_failed,
    poll_isolated,
)
from importer.outscale import accounts
from importer.outscale.errors import OscApiError
from importer.outscale.paginator import Listing, read_export_tasks_bounded
from importer.outscale.resources import SnapshotExportTask
from importer.transfers.models import ExportEvent, ExportState, ExportTask
from importer.transfers.services import OBJECT_GRACE, find_exported_object

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExportPollSummary:
    followed: int
    changed: int
    finished: int
    failed_teams: int = 0


def exports_poll(*, now: datetime | None = None) -> ExportPollSummary:
    """One poll cycle: every in-flight export, one ReadSnapshotExportTasks (paged) per team.

    Each team is polled on its own, like the imports: a failure is logged (and noted on the
    team's exports when someone can act on it) and the other teams are polled all the same.
    """
    now = now or timezone.now()
    teams = by_team(ExportTask.objects.in_flight().select_related("team"))
    followed = changed = finished = failed = 0
    for exports in teams:
        followed += len(exports)
        result = _poll_team_exports_isolated(exports, now=now)
        if result is None:
            failed += 1
        else:
            changed += result[0]
            finished += result[1]
    return ExportPollSummary(
        followed=followed, changed=changed, finished=finished, failed_teams=failed
    )


def _poll_team_exports_isolated(
    exports: list[ExportTask], *, now: datetime
) -> tuple[int, int] | None:
    return poll_isolated(
        exports,
        lambda: _poll_team_exports(exports, now=now),
        what="exports",
        failed=None,
        note=_note_on_exports,
    )


def _poll_team_exports(exports: list[ExportTask], *, now: datetime) -> tuple[int, int] | None:
    """(changed, finished) for one team's exports; None when the API could not say."""
    listing: Listing[SnapshotExportTask] = Listing()
    try:
        read_export_tasks_bounded(
            accounts.api_client(exports[0].team),
            listing,
            task_ids=[export.task_id for export in exports],
            budget_seconds=POLL_TEAM_BUDGET_SECONDS,
        )
    except (OscApiError, ValueError, DecryptionError) as error:
        poll_failed(exports, error, what="exports", note=_note_on_exports)
        return None
    tasks = {task.task_id: task for task in listing.items}
    changed = finished = 0
    for export in exports:
        task = tasks.get(export.task_id)
        if task is None and not listing.complete:
            continue  # maybe on a page the listing did not read: not taken for vanished
        moved, ended = _apply_task(export, task, now=now)
        changed += moved
        finished += ended
    return changed, finished


def _note_on_exports(exports: list[ExportTask], message: str) -> None:
    note_once(ExportEvent, "export", exports, message)


def _apply_task(
    export: ExportTask, task: SnapshotExportTask | None, *, now: datetime
) -> tuple[bool, bool]:
    """Brings one export row up to what the API says; returns (changed, finished)."""
    if task is None:
        ended = fail_vanished(
            export, export.task_id, now=now, code="ExportTaskNotFound", type="ExportVanished"
        )
        return ended, ended
    if task.is_completed:
        return _complete(export, task, now=now)
    if task.is_failed:
        ended = export.mark_failed(
            code="ExportFailed",
            type="ExportFailed",
            details=task.comment or "The API ended the export in state failed.",
            comment=task.comment,
            api_state=task.state,
            from_states=(ExportState.IN_PROGRESS,),
        )
        return ended, ended
    if task.is_cancelled:
        ended = export.mark_cancelled(
            message="The API reports the export cancelled.", api_state=task.state
        )
        return ended, ended
    moved = export.follow(
        api_state=task.state, progress=task.progress, now=now, comment=task.comment
    )
    return moved, False


def _complete(export: ExportTask, task: SnapshotExportTask, *, now: datetime) -> tuple[bool, bool]:
    try:
        found = find_exported_object(export.team, export)
    except (ClientError, BotoCoreError, ValueError, DecryptionError) as error:
        logger.warning("Export %s: listing its bucket failed: %s", export.pk, type(error).__name__)
        found = None
    if found is None:
        if export.submitted_at and export.submitted_at < now - OBJECT_GRACE:
            ended = export.mark_failed(
                code="ObjectNotFound",
                type="ExportObjectMissing",
                details=f"The API says the export ended, but no object starting with "
                f"{export.prefix}{export.snapshot_id} is in the bucket {export.bucket}.",
                api_state=task.state,
                from_states=(ExportState.IN_PROGRESS,),
            )
            return ended, ended
        return False, False  # the next poll looks again
    ended = export.mark_completed(
        api_state=task.state, object_key=found.key, object_size=found.size
    )
    return ended, ended
