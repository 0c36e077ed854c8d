"""Failed logins: the lock-out of an address beside django-axes' one of a user name, and their
audit entries, one per address and minute.

Axes locks a user name out from one address after PORTAL_LOGIN_FAILURE_LIMIT failures. That
leaves an address free to try every other name: :class:`PortalAxesHandler` also locks the address
out, whatever the names, after PORTAL_LOGIN_ADDRESS_FAILURE_LIMIT failures in the cool-off time.

Every failed login used to be an audit entry, so anyone could grow the log without signing in.
Now the first failure from an address in a minute is an audit entry (chained and signed like any
other) and the ones after it only raise that minute's :class:`LoginFailureTally`: the log grows by
at most one entry per address and minute.
"""

from __future__ import annotations

from typing import Any

from axes.attempts import get_cool_off_threshold
from axes.handlers.database import AxesDatabaseHandler
from axes.helpers import get_failure_limit
from axes.models import AccessAttempt
from django.conf import settings
from django.db import models, transaction
from django.db.models import Sum
from django.http import HttpRequest
from django.utils import timezone

from importer import audit

__all__ = ["LoginFailureTally", "PortalAxesHandler", "address_failures", "record_login_failure"]

# Distinct user names kept per tally: enough to see what was tried, bounded whatever is sent.
MAX_NAMES_PER_TALLY = 20


class LoginFailureTally(models.Model):
    """The failed logins from one address in one minute.

    `entry` is the audit entry of the first of them; `count` includes it. The tally is a counter
    beside the chain, not part of it: the chain proves that the first failure happened, not how
    many followed.
    """

    address = models.CharField(max_length=45, blank=True)  # "" when the address is unknown
    minute = models.DateTimeField()
    count = models.PositiveIntegerField(default=1)
    usernames = models.JSONField(default=list, blank=True)
    last_at = models.DateTimeField()
    entry = models.ForeignKey(
        audit.AuditEvent, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+"
    )

    class Meta:
        app_label = "importer"
        constraints = [
            models.UniqueConstraint(fields=["address", "minute"], name="login_tally_once_a_minute")
        ]

    def __str__(self) -> str:
        return f"{self.count} failed logins from {self.address or 'unknown'} at {self.minute:%H:%M}"


def record_login_failure(*, username: str, ip: str | None) -> LoginFailureTally:
    """Counts one failed login: an audit entry if it is the address's first this minute."""
    name = str(audit.redact_details(username))[: audit.ACTOR_NAME_LENGTH]
    address = audit.normalised_ip(ip) or ""
    with transaction.atomic():
        # The chain's lock also serialises the tallies: one writer decides "first this minute".
        audit.lock_chain()
        now = timezone.now()
        minute = now.replace(second=0, microsecond=0)
        tally = LoginFailureTally.objects.filter(address=address, minute=minute).first()
        if tally is None:
            entry = audit.record(
                action=audit.AuditAction.LOGIN_FAILED, actor_name=name, target=name, ip=address
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
