"""The sandbox's volumes, OMIs, snapshot permissions and copies, over real HTTP.

Every request a test means to be valid is checked against outscale.yaml before it is sent, and
every answer after; states that change over time are polled for, never timed.
"""

from __future__ import annotations

import pytest
import requests
from jsonschema import ValidationError

from sandbox.signing import Account
from sandbox.store import DEMO_VIRTUAL_SIZE
from tests.support.openapi_spec import validate_request, validate_response
from tests.support.workers import wait_until

# The `sandbox` and `clean_sandbox` fixtures come from tests/sandbox_fixtures.py via conftest.
pytestmark = pytest.mark.integration

OTHER_TEAM = Account(
    "SANDBOXOTHERTEAM0000", "other-team-secret-key-00000000000000000", "210987654321"
)
# Long enough that an answer built right after the request still shows the first state; the end
# state is then polled for.
OBSERVABLE_SECONDS = 1.0
WAIT_SECONDS = 15.0


def call(sb, action, body=None, *, valid=True, **kwargs):
    """Call the API, checking the request and the answer against the spec, whatever the
    answer's status. `valid=False` marks a request the spec itself refuses (and checks it does),
    to see the sandbox refuse it too."""
    body = {} if body is None else body
    if valid:
        validate_request(action, body)
    else:
        with pytest.raises(ValidationError):
            validate_request(action, body)
    response = sb.call(action, body, **kwargs)
    validate_response(action, response.json(), response.status_code)
    return response


def ok(sb, action, body=None, **kwargs):
    response = call(sb, action, body, **kwargs)
    assert response.status_code == 200, response.text
    return response.json()


def error_of(response):
    (error,) = response.json()["Errors"]
    return response.status_code, error["Code"], error["Type"]


def details_of(response):
    return response.json()["Errors"][0]["Details"]


def other_team(sb):
    if OTHER_TEAM not in sb.accounts:
        sb.add_account(OTHER_TEAM)
    return OTHER_TEAM


def completed_snapshot(sb, account=None, size=DEMO_VIRTUAL_SIZE):
    """A snapshot imported from the demo image (10 GiB), once `completed`."""
    body = {"FileLocation": sb.presign(), "SnapshotSize": size}
    snapshot_id = ok(sb, "CreateSnapshot", body, account=account)["Snapshot"]["SnapshotId"]
    read = {"Filters": {"SnapshotIds": [snapshot_id], "States": ["completed"]}}
    wait_until(
        lambda: ok(sb, "ReadSnapshots", read, account=account)["Snapshots"], seconds=WAIT_SECONDS
    )
    return snapshot_id


def pending_copy(sb, source_id):
    """A copy still `pending` (the lifecycle delay is made long for it, then restored)."""
    sb.set_lifecycle_seconds(60)
    copy = ok(sb, "CreateSnapshot", {"SourceSnapshotId": source_id})["Snapshot"]
    sb.set_lifecycle_seconds(None)
    assert copy["State"] == "pending"
    return copy["SnapshotId"]


def read_one(sb, action, key, filters, account=None):
    (found,) = ok(sb, action, {"Filters": filters}, account=account)[key]
    return found


def wait_for_state(sb, action, key, id_filter, resource_id, states):
    def settled():
        found = read_one(sb, action, key, {id_filter: [resource_id]})
        return found if found["State"] in states else None

    return wait_until(settled, seconds=WAIT_SECONDS)


def fill(value, snapshot_id):
    """`value` with each "{snap}" string replaced by the snapshot's ID, however deep."""
    if isinstance(value, dict):
        return {key: fill(item, snapshot_id) for key, item in value.items()}
    if isinstance(value, list):
        return [fill(item, snapshot_id) for item in value]
    return snapshot_id if value == "{snap}" else value


def mapping(snapshot_id, device="/dev/sda1", **bsu):
    return {"DeviceName": device, "Bsu": {"SnapshotId": snapshot_id, **bsu}}


def image_body(snapshot_id, name="omi-1", **extra):
    return {
        "ImageName": name,
        "RootDeviceName": "/dev/sda1",
        "BlockDeviceMappings": [mapping(snapshot_id)],
        **extra,
    }


def own(sb, kind):
    return sb.state()[kind][sb.account.account_id]


# --- ReadSubregions ------------------------------------------------------------------------------


def test_it_lists_the_three_subregions_of_the_region(clean_sandbox):
    region = clean_sandbox.region

    everything = ok(clean_sandbox, "ReadSubregions", {})["Subregions"]
    picked = ok(
        clean_sandbox,
        "ReadSubregions",
        {"Filters": {"SubregionNames": [f"{region}b"], "States": ["available"]}},
    )["Subregions"]
    elsewhere = ok(clean_sandbox, "ReadSubregions", {"Filters": {"RegionNames": ["us-west-1"]}})

    assert [s["SubregionName"] for s in everything] == [f"{region}{x}" for x in "abc"]
    assert all(s["State"] == "available" and s["RegionName"] == region for s in everything)
    assert len({s["LocationCode"] for s in everything}) == 3
    assert [s["SubregionName"] for s in picked] == [f"{region}b"]
    assert elsewhere["Subregions"] == []


def test_it_pages_subregions_and_refuses_unknown_filters(clean_sandbox):
    first = ok(clean_sandbox, "ReadSubregions", {"ResultsPerPage": 2})
    second = ok(
        clean_sandbox,
        "ReadSubregions",
        {"ResultsPerPage": 2, "NextPageToken": first["NextPageToken"]},
    )
    unknown = call(clean_sandbox, "ReadSubregions", {"Filters": {"Zones": ["a"]}}, valid=False)

    assert len(first["Subregions"]) == 2
    assert len(second["Subregions"]) == 1
    assert "NextPageToken" not in second
    assert error_of(unknown) == (400, "4045", "InvalidParameterValue")


# --- CreateVolume, ReadVolumes, DeleteVolume -----------------------------------------------------


def test_it_creates_a_volume_creating_then_available(clean_sandbox):
    snapshot_id = completed_snapshot(clean_sandbox)
    clean_sandbox.set_lifecycle_seconds(OBSERVABLE_SECONDS)
    body = {"SubregionName": f"{clean_sandbox.region}a", "SnapshotId": snapshot_id}

    created = ok(clean_sandbox, "CreateVolume", body)["Volume"]
    done = wait_for_state(
        clean_sandbox, "ReadVolumes", "Volumes", "VolumeIds", created["VolumeId"], ["available"]
    )

    assert created["State"] == "creating"
    assert created["VolumeId"].startswith("vol-")
    assert (created["Size"], created["VolumeType"], created["SnapshotId"]) == (
        10,
        "standard",
        snapshot_id,
    )
    assert "Iops" not in created
    assert done["VolumeId"] == created["VolumeId"]
    assert [v["VolumeId"] for v in own(clean_sandbox, "volumes")] == [created["VolumeId"]]


def test_it_creates_volumes_at_once_with_no_delay_and_checks_io1_iops(clean_sandbox):
    snapshot_id = completed_snapshot(clean_sandbox)
    clean_sandbox.set_lifecycle_seconds(0)
    body = {
        "SubregionName": f"{clean_sandbox.region}c",
        "SnapshotId": snapshot_id,
        "Size": 20,
        "VolumeType": "io1",
        "Iops": 6000,
    }

    created = ok(clean_sandbox, "CreateVolume", body)["Volume"]
    blank = ok(
        clean_sandbox,
        "CreateVolume",
        {"SubregionName": f"{clean_sandbox.region}b", "Size": 4, "VolumeType": "gp2"},
    )["Volume"]

    assert created["State"] == "available"
    assert (created["Size"], created["VolumeType"], created["Iops"]) == (20, "io1", 6000)
    assert blank["State"] == "available"
    assert "SnapshotId" not in blank
    assert blank["Iops"] == 100  # gp2's baseline: 3 per GiB, at least 100


@pytest.mark.parametrize(
    ("change", "expected", "valid"),
    [
        ({"SubregionName": "eu-west-2z"}, (400, "4047", "InvalidParameterValue"), True),
        ({"SnapshotId": "snap-00000000"}, (400, "5054", "InvalidResource"), True),
        ({"SnapshotId": "vol-00000000"}, (400, "4104", "InvalidParameterValue"), True),
        ({"Size": 9}, (400, "4078", "InvalidParameterValue"), True),
        ({"Size": 14902}, (400, "4078", "InvalidParameterValue"), True),
        ({"SnapshotId": None, "Size": 0}, (400, "4078", "InvalidParameterValue"), True),
        ({"SnapshotId": None}, (400, "7000", "MissingParameter"), True),
        ({"VolumeType": "gp3"}, (400, "4047", "InvalidParameterValue"), True),
        ({"VolumeType": "gp2", "Iops": 300}, (400, "4029", "InvalidParameterValue"), True),
        ({"Iops": 300}, (400, "4029", "InvalidParameterValue"), True),
        ({"VolumeType": "io1"}, (400, "7000", "MissingParameter"), True),
        ({"VolumeType": "io1", "Iops": 99}, (400, "4029", "InvalidParameterValue"), True),
        (
            {"VolumeType": "io1", "Iops": 13001, "Size": 100},
            (400, "4029", "InvalidParameterValue"),
            True,
        ),
        # 10 GiB allow 3000 IOPS at most.
        ({"VolumeType": "io1", "Iops": 3001}, (400, "4029", "InvalidParameterValue"), True),
        ({"SubregionName": None}, (400, "7000", "MissingParameter"), False),
        ({"Size": "10"}, (400, "4108", "InvalidParameterValue"), False),
        ({"Encrypted": True}, (400, "4045", "InvalidParameterValue"), False),
    ],
)
def test_it_refuses_bad_volumes(clean_sandbox, change, expected, valid):
    body = {
        "SubregionName": f"{clean_sandbox.region}a",
        "SnapshotId": completed_snapshot(clean_sandbox),
    }
    body.update(change)
    body = {name: value for name, value in body.items() if value is not None}

    response = call(clean_sandbox, "CreateVolume", body, valid=valid)

    assert error_of(response) == expected
    assert own(clean_sandbox, "volumes") == []


def test_it_refuses_a_volume_from_a_snapshot_not_completed(clean_sandbox):
    copy_id = pending_copy(clean_sandbox, completed_snapshot(clean_sandbox))
    body = {"SubregionName": f"{clean_sandbox.region}a", "SnapshotId": copy_id}

    response = call(clean_sandbox, "CreateVolume", body)

    assert error_of(response) == (409, "6003", "InvalidState")
    assert copy_id in details_of(response)


def test_it_makes_one_volume_per_client_token(clean_sandbox):
    snapshot_id = completed_snapshot(clean_sandbox)
    body = {
        "SubregionName": f"{clean_sandbox.region}a",
        "SnapshotId": snapshot_id,
        "ClientToken": "vol-job-1",
    }

    first = ok(clean_sandbox, "CreateVolume", body)["Volume"]
    again = ok(clean_sandbox, "CreateVolume", body)["Volume"]
    other = ok(clean_sandbox, "CreateVolume", {**body, "ClientToken": "vol-job-2"})["Volume"]
    ok(clean_sandbox, "DeleteSnapshot", {"SnapshotId": snapshot_id})
    # The token still finds its volume once the snapshot is gone, as a late retry would.
    late = ok(clean_sandbox, "CreateVolume", body)["Volume"]

    assert first["VolumeId"] == again["VolumeId"] == late["VolumeId"] != other["VolumeId"]
    assert first["ClientToken"] == "vol-job-1"
    assert len(own(clean_sandbox, "volumes")) == 2
    counts = clean_sandbox.state()["create_volume_calls_by_client_token"]
    assert counts == {"vol-job-1": 3, "vol-job-2": 1}


def test_it_filters_and_pages_volumes(clean_sandbox):
    snapshot_id = completed_snapshot(clean_sandbox)
    clean_sandbox.set_lifecycle_seconds(0)
    region = clean_sandbox.region
    made = [
        ok(
            clean_sandbox,
            "CreateVolume",
            {"SubregionName": f"{region}{zone}", "SnapshotId": snapshot_id, **extra},
        )["Volume"]["VolumeId"]
        for zone, extra in (
            ("a", {"ClientToken": "t-a"}),
            ("b", {"Size": 12, "VolumeType": "gp2"}),
            ("a", {}),
        )
    ]
    blank = ok(clean_sandbox, "CreateVolume", {"SubregionName": f"{region}c", "Size": 1})

    def ids(filters):
        found = ok(clean_sandbox, "ReadVolumes", {"Filters": filters})["Volumes"]
        return [volume["VolumeId"] for volume in found]

    assert ids({}) == [*made, blank["Volume"]["VolumeId"]]
    assert ids({"VolumeIds": [made[1]]}) == [made[1]]
    assert ids({"SnapshotIds": [snapshot_id]}) == made
    assert ids({"ClientTokens": ["t-a"]}) == [made[0]]
    assert ids({"SubregionNames": [f"{region}a"]}) == [made[0], made[2]]
    assert ids({"VolumeTypes": ["gp2"], "VolumeSizes": [12]}) == [made[1]]
    assert ids({"VolumeStates": ["available"], "SnapshotIds": [snapshot_id]}) == made
    assert ids({"VolumeStates": ["creating"]}) == []
    assert ids({"LinkVolumeVmIds": ["i-00000000"]}) == []

    first = ok(clean_sandbox, "ReadVolumes", {"ResultsPerPage": 3})
    rest = ok(
        clean_sandbox, "ReadVolumes", {"ResultsPerPage": 3, "NextPageToken": first["NextPageToken"]}
    )
    assert [v["VolumeId"] for v in first["Volumes"] + rest["Volumes"]] == ids({})
    assert "NextPageToken" not in rest
    # A token belongs to the query that made it, and to the action.
    stray = {"ResultsPerPage": 3, "NextPageToken": first["NextPageToken"]}
    assert error_of(call(clean_sandbox, "ReadSnapshots", stray))[1] == "4047"
    unknown = call(clean_sandbox, "ReadVolumes", {"Filters": {"Sizes": [1]}}, valid=False)
    assert error_of(unknown) == (400, "4045", "InvalidParameterValue")


def test_it_deletes_volumes_of_the_account_only(clean_sandbox):
    team = other_team(clean_sandbox)
    volume_id = ok(
        clean_sandbox, "CreateVolume", {"SubregionName": f"{clean_sandbox.region}a", "Size": 1}
    )["Volume"]["VolumeId"]

    theirs = ok(clean_sandbox, "ReadVolumes", {}, account=team)["Volumes"]
    refused = call(clean_sandbox, "DeleteVolume", {"VolumeId": volume_id}, account=team)
    deleted = call(clean_sandbox, "DeleteVolume", {"VolumeId": volume_id})
    again = call(clean_sandbox, "DeleteVolume", {"VolumeId": volume_id})
    prefix = call(clean_sandbox, "DeleteVolume", {"VolumeId": "snap-00000000"})

    assert theirs == []
    assert error_of(refused) == (400, "5064", "InvalidResource")
    assert deleted.status_code == 200
    assert error_of(again) == (400, "5064", "InvalidResource")
    assert error_of(prefix) == (400, "4104", "InvalidParameterValue")
    assert ok(clean_sandbox, "ReadVolumes", {})["Volumes"] == []


def test_it_answers_volume_dry_runs_without_acting(clean_sandbox):
    body = {"SubregionName": f"{clean_sandbox.region}a", "Size": 1, "DryRun": True}

    answer = ok(clean_sandbox, "CreateVolume", body)

    assert "Volume" not in answer
    assert own(clean_sandbox, "volumes") == []


def test_a_dropped_create_volume_answer_still_makes_exactly_one_volume(clean_sandbox):
    snapshot_id = completed_snapshot(clean_sandbox)
    body = {
        "SubregionName": f"{clean_sandbox.region}a",
        "SnapshotId": snapshot_id,
        "ClientToken": "drop-vol",
    }
    validate_request("CreateVolume", body)
    clean_sandbox.inject_fault("CreateVolume", "drop")

    with pytest.raises(requests.ConnectionError):
        clean_sandbox.call("CreateVolume", body)
    made = own(clean_sandbox, "volumes")
    retried = ok(clean_sandbox, "CreateVolume", body)["Volume"]

    assert [v["VolumeId"] for v in made] == [retried["VolumeId"]]
    assert len(own(clean_sandbox, "volumes")) == 1
    assert clean_sandbox.state()["create_volume_calls_by_client_token"] == {"drop-vol": 2}


def test_an_error_fault_on_create_volume_makes_nothing(clean_sandbox):
    clean_sandbox.inject_fault("CreateVolume", "error", status=503)
    body = {"SubregionName": f"{clean_sandbox.region}a", "Size": 1, "ClientToken": "err-vol"}

    refused = call(clean_sandbox, "CreateVolume", body)
    retried = ok(clean_sandbox, "CreateVolume", body)["Volume"]

    assert error_of(refused) == (503, "6", "AccessDenied")
    assert [v["VolumeId"] for v in own(clean_sandbox, "volumes")] == [retried["VolumeId"]]


# --- CreateImage, ReadImages, DeleteImage --------------------------------------------------------


def test_it_registers_an_omi_pending_then_available(clean_sandbox):
    snapshot_id = completed_snapshot(clean_sandbox)
    clean_sandbox.set_lifecycle_seconds(OBSERVABLE_SECONDS)
    body = {
        "ImageName": "debian-12 (build 7)",
        "Description": "from the portal",
        "Architecture": "x86_64",
        "BootModes": ["uefi"],
        "RootDeviceName": "/dev/sda1",
        "BlockDeviceMappings": [
            mapping(snapshot_id, VolumeSize=20, VolumeType="io1", Iops=1000),
            mapping(snapshot_id, "/dev/sdb", DeleteOnVmDeletion=False),
        ],
    }

    created = ok(clean_sandbox, "CreateImage", body)["Image"]
    done = wait_for_state(
        clean_sandbox, "ReadImages", "Images", "ImageIds", created["ImageId"], ["available"]
    )

    assert created["State"] == "pending"
    assert created["ImageId"].startswith("ami-")
    assert (created["ImageName"], created["Description"]) == (body["ImageName"], "from the portal")
    assert (created["Architecture"], created["BootModes"]) == ("x86_64", ["uefi"])
    assert created["RootDeviceName"] == "/dev/sda1"
    assert created["AccountId"] == clean_sandbox.account.account_id
    assert created["BlockDeviceMappings"] == [
        {
            "DeviceName": "/dev/sda1",
            "Bsu": {
                "DeleteOnVmDeletion": True,
                "Iops": 1000,
                "SnapshotId": snapshot_id,
                "VolumeSize": 20,
                "VolumeType": "io1",
            },
        },
        {
            "DeviceName": "/dev/sdb",
            "Bsu": {
                "DeleteOnVmDeletion": False,
                "SnapshotId": snapshot_id,
                "VolumeSize": 10,
                "VolumeType": "standard",
            },
        },
    ]
    assert done["StateComment"] == {}
    assert [i["ImageId"] for i in own(clean_sandbox, "images")] == [created["ImageId"]]
    assert clean_sandbox.state()["create_image_calls_by_name"] == {body["ImageName"]: 1}


def test_it_fails_the_next_omis_when_told_to(clean_sandbox):
    snapshot_id = completed_snapshot(clean_sandbox)
    clean_sandbox.set_lifecycle_seconds(OBSERVABLE_SECONDS)
    clean_sandbox.fail_next_images(1, state_code="Server.InternalError", state_message="boom")

    doomed = ok(clean_sandbox, "CreateImage", image_body(snapshot_id, "doomed"))["Image"]
    fine = ok(clean_sandbox, "CreateImage", image_body(snapshot_id, "fine"))["Image"]
    failed = wait_for_state(
        clean_sandbox,
        "ReadImages",
        "Images",
        "ImageIds",
        doomed["ImageId"],
        ["failed", "available"],
    )
    available = wait_for_state(
        clean_sandbox, "ReadImages", "Images", "ImageIds", fine["ImageId"], ["failed", "available"]
    )

    assert doomed["State"] == fine["State"] == "pending"
    assert failed["State"] == "failed"
    assert failed["StateComment"] == {"StateCode": "Server.InternalError", "StateMessage": "boom"}
    assert available["State"] == "available"
    assert available["StateComment"] == {}


def test_it_registers_omis_at_once_with_no_delay(clean_sandbox):
    snapshot_id = completed_snapshot(clean_sandbox)
    clean_sandbox.set_lifecycle_seconds(0)
    clean_sandbox.fail_next_images(1)

    failed = ok(clean_sandbox, "CreateImage", image_body(snapshot_id, "now-failed"))["Image"]
    available = ok(clean_sandbox, "CreateImage", image_body(snapshot_id, "now-ok"))["Image"]

    assert failed["State"] == "failed"
    assert set(failed["StateComment"]) == {"StateCode", "StateMessage"}
    assert available["State"] == "available"


def test_it_refuses_a_second_omi_of_the_same_name(clean_sandbox):
    snapshot_id = completed_snapshot(clean_sandbox)
    first = ok(clean_sandbox, "CreateImage", image_body(snapshot_id, "twin"))["Image"]

    twin = call(clean_sandbox, "CreateImage", image_body(snapshot_id, "twin"))
    theirs = call(
        clean_sandbox,
        "CreateImage",
        image_body(completed_snapshot(clean_sandbox, account=other_team(clean_sandbox)), "twin"),
        account=OTHER_TEAM,
    )
    ok(clean_sandbox, "DeleteImage", {"ImageId": first["ImageId"]})
    reused = call(clean_sandbox, "CreateImage", image_body(snapshot_id, "twin"))

    assert error_of(twin) == (409, "9015", "ResourceConflict")
    assert first["ImageId"] in details_of(twin)
    assert theirs.status_code == 200  # names are unique per account
    assert reused.status_code == 200
    # Counted over every account, as the other counters are.
    assert clean_sandbox.state()["create_image_calls_by_name"] == {"twin": 4}


@pytest.mark.parametrize(
    ("change", "expected", "valid"),
    [
        ({"ImageName": None}, (400, "7000", "MissingParameter"), True),
        ({"ImageName": "ab"}, (400, "4026", "InvalidParameterValue"), True),
        ({"ImageName": "x" * 129}, (400, "4026", "InvalidParameterValue"), True),
        ({"ImageName": "bad:name"}, (400, "4026", "InvalidParameterValue"), True),
        ({"BlockDeviceMappings": None}, (400, "7000", "MissingParameter"), True),
        ({"BlockDeviceMappings": []}, (400, "7000", "MissingParameter"), True),
        ({"RootDeviceName": None}, (400, "7000", "MissingParameter"), True),
        ({"RootDeviceName": "/dev/sdb"}, (400, "4057", "InvalidParameterValue"), True),
        (
            {"BlockDeviceMappings": [{"DeviceName": "/dev/sdb", "Bsu": {"SnapshotId": "{snap}"}}]},
            (400, "4057", "InvalidParameterValue"),
            True,
        ),
        (
            {"BlockDeviceMappings": [{"DeviceName": "/dev/hda", "Bsu": {"SnapshotId": "{snap}"}}]},
            (400, "4019", "InvalidParameterValue"),
            True,
        ),
        (
            {
                "BlockDeviceMappings": [
                    {"DeviceName": "/dev/sda1", "Bsu": {"SnapshotId": "{snap}"}}
                ]
                * 2
            },
            (400, "4011", "InvalidParameterValue"),
            True,
        ),
        (
            {"BlockDeviceMappings": [{"DeviceName": "/dev/sda1"}]},
            (400, "4011", "InvalidParameterValue"),
            True,
        ),
        (
            {
                "BlockDeviceMappings": [
                    {"DeviceName": "/dev/sda1", "VirtualDeviceName": "ephemeral0"}
                ]
            },
            (400, "4057", "InvalidParameterValue"),
            True,
        ),
        (
            {"BlockDeviceMappings": [{"DeviceName": "/dev/sda1", "Bsu": {"VolumeSize": 10}}]},
            (400, "7000", "MissingParameter"),
            True,
        ),
        (
            {
                "BlockDeviceMappings": [
                    {"DeviceName": "/dev/sda1", "Bsu": {"SnapshotId": "snap-00000000"}}
                ]
            },
            (400, "5054", "InvalidResource"),
            True,
        ),
        (
            {
                "BlockDeviceMappings": [
                    {"DeviceName": "/dev/sda1", "Bsu": {"SnapshotId": "ami-00000000"}}
                ]
            },
            (400, "4104", "InvalidParameterValue"),
            True,
        ),
        (
            {
                "BlockDeviceMappings": [
                    {"DeviceName": "/dev/sda1", "Bsu": {"SnapshotId": "{snap}", "VolumeSize": 5}}
                ]
            },
            (400, "4078", "InvalidParameterValue"),
            True,
        ),
        (
            {
                "BlockDeviceMappings": [
                    {
                        "DeviceName": "/dev/sda1",
                        "Bsu": {"SnapshotId": "{snap}", "VolumeType": "gp3"},
                    }
                ]
            },
            (400, "4047", "InvalidParameterValue"),
            True,
        ),
        (
            {
                "BlockDeviceMappings": [
                    {"DeviceName": "/dev/sda1", "Bsu": {"SnapshotId": "{snap}", "Iops": 500}}
                ]
            },
            (400, "4029", "InvalidParameterValue"),
            True,
        ),
        ({"Architecture": "arm64"}, (400, "4047", "InvalidParameterValue"), True),
        ({"BootModes": ["bios"]}, (400, "4047", "InvalidParameterValue"), False),
        ({"BootModes": ["uefi", "uefi"]}, (400, "4047", "InvalidParameterValue"), True),
        ({"VmId": "i-00000000"}, (400, "5063", "InvalidResource"), True),
        ({"SourceImageId": "ami-00000000"}, (400, "4047", "InvalidParameterValue"), True),
        (
            {
                "BlockDeviceMappings": [
                    {"DeviceName": "/dev/sda1", "Bsu": {"SnapshotId": "{snap}", "Encrypted": True}}
                ]
            },
            (400, "4045", "InvalidParameterValue"),
            False,
        ),
        ({"BlockDeviceMappings": ["/dev/sda1"]}, (400, "4108", "InvalidParameterValue"), False),
    ],
)
def test_it_refuses_bad_omis(clean_sandbox, change, expected, valid):
    snapshot_id = completed_snapshot(clean_sandbox)
    body = {**image_body(snapshot_id, "refused"), **fill(change, snapshot_id)}
    body = {name: value for name, value in body.items() if value is not None}

    response = call(clean_sandbox, "CreateImage", body, valid=valid)

    assert error_of(response) == expected
    assert own(clean_sandbox, "images") == []


def test_it_refuses_omis_from_snapshots_not_completed_or_not_its_own(clean_sandbox):
    team = other_team(clean_sandbox)
    copy_id = pending_copy(clean_sandbox, completed_snapshot(clean_sandbox))
    theirs = completed_snapshot(clean_sandbox, account=team)

    pending = call(clean_sandbox, "CreateImage", image_body(copy_id))
    foreign = call(clean_sandbox, "CreateImage", image_body(theirs))

    assert error_of(pending) == (409, "6003", "InvalidState")
    assert error_of(foreign) == (400, "5054", "InvalidResource")
    assert own(clean_sandbox, "images") == []


def test_it_filters_and_pages_omis(clean_sandbox):
    first_snapshot = completed_snapshot(clean_sandbox)
    second_snapshot = completed_snapshot(clean_sandbox)
    clean_sandbox.set_lifecycle_seconds(0)
    clean_sandbox.fail_next_images(1)
    made = [
        ok(clean_sandbox, "CreateImage", body)["Image"]["ImageId"]
        for body in (
            image_body(first_snapshot, "omi-a"),
            image_body(second_snapshot, "omi-b", Architecture="i386"),
            image_body(first_snapshot, "omi-c", BootModes=["uefi"]),
        )
    ]

    def ids(filters):
        found = ok(clean_sandbox, "ReadImages", {"Filters": filters})["Images"]
        return [image["ImageId"] for image in found]

    assert ids({}) == made
    assert ids({"ImageIds": [made[1]]}) == [made[1]]
    assert ids({"ImageNames": ["omi-c", "omi-a"]}) == [made[0], made[2]]
    assert ids({"States": ["failed"]}) == [made[0]]
    assert ids({"States": ["available"]}) == made[1:]
    assert ids({"BlockDeviceMappingSnapshotIds": [first_snapshot]}) == [made[0], made[2]]
    assert ids({"Architectures": ["i386"]}) == [made[1]]
    assert ids({"BootModes": ["uefi"]}) == [made[2]]
    assert ids({"AccountIds": [clean_sandbox.account.account_id]}) == made
    assert ids({"PermissionsToLaunchGlobalPermission": True}) == []

    page = ok(clean_sandbox, "ReadImages", {"ResultsPerPage": 2})
    rest = ok(
        clean_sandbox, "ReadImages", {"ResultsPerPage": 2, "NextPageToken": page["NextPageToken"]}
    )
    assert [i["ImageId"] for i in page["Images"] + rest["Images"]] == made
    assert "NextPageToken" not in rest


def test_it_deletes_omis_of_the_account_only(clean_sandbox):
    team = other_team(clean_sandbox)
    image_id = ok(clean_sandbox, "CreateImage", image_body(completed_snapshot(clean_sandbox)))[
        "Image"
    ]["ImageId"]

    theirs = ok(clean_sandbox, "ReadImages", {}, account=team)["Images"]
    refused = call(clean_sandbox, "DeleteImage", {"ImageId": image_id}, account=team)
    deleted = call(clean_sandbox, "DeleteImage", {"ImageId": image_id})
    again = call(clean_sandbox, "DeleteImage", {"ImageId": image_id})
    prefix = call(clean_sandbox, "DeleteImage", {"ImageId": "vol-00000000"})

    assert theirs == []
    assert error_of(refused) == (400, "5023", "InvalidResource")
    assert deleted.status_code == 200
    assert error_of(again) == (400, "5023", "InvalidResource")
    assert error_of(prefix) == (400, "4104", "InvalidParameterValue")
    assert ok(clean_sandbox, "ReadImages", {})["Images"] == []


def test_a_dropped_create_image_answer_leaves_the_omi_to_be_found_by_name(clean_sandbox):
    snapshot_id = completed_snapshot(clean_sandbox)
    body = image_body(snapshot_id, "dropped")
    validate_request("CreateImage", body)
    clean_sandbox.inject_fault("CreateImage", "drop")

    with pytest.raises(requests.ConnectionError):
        clean_sandbox.call("CreateImage", body)
    retried = call(clean_sandbox, "CreateImage", body)
    found = ok(clean_sandbox, "ReadImages", {"Filters": {"ImageNames": ["dropped"]}})["Images"]

    assert error_of(retried) == (409, "9015", "ResourceConflict")
    assert [image["ImageId"] for image in found] == [
        i["ImageId"] for i in own(clean_sandbox, "images")
    ]
    assert found[0]["ImageId"] in details_of(retried)


def test_it_injects_faults_into_the_new_reads(clean_sandbox):
    clean_sandbox.inject_fault("ReadImages", "error", status=429)
    clean_sandbox.inject_fault("ReadVolumes", "error", status=500)

    assert error_of(call(clean_sandbox, "ReadImages", {})) == (429, "24", "AccessDenied")
    assert error_of(call(clean_sandbox, "ReadVolumes", {})) == (500, "2000", "InternalError")
    assert ok(clean_sandbox, "ReadImages", {})["Images"] == []


# --- DeleteSnapshot and the OMIs that use a snapshot ---------------------------------------------


def test_it_refuses_to_delete_a_snapshot_an_omi_uses_until_the_omi_is_gone(clean_sandbox):
    snapshot_id = completed_snapshot(clean_sandbox)
    spare = completed_snapshot(clean_sandbox)
    body = image_body(spare, "two-disks")
    body["BlockDeviceMappings"].append(mapping(snapshot_id, "/dev/xvdb"))
    image_id = ok(clean_sandbox, "CreateImage", body)["Image"]["ImageId"]
    volume = {"SubregionName": f"{clean_sandbox.region}a", "SnapshotId": snapshot_id}
    ok(clean_sandbox, "CreateVolume", volume)

    refused = call(clean_sandbox, "DeleteSnapshot", {"SnapshotId": snapshot_id})
    still_there = ok(clean_sandbox, "ReadSnapshots", {"Filters": {"SnapshotIds": [snapshot_id]}})
    ok(clean_sandbox, "DeleteImage", {"ImageId": image_id})
    allowed = call(clean_sandbox, "DeleteSnapshot", {"SnapshotId": snapshot_id})

    assert error_of(refused) == (409, "9002", "ResourceConflict")
    assert image_id in details_of(refused) and snapshot_id in details_of(refused)
    assert len(still_there["Snapshots"]) == 1
    # A volume made from a snapshot does not hold it.
    assert allowed.status_code == 200
    gone = ok(clean_sandbox, "ReadSnapshots", {"Filters": {"SnapshotIds": [snapshot_id]}})
    assert gone["Snapshots"] == []


# --- UpdateSnapshot's permissions ----------------------------------------------------------------


def permissions_of(sb, snapshot_id, account=None):
    return read_one(sb, "ReadSnapshots", "Snapshots", {"SnapshotIds": [snapshot_id]}, account)[
        "PermissionsToCreateVolume"
    ]


def shared_ids(sb, filters):
    found = ok(sb, "ReadSnapshots", {"Filters": filters})["Snapshots"]
    return [snapshot["SnapshotId"] for snapshot in found]


def test_it_shares_and_unshares_a_snapshot(clean_sandbox):
    team = other_team(clean_sandbox)
    snapshot_id = completed_snapshot(clean_sandbox)
    kept = completed_snapshot(clean_sandbox)
    grant = {
        "SnapshotId": snapshot_id,
        "PermissionsToCreateVolume": {
            "Additions": {"AccountIds": [team.account_id, "111122223333"]}
        },
    }

    their_volume = {"SubregionName": f"{clean_sandbox.region}a", "SnapshotId": snapshot_id}
    before = call(clean_sandbox, "CreateVolume", their_volume, account=team)

    granted = ok(clean_sandbox, "UpdateSnapshot", grant)["Snapshot"]
    seen_by_them = ok(clean_sandbox, "ReadSnapshots", {}, account=team)["Snapshots"]
    volume = ok(clean_sandbox, "CreateVolume", their_volume, account=team)["Volume"]
    by_account = shared_ids(
        clean_sandbox, {"PermissionsToCreateVolumeAccountIds": [team.account_id]}
    )
    revoke = {
        "SnapshotId": snapshot_id,
        "PermissionsToCreateVolume": {"Removals": {"AccountIds": [team.account_id]}},
    }
    revoked = ok(clean_sandbox, "UpdateSnapshot", revoke)["Snapshot"]

    assert error_of(before) == (400, "5054", "InvalidResource")
    assert granted["PermissionsToCreateVolume"] == {
        "AccountIds": [team.account_id, "111122223333"],
        "GlobalPermission": False,
    }
    assert [s["SnapshotId"] for s in seen_by_them] == [snapshot_id]
    assert volume["SnapshotId"] == snapshot_id
    assert by_account == [snapshot_id]
    assert revoked["PermissionsToCreateVolume"]["AccountIds"] == ["111122223333"]
    assert permissions_of(clean_sandbox, snapshot_id)["AccountIds"] == ["111122223333"]
    assert (
        shared_ids(clean_sandbox, {"PermissionsToCreateVolumeAccountIds": [team.account_id]}) == []
    )
    assert ok(clean_sandbox, "ReadSnapshots", {}, account=team)["Snapshots"] == []
    assert permissions_of(clean_sandbox, kept) == {"AccountIds": [], "GlobalPermission": False}


def test_it_makes_a_snapshot_public_and_private_again(clean_sandbox):
    team = other_team(clean_sandbox)
    public_id = completed_snapshot(clean_sandbox)
    private_id = completed_snapshot(clean_sandbox)
    change = {
        "SnapshotId": public_id,
        "PermissionsToCreateVolume": {"Additions": {"GlobalPermission": True}},
    }

    ok(clean_sandbox, "UpdateSnapshot", change)
    public = shared_ids(clean_sandbox, {"PermissionsToCreateVolumeGlobalPermission": True})
    private = shared_ids(clean_sandbox, {"PermissionsToCreateVolumeGlobalPermission": False})
    seen_by_them = ok(clean_sandbox, "ReadSnapshots", {}, account=team)["Snapshots"]
    undo = {
        "SnapshotId": public_id,
        "PermissionsToCreateVolume": {"Removals": {"GlobalPermission": True}},
    }
    ok(clean_sandbox, "UpdateSnapshot", undo)

    assert public == [public_id]
    assert private == [private_id]
    assert [s["SnapshotId"] for s in seen_by_them] == [public_id]
    assert permissions_of(clean_sandbox, public_id) == {"AccountIds": [], "GlobalPermission": False}
    assert shared_ids(clean_sandbox, {"PermissionsToCreateVolumeGlobalPermission": True}) == []
    assert ok(clean_sandbox, "ReadSnapshots", {}, account=team)["Snapshots"] == []


@pytest.mark.parametrize(
    ("permissions", "expected", "valid", "named"),
    [
        (
            {"Additions": {"AccountIds": ["12345"]}},
            (400, "4047", "InvalidParameterValue"),
            True,
            "12345",
        ),
        (
            {"Removals": {"AccountIds": ["21098765432a"]}},
            (400, "4047", "InvalidParameterValue"),
            True,
            "21098765432a",
        ),
        (
            {"Additions": {"GlobalPermission": True}, "Removals": {"AccountIds": ["210987654321"]}},
            (400, "4047", "InvalidParameterValue"),
            True,
            "Additions or Removals",
        ),
        ({}, (400, "4047", "InvalidParameterValue"), True, "PermissionsToCreateVolume"),
        ({"Additions": {}}, (400, "7000", "MissingParameter"), True, "AccountIds"),
        (
            {"Additions": {"Accounts": ["210987654321"]}},
            (400, "4045", "InvalidParameterValue"),
            False,
            "Accounts",
        ),
        (
            {"Additions": {"GlobalPermission": "yes"}},
            (400, "4108", "InvalidParameterValue"),
            False,
            "GlobalPermission",
        ),
    ],
)
def test_it_refuses_bad_permission_changes(clean_sandbox, permissions, expected, valid, named):
    snapshot_id = completed_snapshot(clean_sandbox)
    body = {"SnapshotId": snapshot_id, "PermissionsToCreateVolume": permissions}

    response = call(clean_sandbox, "UpdateSnapshot", body, valid=valid)

    assert error_of(response) == expected
    assert named in details_of(response)
    assert permissions_of(clean_sandbox, snapshot_id) == {
        "AccountIds": [],
        "GlobalPermission": False,
    }


def test_it_refuses_permission_changes_to_snapshots_not_its_own(clean_sandbox):
    theirs = completed_snapshot(clean_sandbox, account=other_team(clean_sandbox))
    change = {"Additions": {"AccountIds": [clean_sandbox.account.account_id]}}

    unknown = call(
        clean_sandbox,
        "UpdateSnapshot",
        {"SnapshotId": "snap-00000000", "PermissionsToCreateVolume": change},
    )
    foreign = call(
        clean_sandbox, "UpdateSnapshot", {"SnapshotId": theirs, "PermissionsToCreateVolume": change}
    )
    missing = call(clean_sandbox, "UpdateSnapshot", {"SnapshotId": theirs}, valid=False)

    assert error_of(unknown) == (400, "5054", "InvalidResource")
    assert error_of(foreign) == (400, "5054", "InvalidResource")
    assert error_of(missing) == (400, "7000", "MissingParameter")


# --- Snapshot copies -----------------------------------------------------------------------------


def test_a_copy_is_pending_then_completed_and_idempotent(clean_sandbox):
    source_id = completed_snapshot(clean_sandbox)
    clean_sandbox.set_lifecycle_seconds(OBSERVABLE_SECONDS)
    body = {
        "SourceSnapshotId": source_id,
        "SourceRegionName": clean_sandbox.region,
        "ClientToken": "copy-1",
        "Description": "the copy",
    }

    copy = ok(clean_sandbox, "CreateSnapshot", body)["Snapshot"]
    again = ok(clean_sandbox, "CreateSnapshot", body)["Snapshot"]
    done = wait_for_state(
        clean_sandbox,
        "ReadSnapshots",
        "Snapshots",
        "SnapshotIds",
        copy["SnapshotId"],
        ["completed"],
    )

    assert copy["State"] == "pending"
    assert again["SnapshotId"] == copy["SnapshotId"]
    assert (done["Progress"], done["Description"], done["VolumeSize"]) == (100, "the copy", 10)
    assert len(own(clean_sandbox, "snapshots")) == 2


def test_a_copy_completes_at_once_with_no_delay(clean_sandbox):
    source_id = completed_snapshot(clean_sandbox)
    clean_sandbox.set_lifecycle_seconds(0)

    copy = ok(clean_sandbox, "CreateSnapshot", {"SourceSnapshotId": source_id})["Snapshot"]

    assert (copy["State"], copy["Progress"]) == ("completed", 100)


# --- State, reset and the admin endpoints --------------------------------------------------------


def test_it_resets_volumes_omis_counters_and_the_lifecycle(clean_sandbox):
    admin = f"{clean_sandbox.endpoint}/_sandbox"
    snapshot_id = completed_snapshot(clean_sandbox)
    ok(
        clean_sandbox,
        "CreateVolume",
        {"SubregionName": f"{clean_sandbox.region}a", "ClientToken": "r", "Size": 1},
    )
    ok(clean_sandbox, "CreateImage", image_body(snapshot_id, "reset-me"))
    told = requests.post(
        f"{admin}/lifecycle", json={"seconds": 5, "fail_next_images": 2}, timeout=5
    )
    before = clean_sandbox.state()

    after = requests.post(f"{admin}/reset", timeout=5).json()

    assert told.json() == {"seconds": 5.0, "fail_next_images": 2}
    assert len(before["volumes"][clean_sandbox.account.account_id]) == 1
    assert len(before["images"][clean_sandbox.account.account_id]) == 1
    assert before["create_volume_calls_by_client_token"] == {"r": 1}
    assert before["create_image_calls_by_name"] == {"reset-me": 1}
    assert after["volumes"][clean_sandbox.account.account_id] == []
    assert after["images"][clean_sandbox.account.account_id] == []
    assert after["create_volume_calls_by_client_token"] == {}
    assert after["create_image_calls_by_name"] == {}
    assert after["lifecycle"] == {"seconds": 0.2, "fail_next_images": 0}
    bad = requests.post(f"{admin}/lifecycle", json={"pace": 1}, timeout=5)
    assert bad.status_code == 400
