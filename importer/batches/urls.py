from __future__ import annotations

from django.urls import path

from importer.batches import views

urlpatterns = [
    path("imports/batches/new", views.batch_new, name="batch_new"),
    path("imports/batches/create", views.batch_create, name="batch_create"),
    path("imports/batches/<uuid:batch_id>", views.batch_detail, name="batch_detail"),
    path("imports/batches/<uuid:batch_id>/export.csv", views.batch_csv, name="batch_csv"),
    path("imports/batches/<uuid:batch_id>/retry", views.batch_retry, name="batch_retry"),
    path(
        "imports/batches/<uuid:batch_id>/retry/confirm",
        views.batch_retry_confirm,
        name="batch_retry_confirm",
    ),
]
