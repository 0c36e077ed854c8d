"""What django.contrib.auth's login signals leave in the audit log (connected in apps.py)."""

from __future__ import annotations

from typing import Any

from importer.audit.addresses import client_ip
from importer.audit.chain import record
from importer.audit.lockout import record_login_failure
from importer.audit.models import AuditAction


def audit_login(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    record(action=AuditAction.LOGIN, actor=user, ip=client_ip(request) if request else None)


def audit_logout(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    if user is not None:
        record(
            action=AuditAction.LOGOUT,
            actor=user,
            ip=client_ip(request) if request else None,
        )


def audit_login_failed(
    sender: Any, credentials: dict[str, Any], request: Any = None, **kwargs: Any
) -> None:
    # Only the name tried: never the password Django already masks in `credentials`. One audit
    # entry per address and minute, the rest counted beside it: anonymous requests cannot grow
    # the log without bound.
    record_login_failure(
        username=str(credentials.get("username", "")),
        ip=client_ip(request) if request else None,
    )
