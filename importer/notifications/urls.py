from __future__ import annotations

from django.urls import path

from importer.notifications import views

urlpatterns = [
    path("notify/<str:kind>/<uuid:object_id>", views.notify_request, name="notify_request"),
]
