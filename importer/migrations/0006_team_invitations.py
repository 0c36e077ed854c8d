# Team invitations (a user joins a team by accepting one) and the remembered current team.
#
# Data-safe: existing memberships keep their created_at as their joining date (they were made
# when the user was added, which was when they joined); nobody has a remembered team yet, so a
# user in several teams is asked once which one to work in.

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models

import importer.teams.models


class Migration(migrations.Migration):
    dependencies = [
        ("importer", "0005_exports"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AlterField(
            model_name="membership",
            name="created_at",
            field=models.DateTimeField(
                default=django.utils.timezone.now,
                help_text="When the user joined the team",
                verbose_name="joined",
            ),
        ),
        migrations.AddField(
            model_name="membership",
            name="is_current",
            field=models.BooleanField(default=False),
        ),
        migrations.AddConstraint(
            model_name="membership",
            constraint=models.UniqueConstraint(
                condition=models.Q(("is_current", True)),
                fields=("user",),
                name="membership_one_current",
            ),
        ),
        migrations.CreateModel(
            name="TeamInvitation",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "role",
                    models.CharField(
                        choices=[
                            ("operator", "Operator"),
                            ("admin", "Team admin"),
                            ("auditor", "Auditor"),
                        ],
                        max_length=10,
                    ),
                ),
                (
                    "state",
                    models.CharField(
                        choices=[
                            ("pending", "Pending"),
                            ("accepted", "Accepted"),
                            ("declined", "Declined"),
                            ("revoked", "Revoked"),
                            ("expired", "Expired"),
                        ],
                        default="pending",
                        max_length=10,
                    ),
                ),
                ("created_at", models.DateTimeField(default=django.utils.timezone.now)),
                (
                    "expires_at",
                    models.DateTimeField(default=importer.teams.models.invitation_expiry),
                ),
                (
                    "answered_at",
                    models.DateTimeField(
                        blank=True,
                        help_text="When it was accepted, declined, revoked or expired",
                        null=True,
                    ),
                ),
                (
                    "invited_by",
                    models.ForeignKey(
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                (
                    "team",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="invitations",
                        to="importer.team",
                    ),
                ),
                (
                    "user",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="team_invitations",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={
                "ordering": ["-created_at", "-id"],
                "indexes": [
                    models.Index(fields=["user", "state"], name="invitation_user_state_idx")
                ],
                "constraints": [
                    models.UniqueConstraint(
                        condition=models.Q(("state", "pending")),
                        fields=("team", "user"),
                        name="invitation_one_pending_per_team_user",
                    )
                ],
            },
        ),
        migrations.AlterField(
            model_name="auditevent",
            name="action",
            field=models.CharField(
                choices=[
                    ("login", "Signed in"),
                    ("login_failed", "Failed sign-in"),
                    ("logout", "Signed out"),
                    ("import_submitted", "Import submitted"),
                    ("job_state", "Import state changed"),
                    ("tag_result", "Snapshot tagging"),
                    ("snapshot_deleted", "Snapshot deleted"),
                    ("credentials_changed", "Credentials changed"),
                    ("membership_changed", "Membership changed"),
                    ("csv_export", "Audit log exported"),
                    ("export_requested", "Export requested"),
                    ("export_state", "Export state changed"),
                    ("export_cancelled", "Export cancel requested"),
                    ("url_shared", "Pre-signed URL created"),
                    ("copy_requested", "Copy to another team requested"),
                    ("copy_state", "Copy state changed"),
                    ("notification_requested", "Notification requested"),
                    ("notification_sent", "Notification sent"),
                    ("webhook_changed", "Team transfer settings changed"),
                    ("invitation_sent", "Invitation sent"),
                    ("invitation_revoked", "Invitation revoked"),
                    ("invitation_accepted", "Invitation accepted"),
                    ("invitation_declined", "Invitation declined"),
                ],
                max_length=40,
            ),
        ),
    ]
