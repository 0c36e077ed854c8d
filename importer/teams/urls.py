from __future__ import annotations

from django.urls import path

from importer.teams import views

urlpatterns = [
    path("team/members/", views.members, name="team_members"),
    path("team/members/<int:membership_id>/role", views.member_role, name="member_role"),
    path("team/members/<int:membership_id>/remove", views.member_remove, name="member_remove"),
    path(
        "team/invitations/<int:invitation_id>/revoke",
        views.invitation_revoke,
        name="invitation_revoke",
    ),
    path("invitations/", views.invitations, name="invitations"),
    path(
        "invitations/<int:invitation_id>/accept", views.invitation_accept, name="invitation_accept"
    ),
    path(
        "invitations/<int:invitation_id>/decline",
        views.invitation_decline,
        name="invitation_decline",
    ),
    path("team/credentials/", views.credentials, name="team_credentials"),
    path("team/queue", views.import_queue, name="team_queue"),
    path("team/choose", views.team_choose, name="team_choose"),
    path("team/switch", views.team_switch, name="team_switch"),
]
