from __future__ import annotations

from django.urls import path

from importer import member_views, team_views

urlpatterns = [
    path("history/", team_views.history, name="history"),
    path("history.csv", team_views.history_csv, name="history_csv"),
    path("audit/", team_views.audit_log, name="audit_log"),
    path("audit.csv", team_views.audit_log_csv, name="audit_log_csv"),
    path("team/members/", member_views.members, name="team_members"),
    path("team/members/<int:membership_id>/role", member_views.member_role, name="member_role"),
    path(
        "team/members/<int:membership_id>/remove", member_views.member_remove, name="member_remove"
    ),
    path(
        "team/invitations/<int:invitation_id>/revoke",
        member_views.invitation_revoke,
        name="invitation_revoke",
    ),
    path("invitations/", member_views.invitations, name="invitations"),
    path(
        "invitations/<int:invitation_id>/accept",
        member_views.invitation_accept,
        name="invitation_accept",
    ),
    path(
        "invitations/<int:invitation_id>/decline",
        member_views.invitation_decline,
        name="invitation_decline",
    ),
    path("team/credentials/", team_views.credentials, name="team_credentials"),
    path("team/choose", member_views.team_choose, name="team_choose"),
    path("team/switch", member_views.team_switch, name="team_switch"),
    path("snapshots/<str:snapshot_id>/delete", team_views.snapshot_delete, name="snapshot_delete"),
    path("imports/<uuid:job_id>/retry", team_views.import_retry, name="import_retry"),
]
