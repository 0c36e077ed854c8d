"""The Celery app: `celery -A snapshots_portal worker` and `celery -A snapshots_portal beat`."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "snapshots_portal.settings")

app = Celery("snapshots_portal")
# Every Celery setting lives in Django's settings under the CELERY_ prefix.
app.config_from_object("django.conf:settings", namespace="CELERY")
# Each part of the app that has background work keeps it in its own tasks module.
app.autodiscover_tasks(
    [
        "importer.jobs",
        "importer.imports",
        "importer.transfers",
        "importer.lifecycle",
        "importer.notifications",
        "importer.bulk",
    ]
)
