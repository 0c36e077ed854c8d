"""The portal's own client against the sandbox's signature check, with the SDK test's inputs."""

from __future__ import annotations

import pytest
import requests

from importer.outscale.client import OscClient
from importer.outscale.errors import OscApiError
from importer.outscale.signing import OscCredentials
from sandbox.store import DEMO_VIRTUAL_SIZE
from tests.support.workers import wait_until

pytestmark = pytest.mark.integration


def client_for(sandbox, *, secret_key: str | None = None, session=None) -> OscClient:
    return OscClient(
        credentials=OscCredentials(
            access_key=sandbox.account.access_key,
            secret_key=secret_key or sandbox.account.secret_key,
        ),
        region=sandbox.region,
        endpoint=sandbox.api_url,
        read_timeout=5,
        session=session,
    )


def test_it_imports_a_snapshot_and_reads_it_to_completed(clean_sandbox) -> None:
    client = client_for(clean_sandbox)
    created = client.create_snapshot(
        file_location=clean_sandbox.presign(style="v2"),
        snapshot_size=DEMO_VIRTUAL_SIZE,
        description="imported by the portal's client",
        client_token="portal-import-1",
    )
    assert created.snapshot is not None and created.request_id
    snapshot_id = created.snapshot.snapshot_id

    def completed():
        (snapshot,) = client.read_snapshots(snapshot_ids=[snapshot_id])
        return snapshot if not snapshot.is_in_progress else None

    snapshot = wait_until(completed, seconds=15)
    assert snapshot.is_completed and snapshot.volume_size_gib == 10
    assert snapshot.client_token == "portal-import-1"
    again = client.create_snapshot(
        file_location=clean_sandbox.presign(),
        snapshot_size=DEMO_VIRTUAL_SIZE,
        client_token="portal-import-1",
    )
    assert again.snapshot is not None and again.snapshot.snapshot_id == snapshot_id


def test_it_is_refused_with_a_wrong_secret(clean_sandbox) -> None:
    with pytest.raises(OscApiError) as raised:
        client_for(clean_sandbox, secret_key="not-the-secret-key-at-all").read_snapshots()
    assert raised.value.http_status == 401 and raised.value.code == "1"
    assert not raised.value.transient
    assert "not-the-secret-key-at-all" not in str(raised.value)


def test_it_is_refused_when_the_body_changed_after_signing(clean_sandbox) -> None:
    session = requests.Session()
    original_send = session.send

    def tamper(request, *args, **kwargs):
        request.body = b'{"Filters": {"SnapshotIds": ["snap-00000000"]}}'
        request.headers["Content-Length"] = str(len(request.body))
        return original_send(request, *args, **kwargs)

    session.send = tamper  # type: ignore[method-assign]
    with pytest.raises(OscApiError) as raised:
        client_for(clean_sandbox, session=session).read_snapshots()
    assert raised.value.http_status == 401
    assert "ReadSnapshots" not in clean_sandbox.state()["calls"]


def test_it_pages_through_more_than_1000_snapshots(clean_sandbox) -> None:
    client = client_for(clean_sandbox)
    source = client.create_snapshot(
        file_location=clean_sandbox.presign(), snapshot_size=DEMO_VIRTUAL_SIZE, client_token="src"
    ).snapshot
    assert source is not None
    wait_until(
        lambda: client.read_snapshots(snapshot_ids=[source.snapshot_id])[0].is_completed, seconds=15
    )
    for index in range(1100):
        clean_sandbox.call(
            "CreateSnapshot",
            {
                "SourceSnapshotId": source.snapshot_id,
                "SourceRegionName": clean_sandbox.region,
                "ClientToken": f"copy-{index}",
            },
        ).raise_for_status()
    before = clean_sandbox.state()["calls"].get("ReadSnapshots", 0)
    snapshots = client.read_snapshots()
    assert len({snapshot.snapshot_id for snapshot in snapshots}) == 1101
    assert clean_sandbox.state()["calls"]["ReadSnapshots"] - before == 2
