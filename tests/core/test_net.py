"""The one outbound guard: rules per purpose, the checked address dialled, caps and refusals."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from importer.core.net.addresses import check_destination, checked_address
from importer.core.net.guard import (
    DestinationRefused,
    ForbiddenAddress,
    GuardRefusal,
    Policy,
    Resolver,
    UnresolvableHost,
    check_url,
)
from importer.core.net.session import guarded_session
from importer.core.redaction import redact_destination

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def policy(**overrides: Any) -> Policy:
    values: dict[str, Any] = {
        "purpose": "object store",
        "example": "https://oos.eu-west-2.outscale.com",
        "hosts": frozenset({"oos.eu-west-2.outscale.com"}),
        "bucket_hosts": frozenset({"oos.eu-west-2.outscale.com"}),
        "connect_timeout": 2.0,
        "read_timeout": 2.0,
        "total_timeout": 3.0,
    }
    values.update(overrides)
    return Policy(**values)


def refusal(url: str, rules: Policy) -> str:
    with pytest.raises(DestinationRefused) as caught:
        check_url(url, rules)
    return str(caught.value)


# --- Rules without the network ----------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://oos.eu-west-2.outscale.com/b/k",
        "https://my-bucket.oos.eu-west-2.outscale.com/k",
        "HTTPS://OOS.EU-WEST-2.OUTSCALE.COM/b/k",
    ],
)
def test_it_admits_the_purposes_own_hosts(url: str) -> None:
    assert check_url(url, policy()).host.endswith("oos.eu-west-2.outscale.com")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://oos.eu-west-2.outscale.com/b/k", "Plain http:// is not accepted"),
        ("https://oos.eu-west-2.outscale.com:8443/b", "oos.eu-west-2.outscale.com:8443 is not"),
        ("https://evil.example.com/b", "evil.example.com is not an accepted object store"),
        ("https://oos.eu-west-2.outscale.com.evil.com/b", "only looks like an OUTSCALE one"),
        ("https://127.0.0.1/b", "127.0.0.1 is not an accepted"),
        ("https://user@oos.eu-west-2.outscale.com/b", "user name or password"),
        ("https://oos.eu-west-2.outscale.com/b#frag", "'#' fragment"),
        ("https://oos.eu-west-2.outscale.com\\@evil.com/b", "backslash"),
        ("https://oos%2eeu-west-2.outscale.com/b", "percent-encoded"),
        ("ftp://oos.eu-west-2.outscale.com/b", "must start with https://"),
        ("https://\u043eos.eu-west-2.outscale.com/b", "non-ASCII"),
        ("https://oos.eu-west-2.outscale.com/b\r\nHost: x", "control characters"),
        ("https://oos.eu-west-2.outscale.com:0/b", "not a valid port"),
        ("https://[::1/b", "malformed"),
    ],
)
def test_it_refuses_with_a_message_that_says_why(url: str, expected: str) -> None:
    assert expected in refusal(url, policy())


def test_it_lets_any_public_host_name_be_a_webhook_but_no_bare_address() -> None:
    webhooks = policy(purpose="webhook", hosts=frozenset(), any_public_host=True)

    assert check_url("https://hooks.example.com/x", webhooks).host == "hooks.example.com"
    for url in ("https://127.0.0.1/", "https://[::1]/", "https://169.254.169.254/latest"):
        assert "is not accepted for a webhook" in refusal(url, webhooks)
    assert "Plain http://" in refusal("http://hooks.example.com/x", webhooks)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:6379/",
        "http://127.0.0.1:22/",
        "http://127.0.0.2:8788/",
        "http://[::1]:8788/",
        "http://localhost:8788/",
        "http://127.0.0.1/",
        "https://127.0.0.1:6379/",
    ],
)
def test_it_relaxes_only_the_scheme_and_only_for_the_exact_listed_host_and_port(url: str) -> None:
    local = policy(extra_hosts=("127.0.0.1:8788",), allow_http=True)

    assert check_url("http://127.0.0.1:8788/b/k", local).exact
    with pytest.raises(DestinationRefused):
        check_url(url, local)


def test_it_never_admits_http_without_the_relaxation_even_for_a_listed_host() -> None:
    listed = policy(extra_hosts=("127.0.0.1:8788",))

    assert "Plain http://" in refusal("http://127.0.0.1:8788/b/k", listed)


@pytest.mark.parametrize("entry", ["", "a/b", "x@y", "host:port", "-bad-.test", "h:99999"])
def test_it_refuses_a_malformed_allow_list_entry_at_configuration_time(entry: str) -> None:
    with pytest.raises(ValueError, match="invalid extra host"):
        policy(extra_hosts=(entry,))


# --- Addresses ----------------------------------------------------------------------------------


def resolver_to(*addresses: str) -> Resolver:
    def resolve(host: str, port: int, *args: Any) -> list[Any]:
        family = socket.AF_INET6
        return [(family, socket.SOCK_STREAM, 6, "", (address, port)) for address in addresses]

    return resolve


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",  # noqa: S104 - an address refused, not bound
        "224.0.0.1",
        "::1",
        "fe80::1",
        "fd00::1",
        "::ffff:127.0.0.1",
        "64:ff9b::a9fe:a9fe",
        "2002:7f00:1::1",
        "2001:0:4136:e378:8000:63bf:80ff:fffe",
    ],
)
def test_it_refuses_a_name_that_resolves_to_any_internal_address(address: str) -> None:
    rules = policy(
        extra_hosts=("objects.example.test",), resolver=resolver_to("93.184.215.14", address)
    )
    target = check_url("https://objects.example.test/b/k", rules)

    with pytest.raises(ForbiddenAddress, match="Refused to contact objects.example.test"):
        checked_address(target, rules)


def test_it_returns_the_public_address_it_checked() -> None:
    rules = policy(extra_hosts=("objects.example.test",), resolver=resolver_to("93.184.215.14"))
    target = check_url("https://objects.example.test/b/k", rules)

    assert checked_address(target, rules) == "93.184.215.14"


def test_it_says_when_a_name_does_not_resolve() -> None:
    def failing(*args: Any) -> list[Any]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    rules = policy(extra_hosts=("nowhere.example.test",), resolver=failing)
    with pytest.raises(UnresolvableHost, match="Could not resolve nowhere.example.test"):
        check_destination("https://nowhere.example.test/", rules)


# --- The guarded session over real sockets -----------------------------------------------------


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.connections = 0

    def process_request(self, request: Any, client_address: Any) -> None:
        self.connections += 1
        super().process_request(request, client_address)

    @property
    def port(self) -> int:
        return int(self.server_address[1])


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.server.requests.append((self.path, dict(self.headers)))
        route = self.path.strip("/")
        if route == "redirect":
            self._send(302, b"", {"Location": f"http://127.0.0.1:{self.server.port}/ok"})
        elif route == "huge":
            self._send(200, b"x" * 300_000)
        elif route == "drip":
            self.send_response(200)
            self.send_header("Content-Length", "100")
            self.end_headers()
            for _ in range(100):
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(0.1)
        else:
            self._send(200, b"fine")

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def server() -> Iterator[Server]:
    running = Server()
    thread = threading.Thread(target=running.serve_forever, daemon=True)
    thread.start()
    yield running
    running.shutdown()
    running.server_close()


def local_rules(server: Server, **overrides: Any) -> Policy:
    return policy(extra_hosts=(f"127.0.0.1:{server.port}",), allow_http=True, **overrides)


def test_it_dials_the_address_it_resolved_and_sends_the_name_as_host(server: Server) -> None:
    # The name exists nowhere: an answer proves the session dialled the checked address.
    rules = policy(
        extra_hosts=(f"objects.example.test:{server.port}",),
        allow_http=True,
        resolver=resolver_to("127.0.0.1"),
    )

    response = guarded_session(rules).get(f"http://objects.example.test:{server.port}/ok")

    assert response.content == b"fine"
    assert server.requests[0][1]["Host"] == f"objects.example.test:{server.port}"


def test_it_never_follows_a_redirect(server: Server) -> None:
    response = guarded_session(local_rules(server)).get(f"http://127.0.0.1:{server.port}/redirect")

    assert response.status_code == 302
    assert [path for path, _ in server.requests] == ["/redirect"]


def test_it_reads_no_proxy_from_the_environment(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy = Server()
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    try:
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "ALL_PROXY"):
            monkeypatch.setenv(name, f"http://127.0.0.1:{proxy.port}")
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)

        response = guarded_session(local_rules(server)).get(f"http://127.0.0.1:{server.port}/ok")

        assert response.content == b"fine"
        assert proxy.connections == 0
    finally:
        proxy.shutdown()
        proxy.server_close()


def test_it_drops_an_answer_larger_than_the_cap(server: Server) -> None:
    session = guarded_session(local_rules(server, max_response_bytes=65536))

    with pytest.raises(GuardRefusal, match="more than 65536 bytes"):
        session.get(f"http://127.0.0.1:{server.port}/huge", timeout=5)


def test_it_gives_up_on_an_answer_that_drips_past_the_total_timeout(server: Server) -> None:
    session = guarded_session(local_rules(server, total_timeout=1.0))

    with pytest.raises(GuardRefusal, match="took longer than 1 s"):
        session.get(f"http://127.0.0.1:{server.port}/drip", timeout=5)


def test_it_refuses_at_send_time_without_connecting(server: Server) -> None:
    # Listed by name, but the name now resolves to loopback: nothing may connect.
    rules = policy(extra_hosts=("objects.example.test",), resolver=resolver_to("127.0.0.1"))

    with pytest.raises(GuardRefusal, match="a loopback address"):
        guarded_session(rules).get("https://objects.example.test/ok")
    with pytest.raises(GuardRefusal, match="not accepted"):
        guarded_session(rules).get(f"http://127.0.0.1:{server.port}/ok")

    assert server.connections == 0


def test_it_redacts_a_destination_to_its_scheme_host_and_port() -> None:
    assert redact_destination("https://hooks.example.com/services/T0/B0/secret?token=x") == (
        "https://hooks.example.com/[redacted]"
    )
    assert redact_destination("https://u:p@hooks.example.com:8443") == (
        "https://hooks.example.com:8443"
    )
    assert redact_destination("not a url") == "[redacted URL]"


# --- Configuration -----------------------------------------------------------------------------


def settings_error(**env: str) -> str:
    environment = {key: value for key, value in os.environ.items() if key != "DEBUG"}
    environment.update(env)
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=ROOT,
        env={**environment, "DJANGO_SETTINGS_MODULE": "snapshots_portal.settings"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0, "the settings were accepted"
    return result.stderr.strip().splitlines()[-1]


def production_env(**extra: str) -> dict[str, str]:
    return {
        "DEBUG": "0",
        "SECRET_KEY": "x" * 60,
        "PORTAL_ENCRYPTION_KEY": "V0bm3PHXHhrJPfTdTwB0MLw3mS6PUzRu9nJU3uGmYWI=",
        "PORTAL_AUDIT_KEY": "an-audit-key-of-enough-length-for-the-test-0123456789",
        "ALLOWED_HOSTS": "portal.example.com",
        **extra,
    }


def test_it_refuses_the_http_relaxation_in_production() -> None:
    message = settings_error(**production_env(PORTAL_ALLOW_HTTP_URLS="1"))

    assert "PORTAL_ALLOW_HTTP_URLS" in message and "DEBUG=0" in message


@pytest.mark.parametrize("name", ["PORTAL_URL_HOSTS", "PORTAL_API_HOSTS", "PORTAL_WEBHOOK_HOSTS"])
def test_it_refuses_a_malformed_host_list_at_start(name: str) -> None:
    message = settings_error(DEBUG="1", **{name: "good.example.com,bad/host"})

    assert name in message and "bad/host" in message


def test_a_guarded_session_is_a_requests_session() -> None:
    # Callers catch requests' exceptions: a refusal must be one of them.
    assert issubclass(GuardRefusal, requests.RequestException)


def test_it_binds_a_trusted_origin_to_its_scheme_and_refuses_leading_zero_ports() -> None:
    rules = policy(
        purpose="OUTSCALE API endpoint",
        hosts=frozenset({"api.eu-west-2.outscale.com"}),
        bucket_hosts=frozenset(),
        trusted_origins=("https://api.eu-west-2.outscale.com:443",),
    )

    assert check_url("https://api.eu-west-2.outscale.com/api/v1", rules).trusted
    assert "Plain http://" in refusal("http://api.eu-west-2.outscale.com:443/api/v1", rules)
    local = policy(extra_hosts=("127.0.0.1:8788",), allow_http=True)
    assert "leading zero" in refusal("http://127.0.0.1:08788/b/k", local)
