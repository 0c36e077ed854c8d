"""The one outbound guard: every request whose destination a person can choose goes through here.

A pre-signed URL, a team's webhook, a team's API endpoint and a team's OOS endpoint are typed by
people; a request to any of them could otherwise reach the metadata service, Redis on loopback
or an internal admin page. The rules are the same for every purpose, only the allow-list differs:

- https only. Plain http is admitted only for an allow-list entry written exactly ``host:port``
  and only when the deployment relaxes the scheme (``PORTAL_ALLOW_HTTP_URLS``, a local-run flag
  refused when ``DEBUG=0``). Such an exact entry is also the one place where a loopback address
  is dialled: it is the sandbox a developer listed by hand.
- the host must be on the purpose's allow-list (or, for webhooks, may be any host);
- every address the host resolves to must be public (IPv4 and IPv6, mapped, NAT64, 6to4, Teredo,
  link-local, reserved, multicast...), and the checked address is the one dialled, while TLS
  verifies the certificate against the name;
- no redirects are followed, no proxy or ``.netrc`` is read from the environment;
- connect, read and total timeouts, and a cap on the bytes read.

Pure module: no Django. Policies are built from settings by ``importer.destinations``.
"""

from __future__ import annotations

import http.cookiejar
import ipaddress
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any

import idna
import requests
import urllib3
from requests.adapters import HTTPAdapter

__all__ = [
    "DEFAULT_PORTS",
    "DestinationRefused",
    "ForbiddenAddress",
    "GuardRefusal",
    "HostNotAllowed",
    "Policy",
    "Resolver",
    "Target",
    "UnresolvableHost",
    "UnresolvedHostError",
    "check_destination",
    "check_url",
    "checked_address",
    "forbidden_reason",
    "guarded_session",
    "normalise_host",
    "read_capped",
    "redact_destination",
    "system_resolver",
]

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


# --------------------------------------------------------------------------------------------
# Policy and parsing


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


_NETLOC_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
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


def check_destination(raw: str, policy: Policy) -> Target:
    """check_url, then resolve the host and check every address: what a form does on save."""
    target = check_url(raw, policy)
    checked_address(target, policy)
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
        if not host or any(char not in _NETLOC_CHARS for char in host):
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
    if policy.any_public_host and target.scheme == "https" and not _is_ip_literal(target.host):
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


def _is_ip_literal(host: str) -> bool:
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


def redact_destination(raw: str) -> str:
    """What may be shown of a person-chosen URL: scheme, host and port, never path or query.

    Webhook URLs of chat services carry their token in the path; nothing after the host is
    kept. Never raises (it runs in error paths).
    """
    try:
        scheme, sep, rest = raw.strip().partition("://")
        if not sep:
            return "[redacted URL]"
        authority = rest.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
        host = authority.rpartition("@")[2]
        if not host or any(char not in _NETLOC_CHARS and char not in "[]:" for char in host):
            return "[redacted URL]"
        tail = "/[redacted]" if rest[len(authority) :].strip("/") else ""
        return f"{scheme.lower()[:10]}://{host.lower()[:255]}{tail}"
    except Exception:
        return "[redacted URL]"


# --------------------------------------------------------------------------------------------
# Addresses

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
    trusted_address = target.trusted and _is_ip_literal(target.host)
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


# --------------------------------------------------------------------------------------------
# The guarded session


class GuardedAdapter(HTTPAdapter):
    """Checks each request's URL, resolves and checks its host, dials the checked address."""

    def __init__(self, policy: Policy) -> None:
        # max_retries=0: nothing is resent behind the caller's back (a CreateSnapshot!).
        super().__init__(pool_connections=4, pool_maxsize=16, max_retries=0)
        self.policy = policy
        self._pools: dict[tuple[str, str, int, str], urllib3.HTTPConnectionPool] = {}
        self._pools_lock = threading.Lock()

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: Any = True,
        cert: Any = None,
        proxies: Mapping[str, str] | None = None,
    ) -> requests.Response:
        try:
            target = check_url(request.url or "", self.policy)
        except DestinationRefused as refusal:
            raise GuardRefusal(str(refusal), reason=refusal, request=request) from None
        # The Host header is the name, not the address dialled (a signature may cover it).
        request.headers["Host"] = target.netloc
        deadline = time.monotonic() + self.policy.total_timeout
        response = super().send(
            request,
            stream=True,
            timeout=self._timeout(timeout),  # type: ignore[arg-type]  # urllib3 Timeout is taken
            verify=verify if self.policy.ssl_context is None else False,
            cert=cert,
            proxies={},
        )
        if not stream:
            try:
                body = read_capped(response.raw, self.policy.max_response_bytes, deadline)
            finally:
                response.close()
            if body is None:
                raise GuardRefusal(
                    f"The {self.policy.purpose} sent more than "
                    f"{self.policy.max_response_bytes} bytes or took longer than "
                    f"{self.policy.total_timeout:g} s: the answer was dropped.",
                    request=request,
                )
            response._content = body
        return response

    def _timeout(self, requested: Any) -> urllib3.Timeout:
        connect, read = self.policy.connect_timeout, self.policy.read_timeout
        if isinstance(requested, tuple):
            connect, read = min(connect, requested[0]), min(read, requested[1])
        elif isinstance(requested, int | float):
            connect, read = min(connect, requested), min(read, requested)
        return urllib3.Timeout(connect=connect, read=read, total=self.policy.total_timeout)

    def get_connection_with_tls_context(
        self,
        request: requests.PreparedRequest,
        verify: Any,
        proxies: Mapping[str, str] | None = None,
        cert: Any = None,
    ) -> urllib3.HTTPConnectionPool:
        target = check_url(request.url or "", self.policy)
        try:
            address = checked_address(target, self.policy)
        except UnresolvableHost as error:
            # DNS may be down for a moment: a connection error, which callers may retry.
            raise UnresolvedHostError(str(error), request=request) from None
        except DestinationRefused as refusal:
            raise GuardRefusal(str(refusal), reason=refusal, request=request) from None
        key = (target.scheme, target.host, target.port, address)
        with self._pools_lock:
            pool = self._pools.get(key)
            if pool is None:
                if len(self._pools) >= 64:
                    self._close_pools()
                pool = self._pools[key] = self._new_pool(target, address)
        return pool

    def _new_pool(self, target: Target, address: str) -> urllib3.HTTPConnectionPool:
        common: dict[str, Any] = {"port": target.port, "maxsize": 16, "retries": False}
        if target.scheme == "http":
            return urllib3.HTTPConnectionPool(address, **common)
        # Dial the checked address, but verify the certificate against the name (and send SNI).
        return urllib3.HTTPSConnectionPool(
            address,
            server_hostname=target.host,
            assert_hostname=target.host,
            cert_reqs="CERT_REQUIRED",
            ssl_context=self.policy.ssl_context,
            **common,
        )

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        if self.policy.ssl_context is not None:
            # The context carries its own trust store and verification settings.
            conn.cert_reqs = "CERT_REQUIRED"
            return
        super().cert_verify(conn, url, verify, cert)  # type: ignore[no-untyped-call]

    def _close_pools(self) -> None:
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()

    def close(self) -> None:
        with self._pools_lock:
            self._close_pools()
        super().close()


class GuardedSession(requests.Session):
    """A Session that never follows a redirect and never reads proxies or .netrc."""

    def __init__(self, policy: Policy) -> None:
        super().__init__()
        self.trust_env = False  # no HTTP(S)_PROXY, no .netrc, no REQUESTS_CA_BUNDLE
        # Destinations share the session: none may leave a cookie for another.
        self.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
        self.headers["Accept-Encoding"] = "identity"
        adapter = GuardedAdapter(policy)
        self.mount("https://", adapter)
        self.mount("http://", adapter)

    def request(self, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs["allow_redirects"] = False
        kwargs["proxies"] = {}
        return super().request(*args, **kwargs)

    def resolve_redirects(self, *args: Any, **kwargs: Any) -> Iterator[Any]:
        # A redirect is an answer like any other: the caller sees the 3xx, nothing follows it.
        return iter(())


_sessions_lock = threading.Lock()
_sessions: dict[tuple[int, Policy], GuardedSession] = {}


def guarded_session(policy: Policy) -> GuardedSession:
    """The process's Session for ``policy``, made anew after a fork (Celery prefork workers)."""
    key = (os.getpid(), policy)
    with _sessions_lock:
        session = _sessions.get(key)
        if session is None:
            if len(_sessions) >= 256:
                _sessions.clear()
            session = _sessions[key] = GuardedSession(policy)
        return session


def read_capped(raw: Any, max_bytes: int, deadline: float) -> bytes | None:
    """Read a urllib3 response body; None when it passes ``max_bytes`` or the deadline."""
    chunks: list[bytes] = []
    received = 0
    while True:
        if time.monotonic() > deadline:
            return None
        # read1 returns what has arrived, so a server dripping bytes still meets the deadline.
        chunk = raw.read1(min(65536, max_bytes + 1 - received), decode_content=True)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        received += len(chunk)
        if received > max_bytes:
            return None
