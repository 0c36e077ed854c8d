from __future__ import annotations

from django.urls import path

from importer.batches import views

urlpatterns = [
    path("imports/batches/new", views.batch_new, name="batch_new"),
    path("imports/batches/create", views.batch_create, name="batch_create"),
    path("imports/batches/<uuid:batch_id>", views.batch_detail, name="batch_detail"),
]
