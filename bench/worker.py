"""A real Celery worker with kill points: `python -m bench.worker <celery worker options>`.

The reliability bench arms a step by creating `arm-<step>` in `BENCH_KILL_DIR`; the first worker
reaching that step renames it to `fired-<step>-<pid>` (atomic: only one worker takes it) and, for
the `pause` steps, stops there until the bench SIGKILLs it. Steps that must die with the request
out (`request_out`, `tagging`, `poll`) only mark and go on: the sandbox holds the answer.
"""

from __future__ import annotations

import os
import sys
import time
from functools import wraps
from pathlib import Path
from typing import Any

PAUSE_STEPS = {"before_create", "after_answer"}


def reached(step: str) -> None:
    folder = os.environ.get("BENCH_KILL_DIR")
    if not folder:
        return
    try:
        os.rename(Path(folder) / f"arm-{step}", Path(folder) / f"fired-{step}-{os.getpid()}")
    except FileNotFoundError:
        return
    if step in PAUSE_STEPS:
        time.sleep(600)  # the bench kills this process long before


def _hooked(function: Any, *steps: str) -> Any:
    @wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        for step in steps:
            reached(step)
        return function(*args, **kwargs)

    return wrapper


def install_kill_points() -> None:
    import django

    django.setup()
    from importer.imports import services
    from importer.outscale.client import OscClient

    OscClient.create_snapshot = _hooked(  # type: ignore[method-assign]
        OscClient.create_snapshot, "before_create", "request_out"
    )
    OscClient.create_tags = _hooked(OscClient.create_tags, "tagging")  # type: ignore[method-assign]
    OscClient.read_snapshots_page = _hooked(  # type: ignore[method-assign]
        OscClient.read_snapshots_page, "poll"
    )
    services._accept = _hooked(services._accept, "after_answer")  # type: ignore[attr-defined]


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "snapshots_portal.settings")
    install_kill_points()
    from celery.bin.celery import main as celery_main

    sys.argv = ["celery", "-A", "snapshots_portal", *sys.argv[1:]]
    celery_main()


if __name__ == "__main__":
    main()
