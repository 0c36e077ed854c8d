"""The OUTSCALE API client, with `responses` standing in for the API at the HTTP edge."""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import logging
import pickle
from datetime import UTC, datetime
from typing import Any

import pytest
import requests
import responses
from osc_sdk_python.authentication import Authentication
from osc_sdk_python.credentials import Profile
from urllib3.exceptions import ProtocolError

from importer.outscale.client import OscClient
from importer.outscale.errors import OscApiError
from importer.outscale.resources import CreateSnapshotResult, Snapshot
from importer.outscale.signing import OscCredentials
from importer.outscale.transport import default_session
from tests.support.openapi_spec import validate_request, validate_response

ACCESS_KEY = "AKTESTPORTAL0123456789"
SECRET_KEY = "sEcReT/KeY+for-the-client-tests-0123456789"
CREDENTIALS = OscCredentials(access_key=ACCESS_KEY, secret_key=SECRET_KEY)
ENDPOINT = "https://api.eu-west-2.outscale.com/api/v1"
NOW = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
URL_SIGNATURE = "d3adb33f" * 8
PRESIGNED_URL = (
    "https://oos.eu-west-2.outscale.com/exports/snap-0001.qcow2"
    "?X-Amz-Algorithm=AWS4-HMAC-SHA256"
    "&X-Amz-Credential=AKOOSOWNER0001%2F20240506%2Feu-west-2%2Fs3%2Faws4_request"
    "&X-Amz-Date=20240506T070000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host"
    f"&X-Amz-Signature={URL_SIGNATURE}"
)
REQUEST_ID = "0475ca1e-d0c5-441d-712a-da55a4175157"
# Strings that must never leak into errors, reprs or logs.
SECRETS = (SECRET_KEY, ACCESS_KEY, URL_SIGNATURE, "X-Amz-Credential=AKOOS")


# --- Fakes ---------------------------------------------------------------------------------------


def context(request_id: str = REQUEST_ID) -> dict[str, Any]:
    return {"ResponseContext": {"RequestId": request_id}}


def api_snapshot(snapshot_id: str = "snap-12345678", **overrides: Any) -> dict[str, Any]:
    snapshot = {
        "AccountId": "123456789012",
        "ClientToken": "portal-job-42",
        "CreationDate": "2024-05-06T07:08:10.123Z",
        "Description": "Imported by the portal",
        "PermissionsToCreateVolume": {"GlobalPermission": False, "AccountIds": []},
        "Progress": 0,
        "SnapshotId": snapshot_id,
        "State": "importing",
        "Tags": [{"Key": "portal-job", "Value": "42"}],
        "VolumeId": "vol-12345678",
        "VolumeSize": 10,
    }
    snapshot.update(overrides)
    return snapshot


def error_body(code: str, type_: str, details: str, request_id: str = REQUEST_ID) -> dict[str, Any]:
    return {"Errors": [{"Code": code, "Type": type_, "Details": details}], **context(request_id)}


def sent_body(call: Any) -> Any:
    return json.loads(call.request.body)


@pytest.fixture
def api() -> Any:
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        yield mock


@pytest.fixture
def client() -> OscClient:
    return OscClient(credentials=CREDENTIALS, clock=lambda: NOW)


def expected_authorization(
    *, body: bytes, path: str, host: str, region: str = "eu-west-2", now: datetime = NOW
) -> str:
    """OSC4-HMAC-SHA256 worked out step by step from the documented algorithm."""
    amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    canonical = (
        f"POST\n{path}\n\n"
        f"content-type:application/json; charset=utf-8\nhost:{host}\nx-osc-date:{amz_date}\n\n"
        f"content-type;host;x-osc-date\n{hashlib.sha256(body).hexdigest()}"
    )
    scope = f"{day}/{region}/api/osc4_request"
    canonical_hash = hashlib.sha256(canonical.encode()).hexdigest()
    to_sign = f"OSC4-HMAC-SHA256\n{amz_date}\n{scope}\n{canonical_hash}"
    key = ("OSC4" + SECRET_KEY).encode()
    for part in (day, region, "api", "osc4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    return (
        f"OSC4-HMAC-SHA256 Credential={ACCESS_KEY}/{scope}, "
        f"SignedHeaders=content-type;host;x-osc-date, Signature={signature}"
    )


def sdk_headers(*, body: str, path: str, host: str, region: str = "eu-west-2") -> dict[str, str]:
    """The headers the official SDK's own signer produces for the same request and clock."""

    class FixedClockAuthentication(Authentication):  # type: ignore[misc]
        def build_dates(self) -> tuple[str, str]:
            return NOW.strftime("%Y%m%dT%H%M%SZ"), NOW.strftime("%Y%m%d")

    profile = Profile(access_key=ACCESS_KEY, secret_key=SECRET_KEY, region=region)
    headers: dict[str, str] = FixedClockAuthentication(profile, host).forge_headers_signed(
        path, body
    )
    return headers


# --- Requests: shape, schema, headers, signature -------------------------------------------------


def test_it_imports_a_snapshot_with_a_request_valid_against_the_spec(api, client):
    answer = {"Snapshot": api_snapshot(), **context()}
    validate_response("CreateSnapshot", answer)
    api.post(f"{ENDPOINT}/CreateSnapshot", json=answer)

    result = client.create_snapshot(
        file_location=PRESIGNED_URL,
        snapshot_size=10 * 1024**3,
        description="Imported by the portal",
        client_token="portal-job-42",
    )

    body = sent_body(api.calls[0])
    validate_request("CreateSnapshot", body)
    assert body == {
        "FileLocation": PRESIGNED_URL,
        "SnapshotSize": 10737418240,
        "Description": "Imported by the portal",
        "ClientToken": "portal-job-42",
    }
    assert result == CreateSnapshotResult(
        snapshot=Snapshot(
            snapshot_id="snap-12345678",
            state="importing",
            progress=0,
            description="Imported by the portal",
            volume_size_gib=10,
            creation_date=datetime(2024, 5, 6, 7, 8, 10, 123000, tzinfo=UTC),
            client_token="portal-job-42",
            account_id="123456789012",
            tags={"portal-job": "42"},
        ),
        request_id=REQUEST_ID,
    )
    assert result.snapshot is not None and result.snapshot.is_in_progress


def test_it_leaves_optional_create_fields_out_of_the_request(api, client):
    api.post(f"{ENDPOINT}/CreateSnapshot", json={"Snapshot": api_snapshot(), **context()})

    client.create_snapshot(file_location=PRESIGNED_URL, snapshot_size=1024)

    body = sent_body(api.calls[0])
    validate_request("CreateSnapshot", body)
    assert body == {"FileLocation": PRESIGNED_URL, "SnapshotSize": 1024}


def test_it_sends_the_headers_of_a_signed_json_call(api, client):
    api.post(f"{ENDPOINT}/CreateSnapshot", json={"Snapshot": api_snapshot(), **context()})

    client.create_snapshot(file_location=PRESIGNED_URL, snapshot_size=1024)

    headers = api.calls[0].request.headers
    assert api.calls[0].request.method == "POST"
    assert api.calls[0].request.url == f"{ENDPOINT}/CreateSnapshot"
    assert headers["User-Agent"] == "snapshots-portal/0.1"
    assert headers["Content-Type"] == "application/json; charset=utf-8"
    assert headers["X-Osc-Date"] == "20240506T070809Z"


def test_it_signs_like_an_independent_osc4_computation(api, client):
    api.post(f"{ENDPOINT}/CreateSnapshot", json={"Snapshot": api_snapshot(), **context()})

    client.create_snapshot(file_location=PRESIGNED_URL, snapshot_size=1024, client_token="t-1")

    request = api.calls[0].request
    assert request.headers["Authorization"] == expected_authorization(
        body=request.body, path="/api/v1/CreateSnapshot", host="api.eu-west-2.outscale.com"
    )


def test_it_signs_exactly_like_the_official_sdk(api, client):
    api.post(f"{ENDPOINT}/ReadSnapshots", json={"Snapshots": [], **context()})

    client.read_snapshots_page(client_tokens=["portal-job-42"], tags={"portal": "yes"})

    request = api.calls[0].request
    expected = sdk_headers(
        body=request.body.decode(), path="/api/v1/ReadSnapshots", host="api.eu-west-2.outscale.com"
    )
    for name in ("Authorization", "X-Osc-Date", "Content-Type"):
        assert request.headers[name] == expected[name]


def test_it_signs_a_custom_endpoint_host_without_its_port_like_the_sdk(api):
    local = OscClient(
        credentials=CREDENTIALS,
        region="us-east-2",
        endpoint="http://127.0.0.1:8085/api/v1/",
        clock=lambda: NOW,
    )
    api.post("http://127.0.0.1:8085/api/v1/DeleteSnapshot", json=context())

    local.delete_snapshot(snapshot_id="snap-1")

    request = api.calls[0].request
    expected = sdk_headers(
        body=request.body.decode(),
        path="/api/v1/DeleteSnapshot",
        host="127.0.0.1",
        region="us-east-2",
    )
    assert request.headers["Authorization"] == expected["Authorization"]
    assert request.headers["Authorization"] == expected_authorization(
        body=request.body, path="/api/v1/DeleteSnapshot", host="127.0.0.1", region="us-east-2"
    )


def test_it_builds_the_default_endpoint_from_the_region(api):
    api.post("https://api.cloudgouv-eu-west-1.outscale.com/api/v1/DeleteSnapshot", json=context())

    OscClient(credentials=CREDENTIALS, region="cloudgouv-eu-west-1").delete_snapshot(
        snapshot_id="snap-1"
    )

    assert "/cloudgouv-eu-west-1/api/osc4_request" in api.calls[0].request.headers["Authorization"]


@pytest.mark.parametrize("region", ["", "eu-west-2.evil.com/x", "EU WEST"])
def test_it_rejects_a_region_that_is_not_a_plain_name(region):
    with pytest.raises(ValueError, match="region"):
        OscClient(credentials=CREDENTIALS, region=region)


def test_it_reads_a_page_of_snapshots_with_every_filter_valid_against_the_spec(api, client):
    answer = {
        "Snapshots": [api_snapshot("snap-1", State="completed", Progress=100)],
        "NextPageToken": base64.b64encode(b"page-2").decode(),
        **context(),
    }
    validate_response("ReadSnapshots", answer)
    api.post(f"{ENDPOINT}/ReadSnapshots", json=answer)

    page = client.read_snapshots_page(
        snapshot_ids=["snap-1", "snap-2"],
        client_tokens=("portal-job-42",),
        states=["completed", "error"],
        tags={"portal-job": "42", "team": "blue"},
        results_per_page=50,
        next_page_token=base64.b64encode(b"page-1").decode(),
    )

    body = sent_body(api.calls[0])
    validate_request("ReadSnapshots", body)
    assert body == {
        "Filters": {
            "SnapshotIds": ["snap-1", "snap-2"],
            "ClientTokens": ["portal-job-42"],
            "States": ["completed", "error"],
            "Tags": ["portal-job=42", "team=blue"],
        },
        "ResultsPerPage": 50,
        "NextPageToken": base64.b64encode(b"page-1").decode(),
    }
    assert [s.snapshot_id for s in page.snapshots] == ["snap-1"]
    assert page.snapshots[0].is_completed
    assert page.next_page_token == base64.b64encode(b"page-2").decode()
    assert page.request_id == REQUEST_ID


def test_it_reads_without_filters_when_none_are_given(api, client):
    api.post(f"{ENDPOINT}/ReadSnapshots", json={"Snapshots": [], **context()})

    page = client.read_snapshots_page()

    body = sent_body(api.calls[0])
    validate_request("ReadSnapshots", body)
    assert body == {"ResultsPerPage": 1000}
    assert page.snapshots == [] and page.next_page_token is None


def test_it_answers_an_empty_id_list_without_listing_every_snapshot(api, client):
    page = client.read_snapshots_page(client_tokens=[])

    assert page.snapshots == [] and page.next_page_token is None
    assert len(api.calls) == 0


def test_it_refuses_a_bare_string_where_a_list_of_ids_is_expected(client):
    with pytest.raises(TypeError, match="snapshot_ids"):
        client.read_snapshots_page(snapshot_ids="snap-1")


@pytest.mark.parametrize("per_page", [0, 1001])
def test_it_refuses_a_page_size_outside_the_api_range(client, per_page):
    with pytest.raises(ValueError, match="results_per_page"):
        client.read_snapshots_page(results_per_page=per_page)


@pytest.mark.parametrize(
    ("method", "action"), [("create_tags", "CreateTags"), ("delete_tags", "DeleteTags")]
)
def test_it_sends_tag_changes_valid_against_the_spec(api, client, method, action):
    validate_response(action, context("req-tags"))
    api.post(f"{ENDPOINT}/{action}", json=context("req-tags"))

    request_id = getattr(client, method)(
        resource_ids=["snap-1", "snap-2"], tags={"portal-job": "42", "note": ""}
    )

    body = sent_body(api.calls[0])
    validate_request(action, body)
    assert body == {
        "ResourceIds": ["snap-1", "snap-2"],
        "Tags": [{"Key": "portal-job", "Value": "42"}, {"Key": "note", "Value": ""}],
    }
    assert request_id == "req-tags"


def test_it_refuses_to_tag_nothing(client):
    with pytest.raises(ValueError):
        client.create_tags(resource_ids=[], tags={"a": "b"})
    with pytest.raises(ValueError):
        client.delete_tags(resource_ids=["snap-1"], tags={})


def test_it_deletes_a_snapshot_with_a_request_valid_against_the_spec(api, client):
    validate_response("DeleteSnapshot", context("req-del"))
    api.post(f"{ENDPOINT}/DeleteSnapshot", json=context("req-del"))

    assert client.delete_snapshot(snapshot_id="snap-1") == "req-del"

    body = sent_body(api.calls[0])
    validate_request("DeleteSnapshot", body)
    assert body == {"SnapshotId": "snap-1"}


# --- DryRun --------------------------------------------------------------------------------------


def test_it_returns_no_snapshot_when_a_dry_run_is_permitted(api, client):
    validate_response("CreateSnapshot", context("req-dry"))
    api.post(f"{ENDPOINT}/CreateSnapshot", json=context("req-dry"))

    result = client.create_snapshot(file_location=PRESIGNED_URL, snapshot_size=1024, dry_run=True)

    body = sent_body(api.calls[0])
    validate_request("CreateSnapshot", body)
    assert body["DryRun"] is True
    assert result == CreateSnapshotResult(snapshot=None, request_id="req-dry")


def test_it_treats_an_ec2_style_dry_run_operation_answer_as_permitted(api, client):
    api.post(
        f"{ENDPOINT}/CreateSnapshot",
        status=412,
        json=error_body("", "DryRunOperation", "Request would have succeeded", "req-dry"),
    )

    result = client.create_snapshot(file_location=PRESIGNED_URL, snapshot_size=1024, dry_run=True)

    assert result == CreateSnapshotResult(snapshot=None, request_id="req-dry")


def test_it_raises_when_a_dry_run_is_refused(api, client):
    answer = error_body("4", "AccessDenied", "Access denied.", "req-denied")
    validate_response("CreateSnapshot", answer, 401)
    api.post(f"{ENDPOINT}/CreateSnapshot", status=401, json=answer)

    with pytest.raises(OscApiError) as caught:
        client.create_snapshot(file_location=PRESIGNED_URL, snapshot_size=1024, dry_run=True)

    assert caught.value.type == "AccessDenied" and not caught.value.transient
    assert caught.value.request_id == "req-denied"


def test_it_does_not_accept_dry_run_operation_on_a_real_create(api, client):
    api.post(
        f"{ENDPOINT}/CreateSnapshot",
        status=412,
        json=error_body("", "DryRunOperation", "Request would have succeeded"),
    )

    with pytest.raises(OscApiError):
        client.create_snapshot(file_location=PRESIGNED_URL, snapshot_size=1024)


# --- Errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code", "type_", "transient"),
    [
        (429, "24", "ErrorOperationThrottledPerAccount", True),
        (429, "25", "ErrorOperationThrottledPerCall", True),
        (503, "6", "ErrorOperationThrottledWholePlatform", True),
        (500, "2000", "InternalError", True),
        (502, "2001", "BadGateway", True),
        (400, "4045", "InvalidParameterValue", False),
        (401, "1", "AccessDenied", False),
        (403, "4", "AccessDenied", False),
        (404, "5054", "InvalidResource", False),
    ],
)
def test_it_raises_api_errors_with_their_fields_and_transience(
    api, client, status, code, type_, transient
):
    api.post(
        f"{ENDPOINT}/ReadSnapshots",
        status=status,
        json=error_body(code, type_, "Something went wrong.", "req-err"),
    )

    with pytest.raises(OscApiError) as caught:
        client.read_snapshots_page(snapshot_ids=["snap-1"])

    error = caught.value
    assert (error.action, error.http_status, error.code, error.type) == (
        "ReadSnapshots",
        status,
        code,
        type_,
    )
    assert error.details == "Something went wrong."
    assert error.request_id == "req-err"
    assert error.transient is transient
    assert str(error) == (
        f"ReadSnapshots failed: {code} {type_}: Something went wrong. (request id req-err)"
    )


def test_it_formats_the_error_line_like_the_api_reports_it(api, client):
    answer = error_body("4045", "InvalidParameterValue", "SnapshotSize is too small.", "req-1")
    validate_response("CreateSnapshot", answer, 400)
    api.post(f"{ENDPOINT}/CreateSnapshot", status=400, json=answer)

    with pytest.raises(OscApiError) as caught:
        client.create_snapshot(file_location=PRESIGNED_URL, snapshot_size=1)

    assert str(caught.value) == (
        "CreateSnapshot failed: 4045 InvalidParameterValue: SnapshotSize is too small. "
        "(request id req-1)"
    )


@pytest.mark.parametrize(("status", "transient"), [(502, True), (504, True), (400, False)])
def test_it_raises_on_an_error_body_that_is_not_json(api, client, status, transient):
    api.post(
        f"{ENDPOINT}/ReadSnapshots",
        status=status,
        body="<html><body><h1>Bad things</h1></body></html>",
        content_type="text/html",
        headers={"X-Request-Id": "edge-7"},
    )

    with pytest.raises(OscApiError) as caught:
        client.read_snapshots_page()

    error = caught.value
    assert error.http_status == status and error.code == "" and error.type == ""
    assert error.transient is transient
    assert error.request_id == "edge-7"
    assert str(error).startswith(f"ReadSnapshots failed: HTTP {status}: the answer is not")
    # Whatever answered is never echoed: the client must not read internal pages for anyone.
    assert "Bad things" not in str(error) and "<html>" not in str(error)
    assert "text/html" in str(error)


def test_it_raises_a_transient_error_on_a_success_that_is_not_json(api, client):
    api.post(f"{ENDPOINT}/CreateSnapshot", body="upstream hiccup", content_type="text/plain")

    with pytest.raises(OscApiError) as caught:
        client.create_snapshot(file_location=PRESIGNED_URL, snapshot_size=1024)

    assert caught.value.type == "InvalidResponse" and caught.value.transient


def test_it_raises_a_transient_error_when_a_create_answer_lacks_the_snapshot(api, client):
    api.post(f"{ENDPOINT}/CreateSnapshot", json=context("req-empty"))

    with pytest.raises(OscApiError) as caught:
        client.create_snapshot(file_location=PRESIGNED_URL, snapshot_size=1024)

    assert caught.value.type == "InvalidResponse" and caught.value.transient
    assert caught.value.request_id == "req-empty"


def test_it_does_not_follow_redirects(api, client):
    api.post(
        f"{ENDPOINT}/DeleteSnapshot", status=302, headers={"Location": "https://elsewhere.test/"}
    )

    with pytest.raises(OscApiError) as caught:
        client.delete_snapshot(snapshot_id="snap-1")

    assert caught.value.http_status == 302 and not caught.value.transient
    assert len(api.calls) == 1


@pytest.mark.parametrize(
    ("exception", "type_"),
    [
        (requests.ConnectTimeout("connect timed out"), "ConnectTimeout"),
        (requests.ReadTimeout("read timed out"), "ReadTimeout"),
        (requests.ConnectionError("Connection refused"), "ConnectionError"),
        (
            requests.ConnectionError(
                ProtocolError(
                    "Connection aborted.",
                    http.client.RemoteDisconnected("Remote end closed connection"),
                )
            ),
            "ConnectionError",
        ),
        (requests.exceptions.ChunkedEncodingError("Connection broken"), "ConnectionError"),
    ],
)
def test_it_raises_transient_errors_on_timeouts_and_connection_failures(
    api, client, exception, type_
):
    api.post(f"{ENDPOINT}/CreateSnapshot", body=exception)

    with pytest.raises(OscApiError) as caught:
        client.create_snapshot(file_location=PRESIGNED_URL, snapshot_size=1024)

    error = caught.value
    assert error.type == type_ and error.transient
    assert error.http_status is None and error.code == "" and error.request_id == ""
    assert str(error).startswith(f"CreateSnapshot failed: {type_}: ")
    # The requests exception holds the request body (the pre-signed URL): it is not chained.
    assert error.__cause__ is None and error.__suppress_context__


def test_it_says_a_read_timeout_may_have_let_the_request_through(api, client):
    api.post(f"{ENDPOINT}/CreateSnapshot", body=requests.ReadTimeout("read timed out"))

    with pytest.raises(OscApiError) as caught:
        client.create_snapshot(file_location=PRESIGNED_URL, snapshot_size=1024)

    assert "may have been processed" in caught.value.details


def test_it_treats_other_request_failures_as_permanent(api, client):
    api.post(f"{ENDPOINT}/DeleteSnapshot", body=requests.exceptions.InvalidHeader("bad header"))

    with pytest.raises(OscApiError) as caught:
        client.delete_snapshot(snapshot_id="snap-1")

    assert caught.value.type == "InvalidHeader" and not caught.value.transient


def test_it_never_sends_a_create_snapshot_twice(api, client):
    api.post(f"{ENDPOINT}/CreateSnapshot", status=503, json=error_body("6", "Throttled", "Busy"))

    with pytest.raises(OscApiError):
        client.create_snapshot(file_location=PRESIGNED_URL, snapshot_size=1024)

    assert len(api.calls) == 1


def test_it_keeps_every_field_when_an_error_is_pickled():
    error = OscApiError(
        action="CreateSnapshot",
        http_status=429,
        code="24",
        type="ErrorOperationThrottledPerAccount",
        details="Request rate exceeded.",
        request_id="req-9",
        transient=True,
    )

    copy = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own bytes

    assert (copy.action, copy.http_status, copy.code, copy.type) == (
        "CreateSnapshot",
        429,
        "24",
        "ErrorOperationThrottledPerAccount",
    )
    assert (copy.details, copy.request_id, copy.transient) == (
        "Request rate exceeded.",
        "req-9",
        True,
    )
    assert str(copy) == str(error)


# --- Timeouts ------------------------------------------------------------------------------------


def test_it_passes_the_connect_and_read_timeouts_on_every_call(api):
    timed = OscClient(credentials=CREDENTIALS, connect_timeout=2.5, read_timeout=12.0)
    for action in ("CreateSnapshot", "ReadSnapshots", "CreateTags", "DeleteTags", "DeleteSnapshot"):
        extra = {"Snapshot": api_snapshot()} if action == "CreateSnapshot" else {}
        api.post(f"{ENDPOINT}/{action}", json={**extra, **context()})

    timed.create_snapshot(file_location=PRESIGNED_URL, snapshot_size=1024)
    timed.read_snapshots()
    timed.create_tags(resource_ids=["snap-1"], tags={"a": "b"})
    timed.delete_tags(resource_ids=["snap-1"], tags={"a": "b"})
    timed.delete_snapshot(snapshot_id="snap-1")

    assert [call.request.req_kwargs["timeout"] for call in api.calls] == [(2.5, 12.0)] * 5


@pytest.mark.parametrize(("connect", "read"), [(0, 30.0), (5.0, -1)])
def test_it_refuses_a_missing_timeout(connect, read):
    with pytest.raises(ValueError, match="timeouts"):
        OscClient(credentials=CREDENTIALS, connect_timeout=connect, read_timeout=read)


# --- Paging --------------------------------------------------------------------------------------


def serve_pages(api: Any, pages: list[tuple[list[str], str | None]]) -> None:
    """Answer ReadSnapshots page by page, keyed by the NextPageToken each request carries."""
    by_token = {}
    previous: str | None = None
    for ids, token in pages:
        by_token[previous] = (ids, token)
        previous = token

    def answer(request: Any) -> tuple[int, dict[str, str], str]:
        body = json.loads(request.body)
        validate_request("ReadSnapshots", body)
        ids, token = by_token[body.get("NextPageToken")]
        payload: dict[str, Any] = {"Snapshots": [api_snapshot(i) for i in ids], **context()}
        if token is not None:
            payload["NextPageToken"] = token
        return 200, {}, json.dumps(payload)

    api.add_callback(responses.POST, f"{ENDPOINT}/ReadSnapshots", callback=answer)


def test_it_follows_next_page_tokens_over_more_than_a_thousand_snapshots(api, client):
    ids = [f"snap-{n:08x}" for n in range(2500)]
    token_2, token_3 = base64.b64encode(b"p2").decode(), base64.b64encode(b"p3").decode()
    serve_pages(api, [(ids[:1000], token_2), (ids[1000:2000], token_3), (ids[2000:], None)])

    snapshots = client.read_snapshots(tags={"portal": "yes"})

    assert [s.snapshot_id for s in snapshots] == ids
    bodies = [sent_body(call) for call in api.calls]
    assert [b.get("NextPageToken") for b in bodies] == [None, token_2, token_3]
    assert all(b["ResultsPerPage"] == 1000 for b in bodies)
    assert all(b["Filters"] == {"Tags": ["portal=yes"]} for b in bodies)


def test_it_fetches_pages_lazily_when_iterating(api, client):
    serve_pages(api, [(["snap-1", "snap-2"], "cDI="), (["snap-3"], None)])

    snapshots = client.iter_snapshots()
    first = next(snapshots)

    assert first.snapshot_id == "snap-1" and len(api.calls) == 1
    assert [s.snapshot_id for s in snapshots] == ["snap-2", "snap-3"]
    assert len(api.calls) == 2


def test_it_stops_paging_when_the_api_repeats_a_token(api, client, caplog):
    caplog.set_level(logging.WARNING, logger="importer.outscale.client")
    pages = iter([(["snap-1"], "cDI="), (["snap-2"], "cDI="), (["snap-3"], "cDM=")])

    def answer(request: Any) -> tuple[int, dict[str, str], str]:
        ids, token = next(pages)
        payload = {"Snapshots": [api_snapshot(i) for i in ids], "NextPageToken": token}
        return 200, {}, json.dumps({**payload, **context()})

    api.add_callback(responses.POST, f"{ENDPOINT}/ReadSnapshots", callback=answer)

    snapshots = client.read_snapshots()

    assert [s.snapshot_id for s in snapshots] == ["snap-1", "snap-2"]
    assert len(api.calls) == 2
    assert "repeated a page token" in caplog.text


def test_it_raises_rather_than_truncate_past_the_page_limit(api, client):
    counter = iter(range(1000))

    def answer(request: Any) -> tuple[int, dict[str, str], str]:
        n = next(counter)
        token = base64.b64encode(f"p{n}".encode()).decode()
        payload = {"Snapshots": [api_snapshot(f"snap-{n}")], "NextPageToken": token}
        return 200, {}, json.dumps({**payload, **context()})

    api.add_callback(responses.POST, f"{ENDPOINT}/ReadSnapshots", callback=answer)

    with pytest.raises(OscApiError) as caught:
        client.read_snapshots(max_pages=3)

    assert caught.value.type == "TooManyPages" and not caught.value.transient
    assert len(api.calls) == 3


# --- Snapshots -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "in_progress", "completed", "failed"),
    [
        ("in-queue", True, False, False),
        ("pending", True, False, False),
        ("importing", True, False, False),
        ("queued", True, False, False),
        ("pending/queued", True, False, False),
        ("completed", False, True, False),
        ("error", False, False, True),
        ("deleting", False, False, False),
        ("some-new-state", False, False, False),
    ],
)
def test_it_classifies_snapshot_states(state, in_progress, completed, failed):
    snapshot = Snapshot.from_api(api_snapshot(State=state))

    assert snapshot.state == state
    assert (snapshot.is_in_progress, snapshot.is_completed, snapshot.is_failed) == (
        in_progress,
        completed,
        failed,
    )


def test_it_reads_a_sparse_snapshot_with_defaults():
    snapshot = Snapshot.from_api({"SnapshotId": "snap-1", "State": "pending", "CreationDate": "?"})

    assert snapshot == Snapshot(
        snapshot_id="snap-1",
        state="pending",
        progress=0,
        description="",
        volume_size_gib=None,
        creation_date=None,
        client_token="",
        account_id="",
        tags={},
    )


# --- Secrets -------------------------------------------------------------------------------------


def assert_no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text


def test_it_hides_the_secret_key_and_most_of_the_access_key_in_reprs(client):
    for text in (repr(CREDENTIALS), str(CREDENTIALS), repr(client), str(client)):
        assert_no_secret(text)
    assert repr(CREDENTIALS) == "OscCredentials(access_key='AKTE…', secret_key='***')"


def test_it_redacts_a_pre_signed_url_the_api_echoes_back(api, client, caplog):
    caplog.set_level(logging.DEBUG)
    api.post(
        f"{ENDPOINT}/CreateSnapshot",
        status=400,
        json=error_body(
            "4045",
            "InvalidParameterValue",
            f"Cannot read FileLocation {PRESIGNED_URL} (key {ACCESS_KEY}, "
            f"X-Amz-Signature%3D{URL_SIGNATURE}).",
        ),
    )

    with pytest.raises(OscApiError) as caught:
        client.create_snapshot(file_location=PRESIGNED_URL, snapshot_size=1024)

    error = caught.value
    for text in (str(error), repr(error), error.details, caplog.text):
        assert_no_secret(text)
    assert "https://oos.eu-west-2.outscale.com/exports/snap-0001.qcow2?[REDACTED]" in str(error)


def test_it_keeps_secrets_out_of_transport_errors(api, client, caplog):
    caplog.set_level(logging.DEBUG)
    api.post(
        f"{ENDPOINT}/CreateSnapshot",
        body=requests.ConnectionError(f"proxy refused {PRESIGNED_URL} for {SECRET_KEY}"),
    )

    with pytest.raises(OscApiError) as caught:
        client.create_snapshot(file_location=PRESIGNED_URL, snapshot_size=1024)

    for text in (str(caught.value), repr(caught.value), caplog.text):
        assert_no_secret(text)


def test_it_logs_each_call_without_bodies_or_credentials(api, client, caplog):
    caplog.set_level(logging.DEBUG)
    api.post(f"{ENDPOINT}/CreateSnapshot", json={"Snapshot": api_snapshot(), **context()})
    api.post(f"{ENDPOINT}/ReadSnapshots", status=429, json=error_body("24", "Throttled", "Slow"))

    client.create_snapshot(file_location=PRESIGNED_URL, snapshot_size=1024)
    with pytest.raises(OscApiError):
        client.read_snapshots_page()

    ours = [r for r in caplog.records if r.name == "importer.outscale.client"]
    messages = [r.getMessage() for r in ours]
    assert any("CreateSnapshot" in m and "200" in m and REQUEST_ID in m for m in messages)
    assert any("ReadSnapshots" in m and "429" in m for m in messages)
    assert_no_secret(caplog.text)
    assert "FileLocation" not in caplog.text and "oos.eu-west-2" not in caplog.text
    assert "Authorization" not in caplog.text


def test_it_refuses_empty_credentials_without_echoing_them():
    with pytest.raises(ValueError) as caught:
        OscCredentials(access_key="AKONLY0123456789", secret_key="")

    assert "AKONLY" not in str(caught.value)


# --- Session -------------------------------------------------------------------------------------


def test_it_shares_one_session_per_process_and_renews_it_after_a_fork(monkeypatch):
    first = default_session()
    assert default_session() is first

    monkeypatch.setattr("os.getpid", lambda: -1)

    assert default_session() is not first


def test_it_sends_through_an_injected_session(api):
    class CountingSession(requests.Session):
        posts = 0

        def post(self, *args: Any, **kwargs: Any) -> requests.Response:
            CountingSession.posts += 1
            return super().post(*args, **kwargs)

    api.post(f"{ENDPOINT}/DeleteSnapshot", json=context())
    injected = OscClient(credentials=CREDENTIALS, session=CountingSession())

    injected.delete_snapshot(snapshot_id="snap-1")

    assert CountingSession.posts == 1


def test_it_keeps_no_cookies_in_the_shared_session(api):
    api.post(f"{ENDPOINT}/DeleteSnapshot", json=context(), headers={"Set-Cookie": "lb=node-3"})

    OscClient(credentials=CREDENTIALS).delete_snapshot(snapshot_id="snap-1")

    assert len(default_session().cookies) == 0


def test_its_log_lines_carry_the_apis_request_id_for_structured_logs(api, client, caplog):
    api.post(f"{ENDPOINT}/ReadSnapshots", json={"Snapshots": [], **context()})
    api.post(
        f"{ENDPOINT}/ReadSnapshots",
        status=400,
        json={"Errors": [{"Code": "4045", "Type": "InvalidParameterValue"}], **context("req-2")},
    )

    with caplog.at_level("INFO", logger="importer.outscale"):
        client.read_snapshots_page()
        with pytest.raises(OscApiError):
            client.read_snapshots_page()

    ids = [getattr(record, "request_id", None) for record in caplog.records]
    assert ids == [REQUEST_ID, "req-2"]
