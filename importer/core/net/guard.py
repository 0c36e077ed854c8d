from __future__ import annotations

import ipaddress
import socket
import ssl
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any

import idna
import requests

Resolver = Callable[..., Iterable[Sequence[Any]]]


def system_resolver(*args: Any) -> Iterable[Sequence[Any]]:
    """socket.getaddrinfo, looked up at call time (tests replace it to map names offline)."""
    return socket.getaddrinfo(*args)


DEFAULT_PORTS = {"https": 443, "http": 80}


MAX_URL_LENGTH = 4096


class DestinationRefused(ValueError):
    """The destination breaks the rules. The message says why and how to fix it, never a secret."""


class HostNotAllowed(DestinationRefused):
    """The host (or port) is not on the purpose's allow-list."""


class ForbiddenAddress(DestinationRefused):
    """The host resolves to an address that is not public."""


class UnresolvableHost(DestinationRefused):
    """The host name has no address (a typo, or DNS is down: a send retries it later)."""


class GuardRefusal(requests.exceptions.RequestException):
    """Raised from inside a guarded session: the rules refused this request. Never transient.

    ``reason`` is the DestinationRefused (or other) verdict behind it.
    """

    def __init__(self, message: str, *, reason: Exception | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.reason = reason


class UnresolvedHostError(requests.ConnectionError):
    """The host had no address at send time: DNS may be down for a moment, so it is transient."""


@dataclass(frozen=True)
class Policy:
    """Where one purpose may send requests, and how long and how much it may read.

    ``hosts`` are admitted on the default https port; ``bucket_hosts`` also admit
    ``<bucket>.<host>`` (S3 virtual-hosted style); ``extra_hosts`` entries are ``host`` (default
    https port) or ``host:port`` (that port only, and plain http too when ``allow_http``).
    """

    purpose: str
    example: str
    hosts: frozenset[str] = frozenset()
    bucket_hosts: frozenset[str] = frozenset()
    extra_hosts: tuple[str, ...] = ()
    any_public_host: bool = False
    allow_http: bool = False
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    total_timeout: float = 60.0
    max_response_bytes: int = 16 * 1024 * 1024
    resolver: Resolver = system_resolver
    ssl_context: ssl.SSLContext | None = None
    extra_hosts_setting: str = ""
    # What a refused host is told to use instead; "Use <example>" when empty.
    allowed_hint: str = ""
    # The deployment's own endpoint (OSC_ENDPOINT_API), as scheme://host:port: chosen by
    # whoever deploys, like DATABASE_URL, so admitted on exactly that scheme, host and port.
    trusted_origins: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # Fail at configuration time rather than on the first request.
        self.listed  # noqa: B018
        self.trusted  # noqa: B018
        if min(self.connect_timeout, self.read_timeout, self.total_timeout) <= 0:
            raise ValueError("timeouts must be positive")
        if self.max_response_bytes < 1:
            raise ValueError("max_response_bytes must be positive")

    @cached_property
    def listed(self) -> frozenset[tuple[str, int | None]]:
        return normalised_entries(self.extra_hosts)

    @cached_property
    def trusted(self) -> frozenset[tuple[str, str, int | None]]:
        origins: set[tuple[str, str, int | None]] = set()
        for origin in self.trusted_origins:
            scheme, sep, rest = origin.partition("://")
            if not sep or scheme not in DEFAULT_PORTS:
                raise ValueError(f"invalid trusted origin {origin!r}: expected scheme://host:port")
            origins.update((scheme, host, port) for host, port in normalised_entries([rest]))
        return frozenset(origins)


@dataclass(frozen=True)
class Target:
    """A URL taken apart after it passed :func:`check_url`."""

    scheme: str
    netloc: str  # as written: it is the Host header (a pre-signed URL is signed over it)
    host: str  # lower-cased, brackets stripped for IPv6
    port: int  # effective port
    path: str  # as written, percent-encoded
    query: str
    exact: bool  # listed exactly as host:port in the policy's extra hosts
    trusted: bool = False  # the deployment's own endpoint

    @property
    def default_port(self) -> bool:
        return self.port == DEFAULT_PORTS[self.scheme]

    @property
    def shown_host(self) -> str:
        shown = self.host if len(self.host) <= 80 else self.host[:77] + "..."
        if ":" in shown:
            shown = f"[{shown}]"
        return shown if self.default_port else f"{shown}:{self.port}"


NETLOC_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


_LABEL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_-")


_BUCKET_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")


def check_url(raw: str, policy: Policy) -> Target:
    """Check a URL against ``policy`` without any network access; raise DestinationRefused."""
    text = raw.strip()
    _check_text(text, policy)
    target = split_url(text, policy)
    if (target.scheme, target.host, target.port) in policy.trusted:
        return replace(target, exact=True, trusted=True)
    if target.scheme == "http" and not (
        policy.allow_http and not _listed_on_another_port(target, policy)
    ):
        raise DestinationRefused(_http_refusal(target, policy))
    target = replace(target, exact=_allowed(target, policy))
    if target.scheme == "http" and not target.exact:
        raise DestinationRefused(_http_refusal(target, policy))
    return target


def _check_text(text: str, policy: Policy) -> None:
    if not text:
        raise DestinationRefused(f"Enter the URL of the {policy.purpose} ({policy.example}).")
    if len(text) > MAX_URL_LENGTH:
        raise DestinationRefused(
            f"This URL is {len(text)} characters long; at most {MAX_URL_LENGTH} are accepted."
        )
    if any(ord(char) > 0x7E for char in text):
        raise DestinationRefused(
            "The URL contains non-ASCII characters (a look-alike letter or a smart quote?). "
            "Type it again with plain ASCII characters."
        )
    if any(ord(char) < 0x21 or ord(char) == 0x7F for char in text):
        raise DestinationRefused(
            "The URL contains spaces, line breaks or control characters. Enter it on a single line."
        )
    if "\\" in text:
        raise DestinationRefused("The URL contains a backslash. Use forward slashes only.")
    if "#" in text:
        raise DestinationRefused(
            "The URL contains a '#' fragment. Remove the '#' and everything after it."
        )


def split_url(text: str, policy: Policy) -> Target:
    """Take a URL apart strictly (scheme, host, port); nothing is looked up."""
    scheme, sep, rest = text.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in DEFAULT_PORTS:
        raise DestinationRefused(
            f"The URL must start with https:// (for example {policy.example})."
        )
    end = next((i for i, char in enumerate(rest) if char in "/?"), len(rest))
    netloc = rest[:end]
    path, _, query = rest[end:].partition("?")
    if "@" in netloc:
        raise DestinationRefused(
            "The URL contains a user name or password before the host ('...@'). Remove it."
        )
    if "%" in netloc:
        raise DestinationRefused("The host name is percent-encoded. Write the host name plainly.")
    host_text, port_text = _split_netloc(netloc)
    host = normalise_host(host_text)
    port = int(port_text) if port_text else DEFAULT_PORTS[scheme]
    if not 0 < port < 65536:
        raise DestinationRefused(f"Port {port} is not a valid port. Fix or remove it.")
    return Target(scheme, netloc, host, port, path, query, exact=False)


def _split_netloc(netloc: str) -> tuple[str, str]:
    malformed = DestinationRefused(
        "The host part of the URL is malformed. Check the URL and enter it again."
    )
    if netloc.startswith("["):
        close = netloc.find("]")
        if close < 0:
            raise malformed
        host, rest = netloc[: close + 1], netloc[close + 1 :]
        if any(char not in "0123456789abcdefABCDEF:." for char in host[1:-1]):
            raise malformed
    else:
        host, colon, port = netloc.partition(":")
        rest = colon + port
        if not host or any(char not in NETLOC_CHARS for char in host):
            raise malformed
    if rest and not (rest.startswith(":") and rest[1:].isdigit()):
        raise malformed
    if len(rest) > 2 and rest[1] == "0":
        # 059243 is 59243 to a socket but not to an allow-list written by a person.
        raise DestinationRefused("The port has a leading zero. Write it plainly (443, 8443).")
    if len(rest) > 6:
        raise malformed
    return host, rest[1:]


def normalise_host(host: str) -> str:
    """Lower-case a host name and check its labels; unbracket and canonicalise an IPv6 address."""
    if host.startswith("["):
        try:
            return str(ipaddress.IPv6Address(host[1:-1]))
        except ValueError:
            raise DestinationRefused("The IPv6 address in the URL is malformed.") from None
    host = host.lower()
    if host.endswith("."):
        raise DestinationRefused("The host name ends with a dot. Remove the trailing dot.")
    labels = host.split(".")
    if len(host) > 253 or not all(_valid_label(label) for label in labels):
        raise DestinationRefused("The host name is malformed. Check the URL and enter it again.")
    return host


def _valid_label(label: str) -> bool:
    return (
        0 < len(label) <= 63
        and all(char in _LABEL_CHARS for char in label)
        and label[0] != "-"
        and label[-1] != "-"
    )


def normalised_entries(entries: Sequence[str]) -> frozenset[tuple[str, int | None]]:
    """Allow-list entries (``host`` or ``host:port``) as (host, port or None); ValueError if bad."""
    allowed: set[tuple[str, int | None]] = set()
    for entry in entries:
        try:
            ascii_entry = entry if entry.isascii() else idna.encode(entry, uts46=True).decode()
            host_text, port_text = _split_netloc(ascii_entry)
            host = normalise_host(host_text)
            port = int(port_text) if port_text else None
            if port is not None and not 0 < port < 65536:
                raise ValueError
        except (ValueError, idna.IDNAError):
            raise ValueError(f"invalid extra host {entry!r}: expected host or host:port") from None
        allowed.add((host, port))
    return frozenset(allowed)


def _allowed(target: Target, policy: Policy) -> bool:
    """Refuse a host off the allow-list; True when it is listed exactly as host:port."""
    if (target.host, target.port) in policy.listed:
        return True
    https_default = target.scheme == "https" and target.default_port
    if https_default and (
        target.host in policy.hosts
        or (target.host, None) in policy.listed
        or _is_bucket_host(target.host, policy)
    ):
        return False
    if policy.any_public_host and target.scheme == "https" and not is_ip_literal(target.host):
        # Any name (its addresses are checked before dialling); never a bare address.
        return False
    raise HostNotAllowed(_host_refusal(target, policy))


def _listed_on_another_port(target: Target, policy: Policy) -> bool:
    """A known host asked for on a port it is not listed with: say why, not just "not allowed"."""
    if (target.host, target.port) in policy.listed:
        return False
    return (
        target.host in policy.hosts
        or _is_bucket_host(target.host, policy)
        or any(host == target.host for host, _ in policy.listed)
    )


def _is_bucket_host(host: str, policy: Policy) -> bool:
    bucket, _, endpoint = host.partition(".")
    return (
        endpoint in policy.bucket_hosts
        and 3 <= len(bucket) <= 63
        and all(char in _BUCKET_CHARS for char in bucket)
        and bucket[0] != "-"
        and bucket[-1] != "-"
    )


def is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _host_refusal(target: Target, policy: Policy) -> str:
    if policy.any_public_host:
        return (
            f"{target.shown_host} is not accepted for a {policy.purpose}: use a host name on "
            f"the default https port (for example {policy.example})."
        )
    hint = policy.allowed_hint or f"Use {policy.example}"
    message = f"{target.shown_host} is not an accepted {policy.purpose}. {hint}"
    if policy.extra_hosts:
        message += f", or a host among {', '.join(policy.extra_hosts)}"
    if "outscale" in target.host:
        message += ". This address only looks like an OUTSCALE one: check the host name"
    return message + "."


def _http_refusal(target: Target, policy: Policy) -> str:
    message = f"Plain http:// is not accepted: the {policy.purpose} must be reached over https://."
    if policy.allow_http:
        setting = policy.extra_hosts_setting or "the allow-list"
        message += (
            f" http:// is admitted only for a host listed with its port in {setting}, and "
            f"{target.shown_host} is not."
        )
    return message
