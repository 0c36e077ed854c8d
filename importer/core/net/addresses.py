from __future__ import annotations

import ipaddress
import socket

from importer.core.net.guard import (
    ForbiddenAddress,
    Policy,
    Resolver,
    Target,
    UnresolvableHost,
    check_url,
    is_ip_literal,
)

_EXTRA_FORBIDDEN_NETWORKS = tuple(
    ipaddress.ip_network(network)
    for network in (
        "0.0.0.0/8",
        "100.64.0.0/10",  # carrier-grade NAT
        "192.0.0.0/24",
        "198.18.0.0/15",
        "240.0.0.0/4",
        "64:ff9b:1::/48",  # local-use NAT64
        "fc00::/7",
        "fec0::/10",
    )
)


_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")


def forbidden_reason(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why connecting to ``address`` could reach something internal, or None if it is public."""
    if isinstance(address, ipaddress.IPv6Address):
        for inner in _embedded_ipv4(address):
            reason = forbidden_reason(inner)
            if reason:
                return f"{reason} ({inner} embedded)"
        translated = address.ipv4_mapped or (
            ipaddress.IPv4Address(int(address) & 0xFFFFFFFF) if address in _NAT64 else None
        )
        if translated is not None:
            # Mapped and NAT64 addresses reach exactly their IPv4 address, already found public.
            return None
    checks = (
        (address.is_loopback, "a loopback address"),
        (address.is_link_local, "a link-local address (where cloud metadata services live)"),
        (address.is_multicast, "a multicast address"),
        (address.is_unspecified, "an unspecified address"),
        (address.is_reserved, "a reserved address"),
        (address.is_private, "a private address"),
        (any(address in net for net in _EXTRA_FORBIDDEN_NETWORKS), "a non-public address"),
        (not address.is_global, "a non-public address"),
    )
    for failed, reason in checks:
        if failed:
            return reason
    return None


def _embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    embedded: list[ipaddress.IPv4Address] = []
    if address.ipv4_mapped:
        embedded.append(address.ipv4_mapped)
    if address.sixtofour:
        embedded.append(address.sixtofour)
    if address.teredo:
        embedded.extend(address.teredo)
    if address in _NAT64 or (address in _IPV4_COMPATIBLE and int(address) > 1):
        embedded.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return embedded


def _resolve(host: str, port: int, resolver: Resolver) -> list[str]:
    try:
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        pass
    try:
        entries = list(resolver(host, port, 0, socket.SOCK_STREAM))
        addresses = [str(entry[4][0]).partition("%")[0] for entry in entries]
    except (OSError, UnicodeError, IndexError, TypeError):
        raise UnresolvableHost(f"Could not resolve {host}: check the host name.") from None
    if not addresses:
        raise UnresolvableHost(f"Could not resolve {host}: no address found.")
    return addresses


def checked_address(target: Target, policy: Policy) -> str:
    """Resolve once; every address must be public; return the one to dial.

    The only exception is a host the deployment listed exactly (host:port) while relaxing the
    scheme for a local run: the sandbox on loopback.
    """
    addresses = _resolve(target.host, target.port, policy.resolver)
    # A trusted endpoint written as an address is the deployer's own choice of address; a
    # trusted name is still resolved and checked (its DNS is not the deployer's to vouch for).
    trusted_address = target.trusted and is_ip_literal(target.host)
    if trusted_address or (policy.allow_http and target.exact):
        return addresses[0]
    for text in addresses:
        try:
            reason = forbidden_reason(ipaddress.ip_address(text))
        except ValueError:
            reason = "not an IP address"
        if reason:
            raise ForbiddenAddress(
                f"Refused to contact {target.host}: it resolves to {text}, {reason}. Only "
                f"public addresses are contacted for the {policy.purpose}."
            )
    return addresses[0]


def check_destination(raw: str, policy: Policy) -> Target:
    """check_url, then resolve the host and check every address: what a form does on save."""
    target = check_url(raw, policy)
    checked_address(target, policy)
    return target
