from __future__ import annotations

from typing import Any

from axes.attempts import get_cool_off_threshold
from axes.handlers.database import AxesDatabaseHandler
from axes.helpers import get_failure_limit
from axes.models import AccessAttempt
from django.conf import settings
from django.db import transaction
from django.db.models import Sum
from django.http import HttpRequest
from django.utils import timezone

from importer.audit.addresses import normalised_ip
from importer.audit.chain import lock_chain, record, redact_details
from importer.audit.models import (
    ACTOR_NAME_LENGTH,
    MAX_NAMES_PER_TALLY,
    AuditAction,
    LoginFailureTally,
)


def record_login_failure(*, username: str, ip: str | None) -> LoginFailureTally:
    """Counts one failed login: an audit entry if it is the address's first this minute."""
    name = str(redact_details(username))[:ACTOR_NAME_LENGTH]
    address = normalised_ip(ip) or ""
    with transaction.atomic():
        # The chain's lock also serialises the tallies: one writer decides "first this minute".
        lock_chain()
        now = timezone.now()
        minute = now.replace(second=0, microsecond=0)
        tally = LoginFailureTally.objects.filter(address=address, minute=minute).first()
        if tally is None:
            entry = record(
                action=AuditAction.LOGIN_FAILED, actor_name=name, target=name, ip=address
            )
            return LoginFailureTally.objects.create(
                address=address, minute=minute, usernames=[name], last_at=now, entry=entry
            )
        tally.count += 1
        tally.last_at = now
        if name not in tally.usernames and len(tally.usernames) < MAX_NAMES_PER_TALLY:
            tally.usernames.append(name)
        tally.save(update_fields=["count", "last_at", "usernames"])
        return tally


def address_failures(request: HttpRequest) -> int:
    """Failed logins from the request's address within the cool-off time, whatever the name."""
    address = getattr(request, "axes_ip_address", None)
    if not address or settings.AXES_COOLOFF_TIME is None:
        return 0
    attempts = AccessAttempt.objects.filter(
        ip_address=address, attempt_time__gte=get_cool_off_threshold(request)
    )
    total = attempts.aggregate(total=Sum("failures_since_start"))["total"]
    return int(total or 0)


class PortalAxesHandler(AxesDatabaseHandler):  # type: ignore[misc]  # axes has no type hints
    """Axes' database handler with a second limit: failed logins per address, any user name.

    Axes compares one failure count with one limit, for every parameter it locks on. This handler
    reports at least that limit once the address has reached its own, higher one, so that axes
    locks the address out with its usual answer. A successful login still resets only that user's
    failures from the address (axes' reset), not the other names tried from it.
    """

    def get_failures(self, request: HttpRequest, credentials: dict[str, Any] | None = None) -> int:
        failures = int(super().get_failures(request, credentials))
        if address_failures(request) >= settings.PORTAL_LOGIN_ADDRESS_FAILURE_LIMIT:
            return max(failures, int(get_failure_limit(request, credentials)))
        return failures
