from __future__ import annotations

from django.urls import path

from importer import export_views

urlpatterns = [
    path("snapshots/<str:snapshot_id>/export", export_views.export_new, name="export_new"),
    path("snapshots/<str:snapshot_id>/copy", export_views.copy_new, name="copy_new"),
    path("exports/poll", export_views.transfers_poll, name="transfers_poll"),
    path("exports/<uuid:export_id>", export_views.export_detail, name="export_detail"),
    path("exports/<uuid:export_id>/cancel", export_views.export_cancel, name="export_cancel"),
    path("exports/<uuid:export_id>/share", export_views.export_share, name="export_share"),
    path("copies/<uuid:copy_id>", export_views.copy_detail, name="copy_detail"),
    path("notify/<str:kind>/<uuid:object_id>", export_views.notify_request, name="notify_request"),
    path("team/transfers/", export_views.transfer_settings, name="transfer_settings"),
]
