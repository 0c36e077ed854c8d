from __future__ import annotations

import socket

from celery import shared_task
from django.utils import timezone

from importer.jobs.models import WorkerHeartbeat


@shared_task(name="importer.tasks.record_worker_heartbeat", ignore_result=True)
def record_worker_heartbeat() -> None:
    """Beat sends this every 30 s; whichever worker takes it records that it is alive."""
    WorkerHeartbeat.objects.update_or_create(
        hostname=socket.gethostname(), defaults={"seen_at": timezone.now()}
    )
