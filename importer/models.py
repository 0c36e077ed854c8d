"""Every model of the app, re-exported so that Django finds them under the one label "importer".

Code imports a model from its part (`importer.imports.models`, `importer.teams.models`, ...);
this module only gathers them.
"""

from __future__ import annotations

from importer.audit.models import AuditEvent, LoginFailureTally
from importer.batches.models import ImportBatch
from importer.bulk.models import BulkAction, BulkItem
from importer.imports.models import ImportJob, ImportJobEvent
from importer.jobs.models import WorkerHeartbeat
from importer.lifecycle.models import DerivedEvent, DerivedJob
from importer.notifications.models import NotificationRequest, TeamWebhook, WebhookDelivery
from importer.teams.models import Membership, Team, TeamInvitation
from importer.transfers.models import (
    CopyChain,
    CopyEvent,
    ExportEvent,
    ExportTask,
    SharedUrl,
)

__all__ = [
    "AuditEvent",
    "BulkAction",
    "BulkItem",
    "CopyChain",
    "CopyEvent",
    "ImportBatch",
    "DerivedEvent",
    "DerivedJob",
    "ExportEvent",
    "ExportTask",
    "ImportJob",
    "ImportJobEvent",
    "LoginFailureTally",
    "Membership",
    "NotificationRequest",
    "SharedUrl",
    "Team",
    "TeamInvitation",
    "TeamWebhook",
    "WebhookDelivery",
    "WorkerHeartbeat",
]
