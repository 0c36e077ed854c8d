# The webhook URL is stored encrypted, with a redacted form to show and audit.

from typing import Any

from django.db import migrations, models


def _encrypt_urls(apps: Any, schema_editor: Any) -> None:
    from importer.core.crypto import encrypt_text
    from importer.core.redaction import redact_destination

    TeamWebhook = apps.get_model("importer", "TeamWebhook")
    for webhook in TeamWebhook.objects.all():
        webhook.url_encrypted = encrypt_text(webhook.url)
        webhook.url_redacted = redact_destination(webhook.url)
        webhook.save(update_fields=["url_encrypted", "url_redacted"])


class Migration(migrations.Migration):
    dependencies = [("importer", "0007_copy_import_id")]

    operations = [
        migrations.AddField(
            model_name="teamwebhook",
            name="url_encrypted",
            field=models.TextField(default=""),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="teamwebhook",
            name="url_redacted",
            field=models.CharField(default="", max_length=300),
            preserve_default=False,
        ),
        migrations.RunPython(_encrypt_urls, migrations.RunPython.noop),
        migrations.RemoveField(model_name="teamwebhook", name="url"),
    ]
