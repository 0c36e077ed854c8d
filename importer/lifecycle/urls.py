from __future__ import annotations

from django.urls import path

from importer.lifecycle import views

urlpatterns = [
    path("snapshots/<str:snapshot_id>/", views.snapshot_detail, name="snapshot_detail"),
    path("snapshots/<str:snapshot_id>/made", views.made_poll, name="snapshot_made_poll"),
    path("snapshots/<str:snapshot_id>/volume", views.volume_new, name="volume_new"),
    path("snapshots/<str:snapshot_id>/omi", views.image_new, name="image_new"),
    path(
        "snapshots/<str:snapshot_id>/copy-snapshot",
        views.snapshot_copy_new,
        name="snapshot_copy_new",
    ),
    path(
        "snapshots/<str:snapshot_id>/permissions",
        views.permissions_edit,
        name="permissions_edit",
    ),
    path("snapshots/<str:snapshot_id>/tags", views.tags_edit, name="tags_edit"),
    path("made/<uuid:job_id>", views.derived_detail, name="derived_detail"),
]
