from __future__ import annotations

import os
from pathlib import Path

# Before anything imports prometheus_client, which reads it once: every process (gunicorn
# workers, Celery prefork children) writes its metrics into files in this one folder, and
# /metrics sums them (importer.core.metrics). Same default folder as settings.VAR_DIR.
_var_dir = Path(os.environ.get("PORTAL_VAR_DIR", Path(__file__).resolve().parent.parent / "var"))
# Set but empty counts as unset: prometheus_client would write its files into the current folder.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(_var_dir / "metrics")
Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]).mkdir(parents=True, exist_ok=True)

# Load the Celery app with Django so that @shared_task binds to it in every process.
from snapshots_portal.celery import app as celery_app  # noqa: E402

__all__ = ("celery_app",)
