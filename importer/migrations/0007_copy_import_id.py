# A random import id per copy chain: it was derived from the chain's id (uuid5), which is in
# every copy link, so anyone who saw the link could compute the import's id and ClientToken.
#
# Data-safe: a chain that already made its import keeps that import's id; every other chain
# draws its own random id, row by row (one default for the whole table would break uniqueness).

import uuid

from django.db import migrations, models


def draw_import_ids(apps, schema_editor):
    CopyChain = apps.get_model("importer", "CopyChain")
    for chain in CopyChain.objects.filter(import_id__isnull=True).only("pk", "import_job_id"):
        planned = chain.import_job_id or uuid.uuid4()
        CopyChain.objects.filter(pk=chain.pk).update(import_id=planned)


class Migration(migrations.Migration):
    dependencies = [("importer", "0006_team_invitations")]

    operations = [
        migrations.AddField(
            model_name="copychain",
            name="import_id",
            field=models.UUIDField(editable=False, null=True),
        ),
        migrations.RunPython(draw_import_ids, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="copychain",
            name="import_id",
            field=models.UUIDField(default=uuid.uuid4, editable=False, unique=True),
        ),
    ]
