"""The sandbox over real HTTP: shapes from outscale.yaml, imports, signatures, faults, store."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import socket
import time
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
import requests

from sandbox import qcow2
from sandbox.signing import Account, sign_request
from sandbox.store import DEMO_VIRTUAL_SIZE
from tests.support.openapi_spec import validate_response

# The `sandbox` and `clean_sandbox` fixtures come from tests/sandbox_fixtures.py via conftest.
pytestmark = pytest.mark.integration

BIG_ENOUGH = DEMO_VIRTUAL_SIZE
OTHER_TEAM = Account(
    "SANDBOXOTHERTEAM0000", "other-team-secret-key-00000000000000000", "210987654321"
)


def call(sb, action, body=None, **kwargs):
    """Call the API and check the answer against the spec, whatever its status."""
    response = sb.call(action, body, **kwargs)
    validate_response(action, response.json(), response.status_code)
    return response


def error_of(response):
    (error,) = response.json()["Errors"]
    return response.status_code, error["Code"], error["Type"]


def import_demo(sb, size=BIG_ENOUGH, **extra):
    response = call(
        sb, "CreateSnapshot", {"FileLocation": sb.presign(), "SnapshotSize": size, **extra}
    )
    assert response.status_code == 200
    return response.json()["Snapshot"]


def wait_for(sb, snapshot_id, states=("completed", "error"), timeout=15.0, account=None):
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = {"Filters": {"SnapshotIds": [snapshot_id]}}
        (snapshot,) = call(sb, "ReadSnapshots", body, account=account).json()["Snapshots"]
        seen.append(snapshot["Progress"])
        if snapshot["State"] in states:
            return snapshot, seen
        time.sleep(0.05)
    raise AssertionError(f"{snapshot_id} still {snapshot['State']} after {timeout}s")


def error_reason(sb, snapshot_id):
    for snapshots in sb.state()["snapshots"].values():
        for snapshot in snapshots:
            if snapshot["SnapshotId"] == snapshot_id:
                return snapshot["ErrorReason"]
    raise AssertionError(f"{snapshot_id} is not in the sandbox state")


def test_it_answers_each_action_in_the_shapes_of_the_spec(clean_sandbox):
    created = import_demo(clean_sandbox, Description="demo", ClientToken="shape-1")
    assert created["State"] in ("in-queue", "pending")
    assert created["VolumeSize"] == 10
    snapshot_id = created["SnapshotId"]
    tags = {"ResourceIds": [snapshot_id], "Tags": [{"Key": "team", "Value": "blue"}]}

    assert call(clean_sandbox, "CreateTags", tags).status_code == 200
    read = call(clean_sandbox, "ReadSnapshots", {"Filters": {"Tags": ["team=blue"]}}).json()
    assert [s["SnapshotId"] for s in read["Snapshots"]] == [snapshot_id]
    assert read["Snapshots"][0]["Tags"] == [{"Key": "team", "Value": "blue"}]
    assert call(clean_sandbox, "DeleteTags", tags).status_code == 200
    assert call(clean_sandbox, "DeleteSnapshot", {"SnapshotId": snapshot_id}).status_code == 200
    assert call(clean_sandbox, "ReadSnapshots", {}).json()["Snapshots"] == []


@pytest.mark.parametrize(
    ("action", "body", "expected"),
    [
        ("CreateSnapshot", {"SnapshotSize": 1}, (400, "7000", "MissingParameter")),
        ("CreateSnapshot", {"FileLocation": "http://x/y"}, (400, "7000", "MissingParameter")),
        (
            "CreateSnapshot",
            {"FileLocation": "ftp://x/y", "SnapshotSize": 1},
            (400, "4075", "InvalidParameterValue"),
        ),
        (
            "CreateSnapshot",
            {"FileLocation": "http://x/y", "SnapshotSize": "1"},
            (400, "4108", "InvalidParameterValue"),
        ),
        (
            "CreateSnapshot",
            {"FileLocation": "http://x/y", "SnapshotSize": 0},
            (400, "4047", "InvalidParameterValue"),
        ),
        ("CreateSnapshot", {"Bogus": 1}, (400, "4045", "InvalidParameterValue")),
        ("CreateSnapshot", {"VolumeId": "vol-12345678"}, (400, "5064", "InvalidResource")),
        ("CreateSnapshot", {"SourceSnapshotId": "snap-00000000"}, (400, "5054", "InvalidResource")),
        ("ReadSnapshots", {"ResultsPerPage": 1001}, (400, "4047", "InvalidParameterValue")),
        (
            "ReadSnapshots",
            {"ResultsPerPage": 5, "NextPageToken": "bm9wZQ=="},
            (400, "4047", "InvalidParameterValue"),
        ),
        ("ReadSnapshots", {"Filters": {"Colour": ["red"]}}, (400, "4045", "InvalidParameterValue")),
        ("DeleteSnapshot", {}, (400, "7000", "MissingParameter")),
        ("DeleteSnapshot", {"SnapshotId": "snap-00000000"}, (400, "5054", "InvalidResource")),
        ("DeleteSnapshot", {"SnapshotId": "vol-00000000"}, (400, "4104", "InvalidParameterValue")),
        (
            "CreateTags",
            {"ResourceIds": ["snap-00000000"], "Tags": [{"Key": "a", "Value": "b"}]},
            (400, "5054", "InvalidResource"),
        ),
        (
            "CreateTags",
            {"ResourceIds": ["snap-00000000"], "Tags": [{"Key": "a"}]},
            (400, "4108", "InvalidParameterValue"),
        ),
        ("DeleteTags", {"ResourceIds": ["snap-00000000"]}, (400, "7000", "MissingParameter")),
    ],
)
def test_it_answers_bad_requests_with_outscale_errors(clean_sandbox, action, body, expected):
    response = call(clean_sandbox, action, body)

    assert error_of(response) == expected
    assert response.json()["ResponseContext"]["RequestId"]


def test_it_answers_an_unknown_action_with_an_outscale_error(clean_sandbox):
    response = clean_sandbox.call("ReadSnapshotz", {})

    validate_response("ReadSnapshots", response.json(), response.status_code)
    assert error_of(response) == (400, "0", "DefaultError")


def test_it_answers_dry_runs_without_acting(clean_sandbox):
    body = {"FileLocation": clean_sandbox.presign(), "SnapshotSize": BIG_ENOUGH, "DryRun": True}

    response = call(clean_sandbox, "CreateSnapshot", body)

    assert response.status_code == 200
    assert "Snapshot" not in response.json()
    assert clean_sandbox.state()["snapshots"][clean_sandbox.account.account_id] == []


@pytest.mark.parametrize("style", ["v4", "v2"])
def test_it_completes_an_import_with_rising_progress(clean_sandbox, style):
    clean_sandbox.set_speed(min_seconds=1.5)
    body = {"FileLocation": clean_sandbox.presign(style=style), "SnapshotSize": BIG_ENOUGH + 1}
    created = call(clean_sandbox, "CreateSnapshot", body).json()["Snapshot"]

    done, progresses = wait_for(clean_sandbox, created["SnapshotId"])

    assert done["State"] == "completed"
    assert done["Progress"] == 100
    assert done["VolumeSize"] == 11  # ceil((10 GiB + 1 byte) / GiB)
    assert progresses == sorted(progresses)
    assert any(0 < progress < 100 for progress in progresses)


def test_it_fails_an_import_from_an_expired_url(clean_sandbox):
    url = clean_sandbox.presign(expires=1)
    time.sleep(2.1)
    body = {"FileLocation": url, "SnapshotSize": BIG_ENOUGH}
    created = call(clean_sandbox, "CreateSnapshot", body).json()["Snapshot"]

    done, _ = wait_for(clean_sandbox, created["SnapshotId"])

    assert done["State"] == "error"
    assert "HTTP 403" in error_reason(clean_sandbox, created["SnapshotId"])


@pytest.mark.parametrize("style", ["v4", "v2"])
def test_it_fails_an_import_from_a_tampered_url(clean_sandbox, style):
    url = clean_sandbox.presign(style=style)
    tampered = url.replace("demo-snapshot", "demo-snapshoT")
    created = call(
        clean_sandbox, "CreateSnapshot", {"FileLocation": tampered, "SnapshotSize": BIG_ENOUGH}
    )

    done, _ = wait_for(clean_sandbox, created.json()["Snapshot"]["SnapshotId"])

    assert done["State"] == "error"


def test_it_fails_an_import_from_an_unreachable_url(clean_sandbox):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    body = {"FileLocation": f"http://127.0.0.1:{port}/bucket/key?Signature=x", "SnapshotSize": 1}
    created = call(clean_sandbox, "CreateSnapshot", body).json()["Snapshot"]

    done, _ = wait_for(clean_sandbox, created["SnapshotId"])

    assert done["State"] == "error"
    assert error_reason(clean_sandbox, created["SnapshotId"]) == "the object store is unreachable"


def test_it_fails_an_import_smaller_than_the_qcow2_virtual_size(clean_sandbox):
    created = import_demo(clean_sandbox, size=BIG_ENOUGH - 1)

    done, _ = wait_for(clean_sandbox, created["SnapshotId"])

    assert done["State"] == "error"
    assert "virtual size" in error_reason(clean_sandbox, created["SnapshotId"])


def test_it_checks_a_raw_image_against_its_uncompressed_size(clean_sandbox):
    clean_sandbox.put_object("exports/raw.img.gz", gzip.compress(b"\0" * 100_000))
    url = clean_sandbox.presign(key="exports/raw.img.gz")
    too_small = call(clean_sandbox, "CreateSnapshot", {"FileLocation": url, "SnapshotSize": 99_999})
    exact = call(clean_sandbox, "CreateSnapshot", {"FileLocation": url, "SnapshotSize": 100_000})

    failed, _ = wait_for(clean_sandbox, too_small.json()["Snapshot"]["SnapshotId"])
    fitted, _ = wait_for(clean_sandbox, exact.json()["Snapshot"]["SnapshotId"])

    assert failed["State"] == "error"
    assert fitted["State"] == "completed"
    assert fitted["VolumeSize"] == 1


def test_it_returns_the_same_snapshot_for_the_same_client_token(clean_sandbox):
    first = import_demo(clean_sandbox, ClientToken="job-42")
    second = import_demo(clean_sandbox, ClientToken="job-42")
    other = import_demo(clean_sandbox, ClientToken="job-43")

    assert first["SnapshotId"] == second["SnapshotId"] != other["SnapshotId"]
    state = clean_sandbox.state()
    assert len(state["snapshots"][clean_sandbox.account.account_id]) == 2
    assert state["create_snapshot_calls_by_client_token"] == {"job-42": 2, "job-43": 1}
    assert state["calls"]["CreateSnapshot"] == 3


def test_it_pages_over_more_than_a_thousand_snapshots(clean_sandbox):
    source = import_demo(clean_sandbox, ClientToken="source")
    wait_for(clean_sandbox, source["SnapshotId"])
    for index in range(1001):
        copy = {"SourceSnapshotId": source["SnapshotId"], "Description": f"copy {index}"}
        assert clean_sandbox.call("CreateSnapshot", copy).status_code == 200
    filters = {"Descriptions": [f"copy {index}" for index in range(1001)]}

    first = call(
        clean_sandbox, "ReadSnapshots", {"Filters": filters, "ResultsPerPage": 1000}
    ).json()
    body = {"Filters": filters, "ResultsPerPage": 1000, "NextPageToken": first["NextPageToken"]}
    second = call(clean_sandbox, "ReadSnapshots", body).json()
    everything = call(clean_sandbox, "ReadSnapshots", {"Filters": filters}).json()

    assert len(first["Snapshots"]) == 1000
    assert len(second["Snapshots"]) == 1
    assert "NextPageToken" not in second
    assert "NextPageToken" not in everything
    paged = [s["SnapshotId"] for s in first["Snapshots"] + second["Snapshots"]]
    assert paged == [s["SnapshotId"] for s in everything["Snapshots"]]
    assert len(set(paged)) == 1001
    # A token belongs to the query that produced it.
    other_query = {"ResultsPerPage": 1000, "NextPageToken": first["NextPageToken"]}
    assert error_of(call(clean_sandbox, "ReadSnapshots", other_query))[1] == "4047"


def test_it_shows_each_account_only_its_own_snapshots(clean_sandbox):
    if OTHER_TEAM not in clean_sandbox.accounts:
        clean_sandbox.add_account(OTHER_TEAM)
    mine = import_demo(clean_sandbox)

    theirs = call(clean_sandbox, "ReadSnapshots", {}, account=OTHER_TEAM).json()["Snapshots"]
    deleted = call(
        clean_sandbox, "DeleteSnapshot", {"SnapshotId": mine["SnapshotId"]}, account=OTHER_TEAM
    )

    assert theirs == []
    assert error_of(deleted) == (400, "5054", "InvalidResource")


def signed_post(sb, action, body, *, account=None, now=None, sign_body=None):
    payload = json.dumps(body).encode()
    headers = sign_request(
        account or sb.account,
        sb.region,
        method="POST",
        host=sb.endpoint.split("://")[1],
        path=f"/api/v1/{action}",
        body=payload if sign_body is None else sign_body,
        now=now,
    )
    return requests.post(f"{sb.api_url}/{action}", data=payload, headers=headers, timeout=10)


@pytest.mark.parametrize(
    "tamper",
    [
        {"account": Account("SANDBOXACCESSKEY0000", "not-the-secret", "123456789012")},
        {"account": Account("UNKNOWNACCESSKEY0000", "whatever", "123456789012")},
        {"sign_body": b'{"Filters": {}}'},
        {"skew": dt.timedelta(minutes=-16)},
        {"skew": dt.timedelta(minutes=16)},
    ],
    ids=["wrong-secret", "unknown-key", "tampered-body", "stale-date", "future-date"],
)
def test_it_rejects_requests_with_a_bad_signature(clean_sandbox, tamper):
    tamper = dict(tamper)
    if "skew" in tamper:
        tamper["now"] = dt.datetime.now(dt.UTC) + tamper.pop("skew")

    response = signed_post(clean_sandbox, "ReadSnapshots", {}, **tamper)

    validate_response("ReadSnapshots", response.json(), response.status_code)
    assert error_of(response) == (401, "1", "AccessDenied")
    assert "ReadSnapshots" not in clean_sandbox.state()["calls"]


def test_it_accepts_a_request_signed_a_little_in_the_past(clean_sandbox):
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=14)

    assert signed_post(clean_sandbox, "ReadSnapshots", {}, now=now).status_code == 200


def test_it_rejects_unsigned_and_unknown_schemes(clean_sandbox):
    unsigned = requests.post(f"{clean_sandbox.api_url}/ReadSnapshots", json={}, timeout=10)
    basic = requests.post(
        f"{clean_sandbox.api_url}/ReadSnapshots",
        json={},
        headers={"Authorization": "Bearer x"},
        timeout=10,
    )

    assert error_of(unsigned) == (401, "1", "AccessDenied")
    assert error_of(basic) == (401, "12", "AccessDenied")


@pytest.mark.parametrize(("status", "code"), [(429, "24"), (503, "6"), (500, "2000")])
def test_it_injects_error_faults_a_given_number_of_times(clean_sandbox, status, code):
    clean_sandbox.inject_fault("ReadSnapshots", "error", status=status, count=2)

    answers = [call(clean_sandbox, "ReadSnapshots", {}) for _ in range(3)]

    assert [a.status_code for a in answers] == [status, status, 200]
    assert error_of(answers[0])[1] == code


def test_it_injects_faults_through_the_admin_endpoints(clean_sandbox):
    admin = f"{clean_sandbox.endpoint}/_sandbox"
    rule = {"action": "*", "kind": "error", "status": 429, "count": None}

    assert requests.post(f"{admin}/faults", json=rule, timeout=5).status_code == 200
    assert clean_sandbox.call("DeleteTags", {}).status_code == 429
    assert clean_sandbox.call("ReadSnapshots", {}).status_code == 429
    assert requests.delete(f"{admin}/faults", timeout=5).json() == []
    assert clean_sandbox.call("ReadSnapshots", {}).status_code == 200
    assert requests.post(f"{admin}/faults", json={"kind": "boom"}, timeout=5).status_code == 400


def test_it_never_fires_a_fault_of_probability_zero(clean_sandbox):
    clean_sandbox.inject_fault("ReadSnapshots", "error", count=None, probability=0.0)

    assert all(clean_sandbox.call("ReadSnapshots", {}).status_code == 200 for _ in range(20))


def test_it_drops_the_answer_after_acting(clean_sandbox):
    clean_sandbox.inject_fault("CreateSnapshot", "drop")
    body = {
        "FileLocation": clean_sandbox.presign(),
        "SnapshotSize": BIG_ENOUGH,
        "ClientToken": "drop-1",
    }

    with pytest.raises(requests.ConnectionError):
        clean_sandbox.call("CreateSnapshot", body)
    retried = call(clean_sandbox, "CreateSnapshot", body).json()["Snapshot"]

    snapshots = clean_sandbox.state()["snapshots"][clean_sandbox.account.account_id]
    assert [s["SnapshotId"] for s in snapshots] == [retried["SnapshotId"]]
    assert clean_sandbox.state()["create_snapshot_calls_by_client_token"] == {"drop-1": 2}


def test_it_times_out_and_still_acts_late(clean_sandbox):
    clean_sandbox.inject_fault("CreateSnapshot", "timeout", delay=1.0)
    body = {
        "FileLocation": clean_sandbox.presign(),
        "SnapshotSize": BIG_ENOUGH,
        "ClientToken": "late",
    }

    with pytest.raises(requests.ReadTimeout):
        clean_sandbox.call("CreateSnapshot", body, timeout=0.3)
    assert clean_sandbox.state()["snapshots"][clean_sandbox.account.account_id] == []
    time.sleep(1.2)

    assert len(clean_sandbox.state()["snapshots"][clean_sandbox.account.account_id]) == 1


def test_it_answers_slowly_when_told_to(clean_sandbox):
    clean_sandbox.inject_fault("ReadSnapshots", "slow", delay=0.5)
    started = time.monotonic()

    response = call(clean_sandbox, "ReadSnapshots", {})

    assert response.status_code == 200
    assert time.monotonic() - started >= 0.5


def test_it_resets_faults_snapshots_and_speed(clean_sandbox):
    admin = f"{clean_sandbox.endpoint}/_sandbox"
    import_demo(clean_sandbox)
    clean_sandbox.inject_fault("ReadSnapshots", "error", count=None)
    speed = requests.post(f"{admin}/speed", json={"bytes_per_second": 1000}, timeout=5).json()

    state = requests.post(f"{admin}/reset", timeout=5).json()

    assert speed == {"bytes_per_second": 1000, "min_seconds": 0.0}
    assert state["faults"] == []
    assert state["calls"] == {}
    assert state["speed"] == {"bytes_per_second": None, "min_seconds": 0.0}
    assert state["snapshots"][clean_sandbox.account.account_id] == []


def test_it_throttles_imports_by_bytes_per_second(clean_sandbox):
    clean_sandbox.set_speed(bytes_per_second=400_000)
    created = import_demo(clean_sandbox)
    started = time.monotonic()

    done, _ = wait_for(clean_sandbox, created["SnapshotId"])

    assert done["State"] == "completed"
    assert time.monotonic() - started >= 0.8  # 394 KB at 400 KB/s


def test_it_keeps_the_presigned_signature_out_of_state_and_reprs(clean_sandbox):
    url = clean_sandbox.presign()
    signature = dict(parse_qsl(urlsplit(url).query))["X-Amz-Signature"]
    created = call(clean_sandbox, "CreateSnapshot", {"FileLocation": url, "SnapshotSize": 1})
    wait_for(clean_sandbox, created.json()["Snapshot"]["SnapshotId"])

    assert signature not in json.dumps(clean_sandbox.state())
    assert signature not in created.text
    assert signature not in repr(clean_sandbox._state.all())


@pytest.mark.parametrize("style", ["v4", "v2"])
def test_it_serves_ranged_gets_of_presigned_urls(clean_sandbox, style):
    response = requests.get(
        clean_sandbox.presign(style=style), headers={"Range": "bytes=0-65535"}, timeout=10
    )

    assert response.status_code == 206
    assert response.headers["Content-Range"].startswith("bytes 0-65535/")
    assert len(response.content) == 65536
    assert response.content[:2] == b"\x1f\x8b"


@pytest.mark.parametrize("style", ["v4", "v2"])
def test_it_refuses_expired_and_tampered_presigned_urls(clean_sandbox, style):
    expired = clean_sandbox.presign(style=style, expires=1)
    time.sleep(1.1 if style == "v4" else 2.1)
    url = clean_sandbox.presign(style=style)
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    signature_name = "X-Amz-Signature" if style == "v4" else "Signature"
    query[signature_name] = query[signature_name][::-1]
    tampered = parts._replace(query=urlencode(query)).geturl()
    anonymous = parts._replace(query="").geturl()

    assert requests.get(url, timeout=10).status_code == 200
    refused = [requests.get(u, timeout=10) for u in (expired, tampered, anonymous)]

    assert [r.status_code for r in refused] == [403, 403, 403]
    assert "<Code>AccessDenied</Code>" in refused[0].text
    assert "Request has expired" in refused[0].text
    assert "<Code>SignatureDoesNotMatch</Code>" in refused[1].text
    assert query[signature_name] not in refused[1].text


def test_it_seeds_a_gzipped_qcow2_with_a_large_virtual_size(clean_sandbox):
    data = requests.get(clean_sandbox.presign(), timeout=10).content

    image = gzip.decompress(data)

    assert 100_000 < len(data) < 1_000_000
    assert qcow2.read_virtual_size(image) == 10 * 1024**3
    assert image[:4] == b"QFI\xfb"
