from __future__ import annotations

from typing import Any

from django.apps import AppConfig


class ImporterConfig(AppConfig):
    name = "importer"
    verbose_name = "Snapshot imports"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Logins happen inside django.contrib.auth: its signals are the only place to see them.
        from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed

        user_logged_in.connect(_audit_login, dispatch_uid="audit-login")
        user_logged_out.connect(_audit_logout, dispatch_uid="audit-logout")
        user_login_failed.connect(_audit_login_failed, dispatch_uid="audit-login-failed")


def _audit_login(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    from importer import audit

    audit.record(
        action=audit.AuditAction.LOGIN, actor=user, ip=audit.client_ip(request) if request else None
    )


def _audit_logout(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    from importer import audit

    if user is not None:
        audit.record(
            action=audit.AuditAction.LOGOUT,
            actor=user,
            ip=audit.client_ip(request) if request else None,
        )


def _audit_login_failed(
    sender: Any, credentials: dict[str, Any], request: Any = None, **kwargs: Any
) -> None:
    from importer import audit, lockout

    # Only the name tried: never the password Django already masks in `credentials`. One audit
    # entry per address and minute, the rest counted beside it: anonymous requests cannot grow
    # the log without bound.
    lockout.record_login_failure(
        username=str(credentials.get("username", "")),
        ip=audit.client_ip(request) if request else None,
    )
