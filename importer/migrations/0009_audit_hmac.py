# Written by hand (issue 11): the audit chain signed with HMAC-SHA256 under PORTAL_AUDIT_KEY,
# failed logins counted per address and minute, and on PostgreSQL a trigger refusing TRUNCATE.

import django.db.models.deletion
from django.db import migrations, models

import importer.audit.triggers

ALGORITHMS = [
    ("sha256", "SHA-256 (before the audit key)"),
    ("hmac-sha256", "HMAC-SHA256 under the audit key"),
]


class Migration(migrations.Migration):
    dependencies = [("importer", "0008_webhook_url_encrypted")]

    operations = [
        # The entries written so far were hashed with plain SHA-256: mark them so (the column's
        # default fills them, no UPDATE runs), then new entries default to the signed kind.
        migrations.AddField(
            model_name="auditevent",
            name="algorithm",
            field=models.CharField(choices=ALGORITHMS, default="sha256", max_length=16),
        ),
        migrations.AlterField(
            model_name="auditevent",
            name="algorithm",
            field=models.CharField(choices=ALGORITHMS, default="hmac-sha256", max_length=16),
        ),
        migrations.AddField(
            model_name="auditevent",
            name="key_id",
            field=models.CharField(blank=True, default="", max_length=16),
        ),
        migrations.CreateModel(
            name="LoginFailureTally",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("address", models.CharField(blank=True, max_length=45)),
                ("minute", models.DateTimeField()),
                ("count", models.PositiveIntegerField(default=1)),
                ("usernames", models.JSONField(blank=True, default=list)),
                ("last_at", models.DateTimeField()),
                (
                    "entry",
                    models.ForeignKey(
                        db_constraint=False,
                        on_delete=django.db.models.deletion.DO_NOTHING,
                        related_name="+",
                        to="importer.auditevent",
                    ),
                ),
            ],
            options={
                "constraints": [
                    models.UniqueConstraint(
                        fields=("address", "minute"), name="login_tally_once_a_minute"
                    )
                ],
            },
        ),
        *importer.audit.triggers.no_truncate_migration_operations(),
    ]
