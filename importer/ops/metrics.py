"""/metrics: the processes' counters summed from the multiprocess folder, and what the database
knows read at scrape time (so no process has to keep a gauge current)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime

from django.db.models import Count, Max, Min
from django.db.utils import Error as DatabaseError
from django.utils import timezone
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from importer.imports.models import ImportJob, JobState
from importer.jobs.models import WorkerHeartbeat

# The format generate_latest writes, which every Prometheus server reads.
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4

logger = logging.getLogger(__name__)


class DatabaseCollector(Collector):
    """Imports by state, the team queues' oldest waiting import, the newest worker heartbeat."""

    def collect(self) -> Iterator[Metric]:
        try:
            by_state, oldest_waiting, last_heartbeat = self._read()
        except DatabaseError as error:
            logger.warning("metrics: the database did not answer: %s", type(error).__name__)
            yield _gauge("portal_database_up", "Whether the database answered this scrape.", 0)
            return
        yield _gauge("portal_database_up", "Whether the database answered this scrape.", 1)
        imports = GaugeMetricFamily(
            "portal_imports", "Import jobs in the database by state.", labels=["state"]
        )
        for state in JobState.values:
            imports.add_metric([state], by_state.get(state, 0))
        yield imports
        now = timezone.now()
        yield _gauge(
            "portal_imports_waiting_oldest_seconds",
            "Age of the oldest import waiting for a slot in its team's queue (0: none waits).",
            (now - oldest_waiting).total_seconds() if oldest_waiting else 0,
        )
        if last_heartbeat is not None:  # no worker ever seen: absent, for absent() alerts
            yield _gauge(
                "portal_worker_heartbeat_age_seconds",
                "Seconds since the newest heartbeat of any Celery worker.",
                (now - last_heartbeat).total_seconds(),
            )

    @staticmethod
    def _read() -> tuple[dict[str, int], datetime | None, datetime | None]:
        rows = ImportJob.objects.order_by().values_list("state").annotate(count=Count("pk"))
        by_state: dict[str, int] = dict(rows)
        waiting = ImportJob.objects.filter(state=JobState.WAITING).aggregate(at=Min("created_at"))
        heartbeat = WorkerHeartbeat.objects.aggregate(at=Max("seen_at"))
        return by_state, waiting["at"], heartbeat["at"]


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def metrics_text() -> bytes:
    """The Prometheus text of every process's metrics plus the database's."""
    registry = CollectorRegistry()
    # Always multiprocess (snapshots_portal sets the folder). It registers itself and reads the
    # folder at each scrape; prometheus_client ships no types for it.
    MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    registry.register(DatabaseCollector())
    return generate_latest(registry)
