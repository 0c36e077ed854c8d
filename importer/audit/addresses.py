from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

from django.conf import settings
from django.http import HttpRequest

if TYPE_CHECKING:
    pass


def normalised_ip(raw: str | None) -> str | None:
    """The address as PostgreSQL's inet gives it back, or None when it is not an address."""
    if not raw:
        return None
    try:
        address = ipaddress.ip_address(raw.strip().split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def client_ip(request: HttpRequest) -> str | None:
    """The client's address, as the audit log and the login lock-out (django-axes) both see it.

    REMOTE_ADDR; behind the TLS proxy (PORTAL_BEHIND_TLS_PROXY), the X-Forwarded-For entry that
    the outermost of the PORTAL_PROXY_COUNT proxies appended. Each proxy appends the address it
    was reached from, so the entries left of that one are whatever the client sent, and are
    ignored. None when there is no usable address.
    """
    remote = normalised_ip(request.META.get("REMOTE_ADDR"))
    if not getattr(settings, "PORTAL_BEHIND_TLS_PROXY", False):
        return remote
    forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    forwarded = [part for part in forwarded if part]
    if not forwarded:
        return remote
    proxies = max(1, int(getattr(settings, "PORTAL_PROXY_COUNT", 1)))
    # Fewer entries than proxies: the request skipped the outer ones, and every entry there was
    # written by a proxy, so the left-most is the nearest thing to the client.
    written_by_outermost = forwarded[-proxies] if len(forwarded) >= proxies else forwarded[0]
    return normalised_ip(written_by_outermost) or remote
