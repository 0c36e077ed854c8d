# Written by hand (issue 6): the audit trail and, on PostgreSQL, its append-only trigger.

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models

import importer.audit.triggers


class Migration(migrations.Migration):

    dependencies = [
        ("importer", "0003_teams"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="AuditEvent",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("at", models.DateTimeField(db_index=True, default=django.utils.timezone.now)),
                ("actor_name", models.CharField(blank=True, max_length=150)),
                ("team_name", models.CharField(blank=True, max_length=100)),
                (
                    "action",
                    models.CharField(
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
                        ],
                        max_length=40,
                    ),
                ),
                ("target", models.CharField(blank=True, max_length=255)),
                ("ip", models.GenericIPAddressField(blank=True, null=True)),
                ("details", models.JSONField(blank=True, default=dict)),
                ("prev_hash", models.CharField(max_length=64)),
                ("hash", models.CharField(max_length=64)),
                (
                    "actor",
                    models.ForeignKey(
                        blank=True,
                        db_constraint=False,
                        null=True,
                        on_delete=django.db.models.deletion.DO_NOTHING,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                (
                    "team",
                    models.ForeignKey(
                        blank=True,
                        db_constraint=False,
                        null=True,
                        on_delete=django.db.models.deletion.DO_NOTHING,
                        related_name="+",
                        to="importer.team",
                    ),
                ),
            ],
            options={
                "ordering": ["-at", "-id"],
                "indexes": [
                    models.Index(fields=["team", "-at"], name="audit_team_at_idx"),
                    models.Index(fields=["action", "-at"], name="audit_action_at_idx"),
                    models.Index(fields=["actor", "-at"], name="audit_actor_at_idx"),
                ],
            },
        ),
        *importer.audit.triggers.migration_operations(),
    ]
