"""The official OUTSCALE SDK (osc-sdk-python) against the sandbox: it must sign as we verify."""

from __future__ import annotations

import time

import pytest
import requests
from osc_sdk_python import Gateway

from sandbox.store import DEMO_VIRTUAL_SIZE
from tests.support.openapi_spec import validate_response

# The `sandbox` and `clean_sandbox` fixtures come from tests/sandbox_fixtures.py via conftest.
pytestmark = pytest.mark.integration


@pytest.fixture
def gateway_for(clean_sandbox, monkeypatch, tmp_path):
    """A Gateway built the documented way: endpoint from OSC_ENDPOINT_API, keys as arguments."""
    monkeypatch.setenv("OSC_ENDPOINT_API", clean_sandbox.api_url)
    # Keep the developer's ~/.osc/config.json out of the test.
    monkeypatch.setenv("HOME", str(tmp_path))

    def build(secret_key=None):
        account = clean_sandbox.account
        return Gateway(
            access_key=account.access_key,
            secret_key=secret_key or account.secret_key,
            region=clean_sandbox.region,
            max_retries=0,
        )

    return build


def test_it_imports_a_snapshot_with_the_official_sdk(clean_sandbox, gateway_for):
    gateway = gateway_for()

    created = gateway.CreateSnapshot(
        FileLocation=clean_sandbox.presign(style="v2"),
        SnapshotSize=DEMO_VIRTUAL_SIZE,
        Description="imported by osc-sdk-python",
        ClientToken="sdk-import-1",
    )
    validate_response("CreateSnapshot", created, 200)
    snapshot_id = created["Snapshot"]["SnapshotId"]
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        read = gateway.ReadSnapshots(Filters={"SnapshotIds": [snapshot_id]})
        validate_response("ReadSnapshots", read, 200)
        (snapshot,) = read["Snapshots"]
        if snapshot["State"] in ("completed", "error"):
            break
        time.sleep(0.1)

    assert snapshot["State"] == "completed"
    assert snapshot["VolumeSize"] == 10
    assert snapshot["Description"] == "imported by osc-sdk-python"


def test_it_rejects_the_sdk_signing_with_a_wrong_secret(clean_sandbox, gateway_for):
    gateway = gateway_for(secret_key="not-the-secret-key")

    with pytest.raises(requests.HTTPError) as raised:
        gateway.ReadSnapshots()

    response = raised.value.response
    assert response.status_code == 401
    validate_response("ReadSnapshots", response.json(), 401)
    assert response.json()["Errors"][0]["Code"] == "1"


def test_it_rejects_an_sdk_request_whose_body_changed_after_signing(clean_sandbox, gateway_for):
    gateway = gateway_for()
    session = gateway.call.session

    def tamper(request, *args, **kwargs):
        # Runs after the SDK's auth hook signed the body: swap in another one.
        request.body = b'{"Filters": {"SnapshotIds": ["snap-00000000"]}}'
        request.headers["Content-Length"] = str(len(request.body))
        return original_send(request, *args, **kwargs)

    original_send = session.send
    session.send = tamper

    with pytest.raises(requests.HTTPError) as raised:
        gateway.ReadSnapshots()

    assert raised.value.response.status_code == 401
    assert "ReadSnapshots" not in clean_sandbox.state()["calls"]
