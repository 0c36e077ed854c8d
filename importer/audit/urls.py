from __future__ import annotations

from django.urls import path

from importer.audit import views

urlpatterns = [
    path("audit/", views.audit_log, name="audit_log"),
    path("audit.csv", views.audit_log_csv, name="audit_log_csv"),
]
