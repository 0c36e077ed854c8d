from __future__ import annotations

from django.urls import path

from importer.imports import history, views

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("imports/new", views.import_new, name="import_new"),
    path("imports/inspect", views.import_inspect, name="import_inspect"),
    path("imports/poll", views.imports_poll, name="imports_poll"),
    path("imports/<uuid:job_id>", views.import_detail, name="import_detail"),
    path("imports/<uuid:job_id>/retry", views.import_retry, name="import_retry"),
    path("snapshots/<str:snapshot_id>/delete", views.snapshot_delete, name="snapshot_delete"),
    path("history/", history.history, name="history"),
    path("history.csv", history.history_csv, name="history_csv"),
]
