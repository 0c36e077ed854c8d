"""Bulk actions: the selection checked against the team's account, the action and its jobs
made in one transaction (once per form key), and the tags and delete items run by workers.

Every item goes through the single action's own service (export_create, copy_create,
tags_edit, snapshot_delete): the same rules, the same audit entry per job, nothing copied.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from importer.audit.chain import record
from importer.audit.models import AuditAction
from importer.bulk.models import (
    ITEM_ACTIVE_STATES,
    WORKER_KINDS,
    BulkAction,
    BulkItem,
    BulkKind,
    ItemState,
)
from importer.core.crypto import DecryptionError
from importer.imports.services import SnapshotInUse, SnapshotNotInAccount, snapshot_delete
from importer.jobs.models import clip_text
from importer.jobs.queue import enqueue
from importer.jobs.retry import (
    LOST_IN_QUEUE_AFTER,
    STUCK_SUBMITTING_AFTER,
    TransientSubmitError,
    retry_delay,
)
from importer.lifecycle.services import NothingToChange, own_snapshot, tags_edit
from importer.outscale import accounts
from importer.outscale.errors import OscApiError
from importer.outscale.resources import SNAPSHOT_ID, Snapshot
from importer.teams.models import Team
from importer.transfers.copies import copy_create
from importer.transfers.models import ExportDestination
from importer.transfers.services import export_create

logger = logging.getLogger(__name__)

MAX_ITEMS = 200
# Items of one action sent to the workers at once: a 200-snapshot delete never floods the
# API (nor the queue) ahead of everyone else's work.
CONCURRENCY = 4
# A passing API problem is tried again this many times in all, then said on the item.
MAX_ITEM_ATTEMPTS = 5


class SelectionRefused(ValueError):
    """The selection cannot be acted on as it is; the message says why, nothing was done."""


class NotYourAction(Exception):
    """The form's key already made an action for another user or team."""


# --- The selection ---------------------------------------------------------------------------


def selected_ids(raw: Iterable[str]) -> list[str]:
    """The distinct ids in the order picked; raises SelectionRefused for none, too many, or
    one that is not a snapshot id at all (a forged field)."""
    ids = list(dict.fromkeys(value.strip() for value in raw if value.strip()))
    if not ids:
        raise SelectionRefused("Select at least one completed snapshot on the dashboard.")
    malformed = [value for value in ids if not SNAPSHOT_ID.match(value)]
    if malformed:
        shown = ", ".join(repr(value[:40]) for value in malformed[:3])
        raise SelectionRefused(f"These are not snapshot IDs: {shown}. Nothing was done.")
    if len(ids) > MAX_ITEMS:
        raise SelectionRefused(
            f"Select at most {MAX_ITEMS} snapshots at once; {len(ids)} are selected."
        )
    return ids


def selection_check(*, team: Team, snapshot_ids: Sequence[str]) -> list[Snapshot]:
    """The selected snapshots as the team's account says they are now, in the order picked.

    Raises SelectionRefused when one is not the account's (another team's, or made up) or not
    completed, and OscApiError / ValueError when the API cannot be asked.
    """
    found = {
        snapshot.snapshot_id: snapshot
        for snapshot in accounts.api_client(team).read_snapshots(snapshot_ids=list(snapshot_ids))
    }
    foreign = [value for value in snapshot_ids if value not in found]
    if foreign:
        raise SelectionRefused(
            f"Not in this team's account: {', '.join(foreign[:10])}"
            f"{' and more' if len(foreign) > 10 else ''}. Nothing was done."
        )
    unfinished = [value for value in snapshot_ids if not found[value].is_completed]
    if unfinished:
        raise SelectionRefused(
            f"Only completed snapshots can be acted on; not yet: {', '.join(unfinished[:10])}."
        )
    return [found[value] for value in snapshot_ids]


# --- The action and its jobs -----------------------------------------------------------------


@dataclass(frozen=True)
class CopyPlan:
    target_team: Team
    destination: ExportDestination
    description: str
    # The name of each copy, by source snapshot id (checked by the form as the dialog would).
    names: Mapping[str, str]


@dataclass(frozen=True)
class TagPlan:
    set: Mapping[str, str]
    remove: tuple[str, ...]


Plan = ExportDestination | CopyPlan | TagPlan | None


def _parameters(kind: str, plan: Plan) -> dict[str, Any]:
    """What the action keeps and audits of its plan: nothing secret is in any of them."""
    if isinstance(plan, ExportDestination):
        return plan.audit_details()
    if isinstance(plan, CopyPlan):
        return {
            **plan.destination.audit_details(),
            "target_team": plan.target_team.name,
            "target_team_id": plan.target_team.pk,
            "description": plan.description,
        }
    if isinstance(plan, TagPlan):
        return {"set": dict(plan.set), "remove": list(plan.remove)}
    return {}


def _existing(key: uuid.UUID, team: Team, user: User) -> BulkAction | None:
    action = BulkAction.objects.filter(pk=key).first()
    if action is not None and (action.team_id, action.created_by_id) != (team.pk, user.pk):
        raise NotYourAction("This form was already used.")
    return action


def bulk_create(
    *,
    team: Team,
    user: User,
    kind: str,
    snapshots: Sequence[Snapshot],
    plan: Plan,
    key: uuid.UUID,
    ip: str | None = None,
) -> tuple[BulkAction, bool]:
    """The action, its audit entry with its count, and one item (and job) per snapshot, in one
    transaction under the form's key: (the action, whether it is new). A repeated key answers
    the action it made, and makes nothing."""
    existing = _existing(key, team, user)
    if existing is not None:
        return existing, False
    try:
        with transaction.atomic():
            action = BulkAction.objects.create(
                id=key, team=team, created_by=user, kind=kind, parameters=_parameters(kind, plan)
            )
            record(
                action=AuditAction.BULK_SUBMITTED,
                actor=user,
                team=team,
                target=str(action.pk),
                ip=ip,
                details={
                    "kind": kind,
                    "count": len(snapshots),
                    "snapshot_ids": [s.snapshot_id for s in snapshots],
                    **action.parameters,
                },
            )
            BulkItem.objects.bulk_create(
                _item(action, position, snapshot, plan, user, ip)
                for position, snapshot in enumerate(snapshots)
            )
            if kind in WORKER_KINDS:
                transaction.on_commit(lambda: items_start(action_id=action.pk))
    except IntegrityError:
        # The twin request (a double click) won the insert: answer with its action.
        existing = _existing(key, team, user)
        if existing is None:
            raise
        return existing, False
    return action, True


def _item(
    action: BulkAction, position: int, snapshot: Snapshot, plan: Plan, user: User, ip: str | None
) -> BulkItem:
    item = BulkItem(action=action, position=position, snapshot_id=snapshot.snapshot_id)
    if isinstance(plan, ExportDestination):
        item.export = export_create(
            team=action.team, user=user, snapshot_id=snapshot.snapshot_id, destination=plan, ip=ip
        )
        item.state = ItemState.STARTED
    elif isinstance(plan, CopyPlan):
        item.copy = copy_create(
            source_team=action.team,
            target_team=plan.target_team,
            user=user,
            snapshot_id=snapshot.snapshot_id,
            name=plan.names[snapshot.snapshot_id],
            description=plan.description,
            destination=plan.destination,
            ip=ip,
        )
        item.state = ItemState.STARTED
    else:
        item.state = ItemState.WAITING
    return item


# --- Tags and delete, item by item on the workers --------------------------------------------


def items_start(*, action_id: uuid.UUID) -> int:
    """Sends the next waiting items while the action has fewer than CONCURRENCY in the
    queue or running; returns how many were sent. The action's row is locked meanwhile, so
    two items ending together never both fill the same free place."""
    now = timezone.now()
    with transaction.atomic():
        if BulkAction.objects.select_for_update().filter(pk=action_id).first() is None:
            return 0
        items = BulkItem.objects.filter(action_id=action_id)
        free = CONCURRENCY - items.filter(state__in=ITEM_ACTIVE_STATES).count()
        if free <= 0:
            return 0
        chosen = list(
            items.filter(state=ItemState.WAITING)
            .order_by("position")
            .values_list("pk", flat=True)[:free]
        )
        items.filter(pk__in=chosen).update(state=ItemState.QUEUED, enqueued_at=now, updated_at=now)
        transaction.on_commit(lambda: [item_enqueue(item_id=pk) for pk in chosen])
    return len(chosen)


def item_enqueue(*, item_id: int, countdown: float = 0) -> bool:
    return enqueue("importer.bulk.run_item", row_id=item_id, countdown=countdown)


def _claim(item_id: int) -> BulkItem | None:
    now = timezone.now()
    claimed = BulkItem.objects.filter(pk=item_id, state=ItemState.QUEUED).update(
        state=ItemState.RUNNING, attempts=F("attempts") + 1, claimed_at=now, updated_at=now
    )
    if claimed != 1:
        return None  # another worker has it, or it has ended
    return BulkItem.objects.select_related("action__team", "action__created_by").get(pk=item_id)


def _finish(item: BulkItem, state: str, message: str) -> None:
    """Ends the item (if it is still running), then lets the next waiting one in."""
    message = clip_text(BulkItem, "message", message)
    BulkItem.objects.filter(pk=item.pk, state=ItemState.RUNNING).update(
        state=state, message=message, updated_at=timezone.now()
    )
    items_start(action_id=item.action_id)


def _run(item: BulkItem) -> tuple[str, str]:
    """Does the item's work through the single action's service: (state, message)."""
    action = item.action
    if action.kind == BulkKind.DELETE:
        try:
            request_id = snapshot_delete(
                team=action.team, actor=action.created_by, snapshot_id=item.snapshot_id, ip=None
            )
        except SnapshotNotInAccount:
            if item.attempts > 1:
                # An earlier attempt deleted it and was lost before saying so.
                return ItemState.DONE, "Deleted (by an earlier attempt)."
            raise
        return ItemState.DONE, f"Deleted (request {request_id or '-'})."
    snapshot = own_snapshot(action.team, item.snapshot_id)
    wanted = {
        key: value
        for key, value in {**snapshot.tags, **action.parameters.get("set", {})}.items()
        if key not in set(action.parameters.get("remove", []))
    }
    try:
        change = tags_edit(
            team=action.team,
            user=action.created_by,
            snapshot_id=item.snapshot_id,
            tags=wanted,
            read=snapshot,
        )
    except NothingToChange:
        return ItemState.UNCHANGED, "These tags were already the snapshot's."
    said = [f"set {', '.join(change.set)}"] if change.set else []
    said += [f"removed {', '.join(change.removed)}"] if change.removed else []
    return ItemState.DONE, "Tags " + "; ".join(said) + "."


def item_run(*, item_id: str) -> None:
    """Runs one claimed item. A passing API problem queues it again (its place in the window
    kept) and raises TransientSubmitError for the task to retry, up to MAX_ITEM_ATTEMPTS; any
    other problem is said on the item."""
    item = _claim(int(item_id))
    if item is None:
        return
    try:
        state, message = _run(item)
    except SnapshotNotInAccount:
        _finish(item, ItemState.FAILED, "This snapshot is no longer in the team's account.")
    except SnapshotInUse as error:
        _finish(item, ItemState.FAILED, str(error))
    except (ValueError, DecryptionError) as error:
        _finish(item, ItemState.FAILED, f"No usable credentials: {error}")
    except OscApiError as error:
        if not error.transient or item.attempts >= MAX_ITEM_ATTEMPTS:
            tried = f" (after {item.attempts} attempts)" if error.transient else ""
            _finish(item, ItemState.FAILED, f"The API refused{tried}: {error}")
            return
        delay = retry_delay(item.attempts)
        BulkItem.objects.filter(pk=item.pk, state=ItemState.RUNNING).update(
            state=ItemState.QUEUED,
            enqueued_at=timezone.now() + timedelta(seconds=delay),
            message=clip_text(BulkItem, "message", f"Temporary API problem, will retry: {error}"),
            updated_at=timezone.now(),
        )
        raise TransientSubmitError(delay) from None
    else:
        _finish(item, state, message)


def items_sweep(*, now: datetime | None = None) -> int:
    """Sends again the items the broker lost or a dead worker held, and fills the window of
    any action whose next items were never let in; returns how many were sent."""
    now = now or timezone.now()
    sent = 0
    lost = BulkItem.objects.filter(
        state=ItemState.QUEUED, enqueued_at__lt=now - LOST_IN_QUEUE_AFTER
    )
    for item_id in list(lost.values_list("pk", flat=True)[:500]):
        if BulkItem.objects.filter(pk=item_id, state=ItemState.QUEUED).update(enqueued_at=now):
            sent += item_enqueue(item_id=item_id)
    stuck = BulkItem.objects.filter(
        state=ItemState.RUNNING, claimed_at__lt=now - STUCK_SUBMITTING_AFTER
    )
    for item_id in list(stuck.values_list("pk", flat=True)[:500]):
        if BulkItem.objects.filter(pk=item_id, state=ItemState.RUNNING).update(
            state=ItemState.QUEUED, enqueued_at=now, updated_at=now
        ):
            sent += item_enqueue(item_id=item_id)
    waiting = BulkItem.objects.filter(state=ItemState.WAITING).values_list("action_id", flat=True)
    for action_id in set(waiting[:500]):
        sent += items_start(action_id=action_id)
    return sent
