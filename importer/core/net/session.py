from __future__ import annotations

import http.cookiejar
import os
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

import requests
import urllib3
from requests.adapters import HTTPAdapter

from importer.core.net.addresses import checked_address
from importer.core.net.guard import (
    DestinationRefused,
    GuardRefusal,
    Policy,
    Target,
    UnresolvableHost,
    UnresolvedHostError,
    check_url,
)


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
    # One byte past the cap tells a body that is too long from one that just fits.
    body = read_until(raw, max_bytes + 1, deadline, decode_content=True)
    return None if body is None or len(body) > max_bytes else body


def read_until(raw: Any, limit: int, deadline: float, *, decode_content: bool) -> bytes | None:
    """At most ``limit`` bytes of a urllib3 response body; None when the deadline passes first."""
    chunks: list[bytes] = []
    received = 0
    while received < limit:
        if time.monotonic() > deadline:
            return None
        # read1 returns what has arrived, so a server dripping bytes still meets the deadline.
        chunk = raw.read1(min(65536, limit - received), decode_content=decode_content)
        if not chunk:
            break
        chunks.append(chunk)
        received += len(chunk)
    return b"".join(chunks)
