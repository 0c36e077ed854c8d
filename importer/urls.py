"""Every page of the app, each part's own urls included (their paths do not overlap)."""

from __future__ import annotations

from django.urls import include, path

urlpatterns = [
    path("", include("importer.ops.urls")),
    path("", include("importer.imports.urls")),
    path("", include("importer.teams.urls")),
    path("", include("importer.audit.urls")),
    path("", include("importer.transfers.urls")),
    path("", include("importer.lifecycle.urls")),
    path("", include("importer.batches.urls")),
    path("", include("importer.bulk.urls")),
    path("", include("importer.notifications.urls")),
]
