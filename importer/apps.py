from __future__ import annotations

from django.apps import AppConfig


class ImporterConfig(AppConfig):
    name = "importer"
    verbose_name = "Snapshot imports"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Logins happen inside django.contrib.auth: its signals are the only place to see them.
        from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed

        from importer.audit import signals

        user_logged_in.connect(signals.audit_login, dispatch_uid="audit-login")
        user_logged_out.connect(signals.audit_logout, dispatch_uid="audit-logout")
        user_login_failed.connect(signals.audit_login_failed, dispatch_uid="audit-login-failed")
