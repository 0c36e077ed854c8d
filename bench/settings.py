"""The portal's settings plus the bench's URLs (trivial views to compare the poll endpoint with)."""

from __future__ import annotations

from snapshots_portal.settings import *  # noqa: F403

ROOT_URLCONF = "bench.urls"
