from __future__ import annotations

from django.urls import path

from importer.bulk import views

urlpatterns = [
    path("bulk/export", views.bulk_export, name="bulk_export"),
    path("bulk/copy", views.bulk_copy, name="bulk_copy"),
    path("bulk/tags", views.bulk_tags, name="bulk_tags"),
    path("bulk/delete", views.bulk_delete, name="bulk_delete"),
    path("bulk/<uuid:bulk_id>", views.bulk_detail, name="bulk_detail"),
]
