from __future__ import annotations

from django.apps import AppConfig


class ImporterConfig(AppConfig):
    name = "importer"
    verbose_name = "Snapshot imports"
    default_auto_field = "django.db.models.BigAutoField"
