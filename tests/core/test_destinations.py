"""Every person-chosen destination goes through the outbound guard: on save and at every send.

A team admin acting as an attacker would: the webhook URL, the team's API endpoint and its OOS
endpoint aimed at loopback listeners that count every connection, at the metadata service and at
internal addresses. Nothing may be saved, nothing may connect.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client

from importer.core.crypto import encrypt_text
from importer.core.net.guard import DestinationRefused, check_url
from importer.notifications.models import DeliveryState, TeamWebhook, WebhookDelivery
from importer.notifications.services import webhook_deliver
from importer.outscale.accounts import OutboundRefusedError, api_client, s3_client
from importer.outscale.endpoints import api_policy
from importer.teams.models import Role, Team
from tests.support.factories import make_team, make_user

pytestmark = pytest.mark.django_db
SECRET = "a-webhook-secret-of-some-length"  # noqa: S105 - a test secret


class Listener:
    """A TCP port on loopback that counts every connection made to it (and answers nothing)."""

    def __init__(self) -> None:
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen(16)
        self.port = int(self.socket.getsockname()[1])
        self.connections = 0
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.socket.accept()
            except OSError:
                return
            self.connections += 1
            connection.close()

    def close(self) -> None:
        self.socket.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    running = Listener()
    yield running
    running.close()


@pytest.fixture
def public_dns(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """No DNS here: OUTSCALE's and the examples' names resolve to public addresses, and the
    names in the returned map to whatever a test puts there (an attacker's own DNS)."""
    attacker: dict[str, str] = {}

    def resolve(host: str, port: int, *args: Any) -> list[Any]:
        if host in attacker:
            address = attacker[host]
        elif host.endswith((".outscale.com", "example.com")):
            address = "93.184.215.14"
        else:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        return [(family, socket.SOCK_STREAM, 6, "", (address, port))]

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    return attacker


@pytest.fixture
def admin_client(client: Client) -> Client:
    client.force_login(make_user("boss", role=Role.ADMIN))
    return client


def team_of(client: Client) -> Team:
    return Team.objects.get(memberships__user__username="boss")


def hostile(listener: Listener) -> list[str]:
    port = listener.port
    return [
        f"http://127.0.0.1:{port}/",
        f"https://127.0.0.1:{port}/",
        f"https://localhost:{port}/",
        f"https://[::1]:{port}/",
        f"https://[::ffff:127.0.0.1]:{port}/",
        "http://127.0.0.1:6379/",
        "https://169.254.169.254/latest/meta-data/",
        "https://10.0.0.1/",
        "https://2130706433/",
        "https://internal.attacker.test/",
        f"https://user@127.0.0.1:{port}/",
    ]


# --- The team's API endpoint ------------------------------------------------------------------


def credentials_form(endpoint: str) -> dict[str, str]:
    return {"region": "eu-west-2", "endpoint": endpoint, "access_key": "AK0123", "secret_key": "s"}


def test_it_refuses_a_hostile_api_endpoint_when_saved(
    admin_client: Client, listener: Listener, public_dns: dict[str, str]
) -> None:
    public_dns["internal.attacker.test"] = "10.1.2.3"
    values = [
        *hostile(listener),
        "https://api.eu-west-2.outscale.com/api/v1#/../../admin",
        "https://api.eu-west-2.outscale.com/api/v1?Action=x",
        "http://api.eu-west-2.outscale.com/api/v1",
        "https://api.eu-west-2.outscale.com:6379/api/v1",
        "https://evil.example.com/api/v1",
    ]
    for endpoint in values:
        response = admin_client.post("/team/credentials/", credentials_form(endpoint))
        assert response.status_code == 422, endpoint
        assert 'class="error field-error" id="id_endpoint_error"' in response.content.decode()

    assert team_of(admin_client).endpoint == ""
    assert listener.connections == 0


def test_it_saves_an_outscale_api_endpoint(
    admin_client: Client, public_dns: dict[str, str]
) -> None:
    endpoint = "https://api.us-east-2.outscale.com/api/v1/"
    response = admin_client.post("/team/credentials/", credentials_form(endpoint))

    assert response.status_code == 302
    assert team_of(admin_client).endpoint == "https://api.us-east-2.outscale.com/api/v1"


def test_it_refuses_a_stored_hostile_api_endpoint_at_send_time(listener: Listener) -> None:
    team = make_team("stored", uses_environment_credentials=False)
    Team.objects.filter(pk=team.pk).update(
        endpoint=f"https://127.0.0.1:{listener.port}/api/v1",
        access_key_encrypted=encrypt_text("AK0123"),
        secret_key_encrypted=encrypt_text("secret"),
    )
    team.refresh_from_db()

    # Refused before any client is made: the stored value is checked as it was saved.
    with pytest.raises(DestinationRefused) as caught:
        api_client(team).read_snapshots_page()

    assert "is not an accepted OUTSCALE API endpoint" in str(caught.value)
    assert listener.connections == 0


def test_it_never_lends_the_environment_account_to_no_team() -> None:
    with pytest.raises(ValueError, match="no team"):
        api_client(None)


# --- The team's OOS endpoint and webhook ----------------------------------------------------------


def transfer_form(**fields: str) -> dict[str, str]:
    return {"oos_endpoint": "", "webhook_url": "", "webhook_secret": SECRET, **fields}


def test_it_refuses_a_hostile_oos_endpoint_or_webhook_when_saved(
    admin_client: Client, listener: Listener, public_dns: dict[str, str]
) -> None:
    public_dns["internal.attacker.test"] = "fd00::7"
    attempts = [
        (field, value) for value in hostile(listener) for field in ("oos_endpoint", "webhook_url")
    ]
    attempts.append(("oos_endpoint", "https://oos.eu-west-2.outscale.com/bucket?x=1"))
    for field, value in attempts:
        response = admin_client.post("/team/transfers/", transfer_form(**{field: value}))
        assert response.status_code == 422, (field, value)
        assert f'id="id_{field}_error"' in response.content.decode()

    assert team_of(admin_client).oos_endpoint == ""
    assert not TeamWebhook.objects.exists()
    assert listener.connections == 0


def test_it_keeps_the_webhook_url_encrypted_and_shows_it_redacted(
    admin_client: Client, public_dns: dict[str, str]
) -> None:
    url = "https://hooks.example.com/services/T000/B000/tokenXYZ"
    form = transfer_form(webhook_url=url, oos_endpoint="https://oos.eu-west-2.outscale.com")

    assert admin_client.post("/team/transfers/", form).status_code == 302

    stored = TeamWebhook.objects.get()
    assert "tokenXYZ" not in stored.url_encrypted
    page = admin_client.get("/team/transfers/").content.decode()
    assert "tokenXYZ" not in page and "https://hooks.example.com/[redacted]" in page
    from importer.audit.models import AuditEvent

    assert "tokenXYZ" not in str(list(AuditEvent.objects.values_list("details", flat=True)))
    # Saving again with the URL field empty keeps the webhook; the box removes it.
    assert admin_client.post("/team/transfers/", transfer_form()).status_code == 302
    assert TeamWebhook.objects.exists()
    assert (
        admin_client.post("/team/transfers/", transfer_form(remove_webhook="on")).status_code == 302
    )
    assert not TeamWebhook.objects.exists()


def test_it_refuses_a_stored_hostile_oos_endpoint_at_send_time(
    listener: Listener, public_dns: dict[str, str], settings: Any
) -> None:
    team = make_team("oos")
    Team.objects.filter(pk=team.pk).update(oos_endpoint=f"http://127.0.0.1:{listener.port}")
    team.refresh_from_db()
    with pytest.raises(ValueError, match="not accepted"):
        s3_client(team)

    # A name the deployment listed, that the attacker's DNS now points at the metadata service.
    settings.PORTAL_URL_HOSTS = ["objects.attacker.test"]
    public_dns["objects.attacker.test"] = "169.254.169.254"
    Team.objects.filter(pk=team.pk).update(oos_endpoint="https://objects.attacker.test")
    team.refresh_from_db()
    with pytest.raises(OutboundRefusedError, match="link-local"):
        s3_client(team).list_objects_v2(Bucket="bucket")
    assert listener.connections == 0


def test_it_refuses_a_stored_hostile_webhook_at_send_time_and_never_retries(
    listener: Listener,
) -> None:
    team = make_team("hooks")
    webhook = TeamWebhook.objects.create(
        team=team,
        url_encrypted=encrypt_text(f"http://127.0.0.1:{listener.port}/hook"),
        url_redacted=f"http://127.0.0.1:{listener.port}/[redacted]",
        secret_encrypted=encrypt_text(SECRET),
    )
    delivery = WebhookDelivery.objects.create(
        webhook=webhook, event="import.error", payload={"event": "import.error"}
    )

    webhook_deliver(delivery_id=str(delivery.pk))

    delivery.refresh_from_db()
    assert delivery.state == DeliveryState.FAILED
    assert "Refused by the outbound guard" in delivery.last_error
    assert listener.connections == 0


def test_it_admits_the_deployments_own_api_endpoint_and_nothing_beside_it(settings: Any) -> None:

    settings.OSC_ENDPOINT_API = "http://127.0.0.1:8787/api/v1"
    settings.PORTAL_ALLOW_HTTP_URLS = False
    rules = api_policy()

    assert check_url("http://127.0.0.1:8787/api/v1/ReadSnapshots", rules).trusted
    for url in ("http://127.0.0.1:8788/api/v1", "http://127.0.0.1:6379/", "http://[::1]:8787/"):
        with pytest.raises(DestinationRefused):
            check_url(url, rules)


def test_it_checks_a_stored_value_as_stored_not_as_requests_would_normalise_it(
    listener: Listener, settings: Any
) -> None:
    entry = f"127.0.0.1:{listener.port}"
    settings.PORTAL_ALLOW_HTTP_URLS = True
    settings.PORTAL_API_HOSTS = [entry]
    settings.PORTAL_WEBHOOK_HOSTS = [entry]
    team = make_team("spelled", uses_environment_credentials=False)
    Team.objects.filter(pk=team.pk).update(
        endpoint=f"http://127.0.0.1:0{listener.port}/api/v1",
        access_key_encrypted=encrypt_text("AK0123"),
        secret_key_encrypted=encrypt_text("secret"),
    )
    team.refresh_from_db()
    with pytest.raises(ValueError, match="leading zero"):
        api_client(team)
    webhook = TeamWebhook.objects.create(
        team=team,
        url_encrypted=encrypt_text(f"http://{entry}/hook#"),
        url_redacted=f"http://{entry}/[redacted]",
        secret_encrypted=encrypt_text(SECRET),
    )
    delivery = WebhookDelivery.objects.create(webhook=webhook, event="e", payload={"event": "e"})

    webhook_deliver(delivery_id=str(delivery.pk))

    delivery.refresh_from_db()
    assert delivery.state == DeliveryState.FAILED and "fragment" in delivery.last_error
    assert listener.connections == 0
