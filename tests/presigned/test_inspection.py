"""Inspecting a pasted URL over real HTTP: the sandbox's object, and forbidden addresses."""

from __future__ import annotations

import socket
import time

import pytest

from sandbox.store import DEMO_VIRTUAL_SIZE
from tests.support.factories import make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator_client(client):
    client.force_login(make_user("inspector"))
    return client


def test_it_suggests_the_virtual_size_of_the_sandboxs_qcow2_gz(
    operator_client, api_on_sandbox
) -> None:
    for style in ("v4", "v2"):
        response = operator_client.post(
            "/imports/inspect", {"presigned_url": api_on_sandbox.presign(style=style)}
        )
        body = response.content.decode()
        assert response.status_code == 200
        assert "qcow2 inside gzip" in body
        assert str(DEMO_VIRTUAL_SIZE) == "10737418240" and "10737418240" in body


def test_it_refuses_to_fetch_from_loopback_when_insecure_urls_are_not_allowed(
    operator_client, settings, monkeypatch
) -> None:
    settings.PORTAL_ALLOW_HTTP_URLS = False
    # An allow-listed name that resolves to this machine: the guard must look at the address.
    settings.PORTAL_URL_HOSTS = ["localhost:8443"]
    connections: list[object] = []
    real_connect = socket.socket.connect

    def counting_connect(sock, address):
        connections.append(address)
        return real_connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", counting_connect)
    expires = int(time.time()) + 3600
    url = f"https://localhost:8443/bucket/disk.qcow2.gz?AWSAccessKeyId=AK&Expires={expires}&Signature=sig"
    response = operator_client.post("/imports/inspect", {"presigned_url": url})
    body = response.content.decode()
    assert response.status_code == 200
    assert "could not be inspected" in body
    assert not [address for address in connections if address[1:2] == (8443,)]


def test_it_refuses_loopback_and_http_urls_in_the_form_itself(operator_client, settings) -> None:
    settings.PORTAL_ALLOW_HTTP_URLS = False
    expires = int(time.time()) + 3600
    for url in (
        f"http://127.0.0.1:8788/b/k?AWSAccessKeyId=AK&Expires={expires}&Signature=s",
        f"https://127.0.0.1/b/k?AWSAccessKeyId=AK&Expires={expires}&Signature=s",
        f"https://[::1]/b/k?AWSAccessKeyId=AK&Expires={expires}&Signature=s",
    ):
        body = operator_client.post("/imports/inspect", {"presigned_url": url}).content.decode()
        # Refused while parsing, before any fetch: an error in place, no inspection at all.
        assert 'class="inspection bad"' in body and "What the URL points to" not in body
