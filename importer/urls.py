from __future__ import annotations

from django.urls import path

from importer import views

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("healthz", views.healthz, name="healthz"),
    path("imports/new", views.import_new, name="import_new"),
    path("imports/inspect", views.import_inspect, name="import_inspect"),
    path("imports/poll", views.imports_poll, name="imports_poll"),
    path("imports/<uuid:job_id>", views.import_detail, name="import_detail"),
]
