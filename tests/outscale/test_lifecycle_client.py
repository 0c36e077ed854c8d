"""The lifecycle calls of the OUTSCALE client, with `responses` standing in for the API."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

import pytest
import responses

from importer.outscale.client import (
    SNAPSHOT_EXPORT_TASKS,
    SNAPSHOTS,
    OscClient,
    SnapshotExportTaskFilters,
    SnapshotFilters,
)
from importer.outscale.errors import OscApiError
from importer.outscale.lifecycle import IMAGES, VOLUMES, ImageFilters, VolumeFilters
from importer.outscale.lifecycle_resources import (
    CreateImageResult,
    CreateVolumeResult,
    Image,
    Subregion,
    Volume,
)
from importer.outscale.resources import Snapshot, SnapshotPermissions
from importer.outscale.signing import OscCredentials
from tests.support.openapi_spec import validate_request, validate_response

CREDENTIALS = OscCredentials(
    access_key="AKTESTPORTAL0123456789", secret_key="sEcReT/KeY+for-the-lifecycle-tests-0123"
)
ENDPOINT = "https://api.eu-west-2.outscale.com/api/v1"
NOW = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
REQUEST_ID = "0475ca1e-d0c5-441d-712a-da55a4175157"
CREATED = "2024-05-06T07:08:10.123Z"
CREATED_AT = datetime(2024, 5, 6, 7, 8, 10, 123000, tzinfo=UTC)
PAGE_2 = base64.b64encode(b"page-2").decode()


# --- Fakes ---------------------------------------------------------------------------------------


def context(request_id: str = REQUEST_ID) -> dict[str, Any]:
    return {"ResponseContext": {"RequestId": request_id}}


def api_volume(volume_id: str = "vol-12345678", **overrides: Any) -> dict[str, Any]:
    volume = {
        "ClientToken": "derived-7",
        "CreationDate": CREATED,
        "Iops": 1500,
        "LinkedVolumes": [],
        "Size": 20,
        "SnapshotId": "snap-12345678",
        "State": "creating",
        "SubregionName": "eu-west-2a",
        "Tags": [{"Key": "portal-job", "Value": "7"}],
        "VolumeId": volume_id,
        "VolumeType": "io1",
    }
    volume.update(overrides)
    return volume


def api_image(image_id: str = "ami-12345678", **overrides: Any) -> dict[str, Any]:
    image = {
        "AccountId": "123456789012",
        "Architecture": "x86_64",
        "BlockDeviceMappings": [
            {
                "DeviceName": "/dev/sda1",
                "Bsu": {
                    "DeleteOnVmDeletion": True,
                    "SnapshotId": "snap-12345678",
                    "VolumeSize": 20,
                    "VolumeType": "gp2",
                },
            },
            {"DeviceName": "/dev/sdb", "VirtualDeviceName": "ephemeral0"},
        ],
        "BootModes": ["legacy"],
        "CreationDate": CREATED,
        "Description": "Made by the portal",
        "ImageId": image_id,
        "ImageName": "portal-image-7",
        "ImageType": "machine",
        "PermissionsToLaunch": {"AccountIds": [], "GlobalPermission": False},
        "RootDeviceName": "/dev/sda1",
        "RootDeviceType": "bsu",
        "State": "pending",
        "StateComment": {"StateCode": "", "StateMessage": ""},
        "Tags": [],
    }
    image.update(overrides)
    return image


def api_snapshot(snapshot_id: str = "snap-12345678", **overrides: Any) -> dict[str, Any]:
    snapshot = {
        "AccountId": "123456789012",
        "ClientToken": "derived-8",
        "CreationDate": CREATED,
        "Description": "A copy",
        "PermissionsToCreateVolume": {"GlobalPermission": False, "AccountIds": []},
        "Progress": 0,
        "SnapshotId": snapshot_id,
        "State": "pending/queued",
        "Tags": [],
        "VolumeSize": 20,
    }
    snapshot.update(overrides)
    return snapshot


def sent_body(call: Any) -> Any:
    return json.loads(call.request.body)


def answer_with(api: Any, action: str, answer: dict[str, Any]) -> None:
    """Serve `answer` for `action`, after checking it is what the spec says the API answers."""
    validate_response(action, answer)
    api.post(f"{ENDPOINT}/{action}", json=answer)


def serve_pages(api: Any, action: str, key: str, pages: list[list[dict[str, Any]]]) -> None:
    """Answer `action` page by page, keyed by the NextPageToken each (validated) request has."""
    later = [base64.b64encode(f"p{n}".encode()).decode() for n in range(2, len(pages) + 1)]
    tokens = [None, *later]

    def answer(request: Any) -> tuple[int, dict[str, str], str]:
        body = json.loads(request.body)
        validate_request(action, body)
        index = tokens.index(body.get("NextPageToken"))
        payload: dict[str, Any] = {key: pages[index], **context(f"req-{index}")}
        if index + 1 < len(pages):
            payload["NextPageToken"] = tokens[index + 1]
        validate_response(action, payload)
        return 200, {}, json.dumps(payload)

    api.add_callback(responses.POST, f"{ENDPOINT}/{action}", callback=answer)


@pytest.fixture
def api() -> Any:
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        yield mock


@pytest.fixture
def client() -> OscClient:
    return OscClient(credentials=CREDENTIALS, clock=lambda: NOW)


def assert_invalid_response(caught: pytest.ExceptionInfo[OscApiError], action: str) -> None:
    assert caught.value.action == action
    assert caught.value.type == "InvalidResponse" and caught.value.transient
    assert caught.value.request_id == "req-empty"


# --- Subregions ----------------------------------------------------------------------------------


def test_it_reads_every_subregion_following_pages(api, client):
    serve_pages(
        api,
        "ReadSubregions",
        "Subregions",
        [
            [
                {
                    "SubregionName": "eu-west-2a",
                    "State": "available",
                    "RegionName": "eu-west-2",
                    "LocationCode": "PAR1",
                }
            ],
            [{"SubregionName": "eu-west-2b", "State": "available", "RegionName": "eu-west-2"}],
        ],
    )

    subregions = client.read_subregions()

    assert subregions == [
        Subregion(name="eu-west-2a", state="available", region_name="eu-west-2"),
        Subregion(name="eu-west-2b", state="available", region_name="eu-west-2"),
    ]
    assert [sent_body(call) for call in api.calls] == [
        {"ResultsPerPage": 1000},
        {"ResultsPerPage": 1000, "NextPageToken": base64.b64encode(b"p2").decode()},
    ]


# --- Volumes -------------------------------------------------------------------------------------


def test_it_creates_a_volume_with_a_request_valid_against_the_spec(api, client):
    answer_with(api, "CreateVolume", {"Volume": api_volume(), **context()})

    result = client.create_volume(
        subregion_name="eu-west-2a",
        snapshot_id="snap-12345678",
        volume_type="io1",
        size_gib=20,
        iops=1500,
        client_token="derived-7",
    )

    body = sent_body(api.calls[0])
    validate_request("CreateVolume", body)
    assert body == {
        "SubregionName": "eu-west-2a",
        "SnapshotId": "snap-12345678",
        "VolumeType": "io1",
        "Size": 20,
        "Iops": 1500,
        "ClientToken": "derived-7",
    }
    assert result == CreateVolumeResult(
        volume=Volume(
            volume_id="vol-12345678",
            state="creating",
            subregion_name="eu-west-2a",
            size_gib=20,
            volume_type="io1",
            iops=1500,
            snapshot_id="snap-12345678",
            client_token="derived-7",
            creation_date=CREATED_AT,
            tags={"portal-job": "7"},
        ),
        request_id=REQUEST_ID,
    )
    assert result.volume.is_in_progress


def test_it_leaves_optional_volume_fields_out_of_the_request(api, client):
    answer_with(api, "CreateVolume", {"Volume": api_volume(VolumeType="standard"), **context()})

    client.create_volume(subregion_name="eu-west-2b", snapshot_id="snap-1")

    body = sent_body(api.calls[0])
    validate_request("CreateVolume", body)
    assert body == {"SubregionName": "eu-west-2b", "SnapshotId": "snap-1", "VolumeType": "standard"}


@pytest.mark.parametrize("volume", [None, "vol-12345678", []])
def test_it_raises_a_transient_error_when_a_create_volume_answer_lacks_the_volume(
    api, client, volume
):
    if volume is None:
        answer_with(api, "CreateVolume", context("req-empty"))
    else:  # Not what the spec allows: a garbled answer is no volume either.
        api.post(f"{ENDPOINT}/CreateVolume", json={"Volume": volume, **context("req-empty")})

    with pytest.raises(OscApiError) as caught:
        client.create_volume(subregion_name="eu-west-2a", snapshot_id="snap-1", client_token="t")

    assert_invalid_response(caught, "CreateVolume")
    assert len(api.calls) == 1


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"subregion_name": ""}, "subregion_name"),
        ({"snapshot_id": ""}, "snapshot_id"),
        ({"volume_type": "gp3"}, "volume_type"),
        ({"volume_type": "gp2", "iops": 100}, "iops"),
        ({"volume_type": "io1", "iops": 0}, "iops"),
        ({"size_gib": 0}, "size"),
        ({"client_token": ""}, "client_token"),
    ],
)
def test_it_refuses_a_volume_the_caller_got_wrong_without_calling(api, client, arguments, message):
    with pytest.raises(ValueError, match=message):
        client.create_volume(
            **{"subregion_name": "eu-west-2a", "snapshot_id": "snap-1", **arguments}
        )

    assert len(api.calls) == 0


def test_it_reads_a_page_of_volumes_with_every_filter_valid_against_the_spec(api, client):
    answer_with(
        api,
        "ReadVolumes",
        {"Volumes": [api_volume(State="available")], "NextPageToken": PAGE_2, **context()},
    )

    page = client.read_volumes_page(
        volume_ids=["vol-12345678"],
        snapshot_ids=("snap-12345678",),
        client_tokens=["derived-7", "derived-8"],
        results_per_page=10,
        next_page_token=base64.b64encode(b"page-1").decode(),
    )

    body = sent_body(api.calls[0])
    validate_request("ReadVolumes", body)
    assert body == {
        "Filters": {
            "VolumeIds": ["vol-12345678"],
            "SnapshotIds": ["snap-12345678"],
            "ClientTokens": ["derived-7", "derived-8"],
        },
        "ResultsPerPage": 10,
        "NextPageToken": base64.b64encode(b"page-1").decode(),
    }
    assert [v.volume_id for v in page.items] == ["vol-12345678"]
    assert page.items[0].is_available
    assert page.next_page_token == PAGE_2 and page.request_id == REQUEST_ID


def test_it_follows_next_page_tokens_when_reading_volumes(api, client):
    serve_pages(
        api,
        "ReadVolumes",
        "Volumes",
        [[api_volume("vol-1"), api_volume("vol-2")], [api_volume("vol-3")], [api_volume("vol-4")]],
    )

    volumes = client.read_volumes(snapshot_ids=["snap-12345678"])

    assert [v.volume_id for v in volumes] == ["vol-1", "vol-2", "vol-3", "vol-4"]
    bodies = [sent_body(call) for call in api.calls]
    assert [b.get("NextPageToken") for b in bodies] == [
        None,
        base64.b64encode(b"p2").decode(),
        base64.b64encode(b"p3").decode(),
    ]
    assert all(b["Filters"] == {"SnapshotIds": ["snap-12345678"]} for b in bodies)


def test_it_fetches_volume_pages_lazily_when_iterating(api, client):
    serve_pages(api, "ReadVolumes", "Volumes", [[api_volume("vol-1")], [api_volume("vol-2")]])

    volumes = client.iter_volumes(volume_ids=["vol-1", "vol-2"])

    assert next(volumes).volume_id == "vol-1" and len(api.calls) == 1
    assert [v.volume_id for v in volumes] == ["vol-2"] and len(api.calls) == 2


@pytest.mark.parametrize(
    ("state", "in_progress", "available", "failed"),
    [
        ("creating", True, False, False),
        ("available", False, True, False),
        ("in-use", False, True, False),
        ("error", False, False, True),
        ("deleting", False, False, False),
        ("some-new-state", False, False, False),
    ],
)
def test_it_classifies_volume_states(state, in_progress, available, failed):
    volume = Volume.from_api(api_volume(State=state))

    assert (volume.is_in_progress, volume.is_available, volume.is_failed) == (
        in_progress,
        available,
        failed,
    )


def test_it_reads_a_sparse_or_odd_volume_with_defaults():
    volume = Volume.from_api(
        {"VolumeId": "vol-1", "Size": "big", "Iops": True, "CreationDate": "?", "Tags": "x"}
    )

    assert volume == Volume(
        volume_id="vol-1",
        state="",
        subregion_name="",
        size_gib=None,
        volume_type="",
        iops=None,
        snapshot_id="",
        client_token="",
        creation_date=None,
        tags={},
    )


# --- Images --------------------------------------------------------------------------------------


def test_it_creates_an_image_from_a_snapshot_with_a_request_valid_against_the_spec(api, client):
    answer_with(api, "CreateImage", {"Image": api_image(), **context()})

    result = client.create_image(
        image_name="portal-image-7",
        snapshot_id="snap-12345678",
        root_device_name="/dev/xvda",
        volume_size_gib=30,
        volume_type="io1",
        iops=3000,
        delete_on_vm_deletion=False,
        description="Made by the portal",
        architecture="x86_64",
        boot_modes=["uefi", "legacy"],
    )

    body = sent_body(api.calls[0])
    validate_request("CreateImage", body)
    assert body == {
        "ImageName": "portal-image-7",
        "RootDeviceName": "/dev/xvda",
        "BlockDeviceMappings": [
            {
                "DeviceName": "/dev/xvda",
                "Bsu": {
                    "SnapshotId": "snap-12345678",
                    "DeleteOnVmDeletion": False,
                    "VolumeSize": 30,
                    "VolumeType": "io1",
                    "Iops": 3000,
                },
            }
        ],
        "Description": "Made by the portal",
        "Architecture": "x86_64",
        "BootModes": ["uefi", "legacy"],
    }
    assert result == CreateImageResult(
        image=Image(
            image_id="ami-12345678",
            image_name="portal-image-7",
            state="pending",
            state_message="",
            description="Made by the portal",
            snapshot_ids=("snap-12345678",),
            creation_date=CREATED_AT,
            account_id="123456789012",
        ),
        request_id=REQUEST_ID,
    )
    assert result.image.is_in_progress


def test_it_leaves_optional_image_fields_out_of_the_request(api, client):
    answer_with(api, "CreateImage", {"Image": api_image(), **context()})

    client.create_image(image_name="portal-image-7", snapshot_id="snap-1")

    body = sent_body(api.calls[0])
    validate_request("CreateImage", body)
    assert body == {
        "ImageName": "portal-image-7",
        "RootDeviceName": "/dev/sda1",
        "BlockDeviceMappings": [
            {"DeviceName": "/dev/sda1", "Bsu": {"SnapshotId": "snap-1", "DeleteOnVmDeletion": True}}
        ],
    }


def test_it_raises_a_transient_error_when_a_create_image_answer_lacks_the_image(api, client):
    answer_with(api, "CreateImage", context("req-empty"))

    with pytest.raises(OscApiError) as caught:
        client.create_image(image_name="portal-image-7", snapshot_id="snap-1")

    assert_invalid_response(caught, "CreateImage")


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        ({"image_name": ""}, ValueError, "image_name"),
        ({"snapshot_id": ""}, ValueError, "snapshot_id"),
        ({"root_device_name": ""}, ValueError, "root_device_name"),
        ({"volume_type": "st1"}, ValueError, "volume_type"),
        ({"iops": 100}, ValueError, "iops"),
        ({"volume_type": "gp2", "iops": 100}, ValueError, "iops"),
        ({"volume_size_gib": -1}, ValueError, "size"),
        ({"boot_modes": ["bios"]}, ValueError, "boot_modes"),
        ({"boot_modes": "uefi"}, TypeError, "boot_modes"),
    ],
)
def test_it_refuses_an_image_the_caller_got_wrong_without_calling(
    api, client, arguments, error, message
):
    with pytest.raises(error, match=message):
        client.create_image(**{"image_name": "image-7", "snapshot_id": "snap-1", **arguments})

    assert len(api.calls) == 0


def test_it_reads_a_page_of_images_with_every_filter_valid_against_the_spec(api, client):
    failed = api_image(
        State="failed", StateComment={"StateCode": "Server.Error", "StateMessage": "Bad disk"}
    )
    answer_with(api, "ReadImages", {"Images": [failed], "NextPageToken": PAGE_2, **context()})

    page = client.read_images_page(
        image_ids=["ami-12345678"],
        image_names=["portal-image-7"],
        snapshot_ids=["snap-12345678"],
        account_ids=["123456789012"],
        results_per_page=5,
    )

    body = sent_body(api.calls[0])
    validate_request("ReadImages", body)
    assert body == {
        "Filters": {
            "ImageIds": ["ami-12345678"],
            "ImageNames": ["portal-image-7"],
            "BlockDeviceMappingSnapshotIds": ["snap-12345678"],
            "AccountIds": ["123456789012"],
        },
        "ResultsPerPage": 5,
    }
    (image,) = page.items
    assert image.is_failed and image.state_message == "Bad disk"
    assert image.snapshot_ids == ("snap-12345678",)
    assert page.next_page_token == PAGE_2 and page.request_id == REQUEST_ID


def test_it_follows_next_page_tokens_when_reading_images(api, client):
    pages = [[api_image("ami-1")], [api_image("ami-2"), api_image("ami-3")]]
    serve_pages(api, "ReadImages", "Images", pages)

    images = client.read_images(image_names=["portal-image-7"])

    assert [i.image_id for i in images] == ["ami-1", "ami-2", "ami-3"]
    assert [sent_body(call).get("NextPageToken") for call in api.calls] == [
        None,
        base64.b64encode(b"p2").decode(),
    ]


@pytest.mark.parametrize(
    ("state", "in_progress", "available", "failed"),
    [
        ("pending", True, False, False),
        ("available", False, True, False),
        ("failed", False, False, True),
        ("deleted", False, False, False),
    ],
)
def test_it_classifies_image_states(state, in_progress, available, failed):
    image = Image.from_api(api_image(State=state))

    assert (image.is_in_progress, image.is_available, image.is_failed) == (
        in_progress,
        available,
        failed,
    )


def test_it_reads_a_sparse_or_odd_image_with_defaults():
    image = Image.from_api(
        {
            "ImageId": "ami-1",
            "StateComment": "broken",
            "BlockDeviceMappings": [None, {"Bsu": "x"}, {"Bsu": {"SnapshotId": 7}}, {}],
        }
    )

    assert image == Image(
        image_id="ami-1",
        image_name="",
        state="",
        state_message="",
        description="",
        snapshot_ids=(),
        creation_date=None,
    )


# --- Empty filters -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "arguments"),
    [
        ("read_volumes_page", {"volume_ids": []}),
        ("read_volumes_page", {"volume_ids": ["vol-1"], "snapshot_ids": []}),
        ("read_volumes_page", {"client_tokens": ()}),
        ("read_volumes", {"snapshot_ids": []}),
        ("read_images_page", {"image_ids": []}),
        ("read_images_page", {"image_names": ["portal-image-7"], "snapshot_ids": []}),
        ("read_images_page", {"account_ids": []}),
        ("read_images", {"image_names": []}),
    ],
)
def test_it_answers_an_empty_filter_without_listing_everything(api, client, method, arguments):
    result = getattr(client, method)(**arguments)

    items = result if isinstance(result, list) else result.items
    assert items == []
    assert len(api.calls) == 0


@pytest.mark.parametrize(
    ("method", "argument"),
    [
        ("read_volumes_page", "volume_ids"),
        ("read_volumes_page", "client_tokens"),
        ("read_images_page", "image_names"),
        ("read_images_page", "snapshot_ids"),
    ],
)
def test_it_refuses_a_bare_string_where_a_list_is_expected(api, client, method, argument):
    with pytest.raises(TypeError, match=argument):
        getattr(client, method)(**{argument: "vol-1"})


@pytest.mark.parametrize(
    ("listing", "filters"),
    [
        (SNAPSHOTS, SnapshotFilters),
        (SNAPSHOT_EXPORT_TASKS, SnapshotExportTaskFilters),
        (VOLUMES, VolumeFilters),
        (IMAGES, ImageFilters),
    ],
)
def test_it_describes_each_listing_with_the_filters_its_methods_take(listing, filters):
    # The TypedDict types the page methods' keywords; the description sends them.
    assert listing.arguments == filters.__optional_keys__
    assert not filters.__required_keys__


@pytest.mark.parametrize(
    "method", ["read_volumes_page", "iter_volumes", "read_images", "read_snapshots_page"]
)
def test_it_refuses_a_filter_the_listing_does_not_have_without_calling(api, client, method):
    # What a signature would refuse; the iterating methods refuse it before the first page.
    with pytest.raises(TypeError, match="volume_id"):
        getattr(client, method)(volume_id=["vol-1"])


@pytest.mark.parametrize(
    "method", ["read_volumes_page", "read_images_page", "read_snapshot_export_tasks_page"]
)
@pytest.mark.parametrize("per_page", [0, 1001])
def test_it_refuses_a_page_size_outside_the_api_range(api, client, method, per_page):
    with pytest.raises(ValueError, match="results_per_page"):
        getattr(client, method)(results_per_page=per_page)


# --- Snapshot permissions ------------------------------------------------------------------------


def test_it_shares_a_snapshot_with_accounts_and_everyone(api, client):
    shared = api_snapshot(
        PermissionsToCreateVolume={"GlobalPermission": True, "AccountIds": ["111122223333"]}
    )
    answer_with(api, "UpdateSnapshot", {"Snapshot": shared, **context()})

    result = client.update_snapshot_permissions(
        snapshot_id="snap-12345678", add_account_ids=["111122223333"], make_public=True
    )

    body = sent_body(api.calls[0])
    validate_request("UpdateSnapshot", body)
    assert body == {
        "SnapshotId": "snap-12345678",
        "PermissionsToCreateVolume": {
            "Additions": {"AccountIds": ["111122223333"], "GlobalPermission": True}
        },
    }
    assert result.request_id == REQUEST_ID
    assert result.snapshot.snapshot_id == "snap-12345678"
    assert result.snapshot.permissions == SnapshotPermissions(
        account_ids=("111122223333",), public=True
    )


@pytest.mark.parametrize(
    ("arguments", "permissions"),
    [
        (
            {"remove_account_ids": ["111122223333", "444455556666"]},
            {"Removals": {"AccountIds": ["111122223333", "444455556666"]}},
        ),
        ({"make_public": False}, {"Removals": {"GlobalPermission": True}}),
        ({"make_public": True}, {"Additions": {"GlobalPermission": True}}),
        (
            {"remove_account_ids": ["111122223333"], "make_public": False},
            {"Removals": {"AccountIds": ["111122223333"], "GlobalPermission": True}},
        ),
    ],
)
def test_it_sends_each_permission_change_valid_against_the_spec(
    api, client, arguments, permissions
):
    answer_with(api, "UpdateSnapshot", {"Snapshot": api_snapshot(), **context()})

    result = client.update_snapshot_permissions(snapshot_id="snap-1", **arguments)

    body = sent_body(api.calls[0])
    validate_request("UpdateSnapshot", body)
    assert body == {"SnapshotId": "snap-1", "PermissionsToCreateVolume": permissions}
    assert result.snapshot.permissions == SnapshotPermissions()


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        ({}, ValueError, "nothing to change"),
        ({"add_account_ids": [], "remove_account_ids": ()}, ValueError, "nothing to change"),
        ({"snapshot_id": ""}, ValueError, "snapshot_id"),
        ({"add_account_ids": [""]}, ValueError, "account ids"),
        ({"add_account_ids": ["1"], "remove_account_ids": ["2"]}, ValueError, "not both"),
        ({"remove_account_ids": ["2"], "make_public": True}, ValueError, "not both"),
        ({"add_account_ids": "111122223333"}, TypeError, "add_account_ids"),
    ],
)
def test_it_refuses_a_permission_change_the_caller_got_wrong(
    api, client, arguments, error, message
):
    with pytest.raises(error, match=message):
        client.update_snapshot_permissions(**{"snapshot_id": "snap-1", **arguments})

    assert len(api.calls) == 0


def test_it_raises_a_transient_error_when_an_update_answer_lacks_the_snapshot(api, client):
    answer_with(api, "UpdateSnapshot", context("req-empty"))

    with pytest.raises(OscApiError) as caught:
        client.update_snapshot_permissions(snapshot_id="snap-1", make_public=False)

    assert_invalid_response(caught, "UpdateSnapshot")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"GlobalPermission": False, "AccountIds": []}, SnapshotPermissions()),
        (
            {"GlobalPermission": True, "AccountIds": ["111122223333", "444455556666"]},
            SnapshotPermissions(account_ids=("111122223333", "444455556666"), public=True),
        ),
        ({"AccountIds": ["111122223333", 7, None, ""]}, SnapshotPermissions(("111122223333",))),
        ({"GlobalPermission": "true", "AccountIds": "111122223333"}, SnapshotPermissions()),
        ("public", SnapshotPermissions()),
        (None, SnapshotPermissions()),
    ],
)
def test_it_parses_who_may_use_a_snapshot(value, expected):
    data = api_snapshot(PermissionsToCreateVolume=value)
    if value is None:
        del data["PermissionsToCreateVolume"]

    assert Snapshot.from_api(data).permissions == expected


def test_it_lists_snapshots_with_their_permissions(api, client):
    shared = api_snapshot(
        State="completed", PermissionsToCreateVolume={"AccountIds": ["111122223333"]}
    )
    answer_with(api, "ReadSnapshots", {"Snapshots": [shared], **context()})

    (snapshot,) = client.read_snapshots(snapshot_ids=["snap-12345678"])

    assert snapshot.permissions == SnapshotPermissions(account_ids=("111122223333",))


# --- Snapshot copies -----------------------------------------------------------------------------


def test_it_copies_a_snapshot_with_a_request_valid_against_the_spec(api, client):
    answer_with(api, "CreateSnapshot", {"Snapshot": api_snapshot("snap-copy0001"), **context()})

    result = client.copy_snapshot(
        source_snapshot_id="snap-12345678",
        source_region_name="eu-west-2",
        description="A copy",
        client_token="derived-8",
    )

    body = sent_body(api.calls[0])
    validate_request("CreateSnapshot", body)
    assert body == {
        "SourceSnapshotId": "snap-12345678",
        "SourceRegionName": "eu-west-2",
        "Description": "A copy",
        "ClientToken": "derived-8",
    }
    assert result.request_id == REQUEST_ID
    assert result.snapshot is not None
    assert (result.snapshot.snapshot_id, result.snapshot.client_token) == (
        "snap-copy0001",
        "derived-8",
    )
    assert result.snapshot.is_in_progress


def test_it_leaves_optional_copy_fields_out_of_the_request(api, client):
    answer_with(api, "CreateSnapshot", {"Snapshot": api_snapshot(), **context()})

    client.copy_snapshot(source_snapshot_id="snap-1", source_region_name="eu-west-2")

    body = sent_body(api.calls[0])
    validate_request("CreateSnapshot", body)
    assert body == {"SourceSnapshotId": "snap-1", "SourceRegionName": "eu-west-2"}


def test_it_raises_a_transient_error_when_a_copy_answer_lacks_the_snapshot(api, client):
    answer_with(api, "CreateSnapshot", context("req-empty"))

    with pytest.raises(OscApiError) as caught:
        client.copy_snapshot(source_snapshot_id="snap-1", source_region_name="eu-west-2")

    assert_invalid_response(caught, "CreateSnapshot")
    assert len(api.calls) == 1


@pytest.mark.parametrize(
    "arguments",
    [{"source_snapshot_id": ""}, {"source_region_name": ""}, {"client_token": ""}],
)
def test_it_refuses_a_copy_the_caller_got_wrong_without_calling(api, client, arguments):
    with pytest.raises(ValueError):
        client.copy_snapshot(
            **{"source_snapshot_id": "snap-1", "source_region_name": "eu-west-2", **arguments}
        )

    assert len(api.calls) == 0


# --- Errors --------------------------------------------------------------------------------------


def test_it_raises_the_api_error_of_a_refused_create_without_sending_it_again(api, client):
    answer = {
        "Errors": [{"Code": "4045", "Type": "InvalidParameterValue", "Details": "No such snap"}],
        **context("req-refused"),
    }
    validate_response("CreateVolume", answer, 400)
    api.post(f"{ENDPOINT}/CreateVolume", status=400, json=answer)

    with pytest.raises(OscApiError) as caught:
        client.create_volume(subregion_name="eu-west-2a", snapshot_id="snap-gone")

    assert (caught.value.code, caught.value.type) == ("4045", "InvalidParameterValue")
    assert not caught.value.transient and caught.value.request_id == "req-refused"
    assert len(api.calls) == 1
