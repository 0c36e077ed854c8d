from __future__ import annotations

from django.urls import path

from importer.transfers import views

urlpatterns = [
    path("snapshots/<str:snapshot_id>/export", views.export_new, name="export_new"),
    path("snapshots/<str:snapshot_id>/copy", views.copy_new, name="copy_new"),
    path("exports/poll", views.transfers_poll, name="transfers_poll"),
    path("exports/<uuid:export_id>", views.export_detail, name="export_detail"),
    path("exports/<uuid:export_id>/cancel", views.export_cancel, name="export_cancel"),
    path("exports/<uuid:export_id>/share", views.export_share, name="export_share"),
    path("copies/<uuid:copy_id>", views.copy_detail, name="copy_detail"),
    path("team/transfers/", views.transfer_settings, name="transfer_settings"),
]
