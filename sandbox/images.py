"""OMIs registered from snapshots (CreateImage's "from a snapshot" mode), and their lifecycle.

An OMI starts `pending` and becomes `available` after the lifecycle delay, or `failed` with a
StateComment when a test asked for it (`ImageStore.fail_next`). Names are unique per account:
CreateImage has no ClientToken, so a client that lost an answer finds its OMI by name.
While an OMI of the account maps a snapshot, DeleteSnapshot is refused (sandbox/actions.py).
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sandbox import errors
from sandbox.state import CloudState, api_date, matches
from sandbox.volumes import check_iops, check_size, check_volume_type, source_snapshot

Body = dict[str, Any]
ARCHITECTURES = ("i386", "x86_64")
BOOT_MODES = ("legacy", "uefi")
ROOT_DEVICE = "/dev/sda1"
# outscale.yaml: 3-128 letters, digits, underscores, spaces, parentheses, slashes, periods, dashes.
_NAME = re.compile(r"[A-Za-z0-9_ ()/.\-]{3,128}")
# The root is /dev/sda1; other devices /dev/sdX, /dev/sdXX, /dev/xvdX, /dev/xvdXX (b-z, a-z).
_DEVICE = re.compile(r"/dev/sda1|/dev/(sd|xvd)[b-z][a-z]?")
_OTHER_MODES = ("FileLocation", "SourceImageId", "VmId")
DEFAULT_FAILURE = {
    "StateCode": "Server.InternalError",
    "StateMessage": "Internal error: the OMI could not be registered (a sandbox failure).",
}


@dataclass
class Image:
    image_id: str
    account_id: str
    account_alias: str | None
    name: str
    created_at: dt.datetime
    mappings: list[Body]
    root_device_name: str
    architecture: str = "x86_64"
    boot_modes: list[str] = field(default_factory=lambda: ["legacy"])
    description: str = ""
    product_codes: list[str] = field(default_factory=lambda: ["0001"])
    tpm_mandatory: bool = False
    state: str = "pending"
    state_comment: Body = field(default_factory=dict)
    # Decided at creation (fail_next), applied when it leaves `pending`.
    fails_with: Body | None = None

    def snapshot_ids(self) -> set[str]:
        return {m["Bsu"]["SnapshotId"] for m in self.mappings if "Bsu" in m}

    def to_api(self) -> Body:
        """The OMI in the exact shape of outscale.yaml's `Image` schema."""
        body: Body = {
            "AccountId": self.account_id,
            "Architecture": self.architecture,
            "BlockDeviceMappings": [_copy_mapping(m) for m in self.mappings],
            "BootModes": list(self.boot_modes),
            "CreationDate": api_date(self.created_at),
            "Description": self.description,
            "FileLocation": f"{self.account_id}/{self.name}",
            "ImageId": self.image_id,
            "ImageName": self.name,
            "ImageType": "machine",
            "PermissionsToLaunch": {"AccountIds": [], "GlobalPermission": False},
            "ProductCodes": list(self.product_codes),
            "RootDeviceName": self.root_device_name,
            "RootDeviceType": "bsu",
            "SecureBoot": False,
            "State": self.state,
            "StateComment": dict(self.state_comment),
            "Tags": [],
            "TpmMandatory": self.tpm_mandatory,
        }
        if self.account_alias:
            body["AccountAlias"] = self.account_alias
        return body

    def filter_fields(self) -> Body:
        """Its value(s) for each of FiltersImage's filters."""
        bsus = [m["Bsu"] for m in self.mappings if "Bsu" in m]
        return {
            "AccountAliases": self.account_alias,
            "AccountIds": self.account_id,
            "Architectures": self.architecture,
            "BlockDeviceMappingDeleteOnVmDeletion": {b["DeleteOnVmDeletion"] for b in bsus},
            "BlockDeviceMappingDeviceNames": {m["DeviceName"] for m in self.mappings},
            "BlockDeviceMappingSnapshotIds": self.snapshot_ids(),
            "BlockDeviceMappingVolumeSizes": {b["VolumeSize"] for b in bsus},
            "BlockDeviceMappingVolumeTypes": {b["VolumeType"] for b in bsus},
            "BootModes": set(self.boot_modes),
            "Descriptions": self.description,
            "FileLocations": f"{self.account_id}/{self.name}",
            "Hypervisors": "xen",
            "ImageIds": self.image_id,
            "ImageNames": self.name,
            "PermissionsToLaunchAccountIds": set(),
            "PermissionsToLaunchGlobalPermission": False,
            "ProductCodeNames": set(),
            "ProductCodes": set(self.product_codes),
            "RootDeviceNames": self.root_device_name,
            "RootDeviceTypes": "bsu",
            "SecureBoot": False,
            "States": self.state,
            "TagKeys": set(),
            "TagValues": set(),
            "Tags": set(),
            "TpmMandatory": self.tpm_mandatory,
            "VirtualizationTypes": "hvm",
        }


def _copy_mapping(mapping: Body) -> Body:
    return {**mapping, "Bsu": dict(mapping["Bsu"])} if "Bsu" in mapping else dict(mapping)


class ImageStore:
    """OMIs per account, under the cloud state's lock (see DeleteSnapshot)."""

    def __init__(self, state: CloudState) -> None:
        self._state = state
        self._images: dict[str, Image] = {}
        self._fail_next = 0
        self._failure = dict(DEFAULT_FAILURE)

    def fail_next(self, count: int, state_comment: Body | None = None) -> None:
        """The next `count` OMIs end `failed` with `state_comment` (StateCode, StateMessage)."""
        if count < 0:
            raise ValueError("count must not be negative")
        with self._state.lock:
            self._fail_next = count
            self._failure = dict(state_comment or DEFAULT_FAILURE)

    def create(self, account_id: str, name: str, **fields: Any) -> Image:
        with self._state.lock:
            for image in self._images.values():
                if image.account_id == account_id and image.name == name:
                    raise errors.duplicate_image_name(name, image.image_id)
            image = Image(
                image_id=self._new_id(),
                account_id=account_id,
                name=name,
                created_at=dt.datetime.now(dt.UTC),
                **fields,
            )
            if self._fail_next > 0:
                self._fail_next -= 1
                image.fails_with = dict(self._failure)
            self._images[image.image_id] = image
        self._state.lifecycle.later(lambda: self._settle(image))
        return image

    def _settle(self, image: Image) -> None:
        with self._state.lock:
            if self._images.get(image.image_id) is not image or image.state != "pending":
                return
            image.state = "failed" if image.fails_with else "available"
            image.state_comment = dict(image.fails_with or {})

    def get(self, account_id: str, image_id: str) -> Image | None:
        with self._state.lock:
            image = self._images.get(image_id)
            return image if image and image.account_id == account_id else None

    def find(self, account_id: str, keep: Callable[[Image], bool]) -> list[Image]:
        with self._state.lock:
            found = [i for i in self._images.values() if i.account_id == account_id and keep(i)]
        return sorted(found, key=lambda i: (i.created_at, i.image_id))

    def using(self, account_id: str, snapshot_id: str) -> list[str]:
        """The IDs of the account's OMIs whose block device mappings use the snapshot."""
        return [
            i.image_id for i in self.find(account_id, lambda i: snapshot_id in i.snapshot_ids())
        ]

    def delete(self, image: Image) -> None:
        with self._state.lock:
            self._images.pop(image.image_id, None)

    def reset(self) -> None:
        with self._state.lock:
            self._images.clear()
            self._fail_next = 0
            self._failure = dict(DEFAULT_FAILURE)

    def dump(self, account_ids: list[str]) -> dict[str, list[Body]]:
        with self._state.lock:
            per_account: dict[str, list[Body]] = {account_id: [] for account_id in account_ids}
            for image in sorted(self._images.values(), key=lambda i: i.created_at):
                per_account.setdefault(image.account_id, []).append(image.to_api())
            return per_account

    def pending_failures(self) -> int:
        with self._state.lock:
            return self._fail_next

    def _new_id(self) -> str:
        while True:
            image_id = f"ami-{secrets.token_hex(4)}"
            if image_id not in self._images:
                return image_id


# --- Checking a CreateImage request -----------------------------------------------------------

_MAPPING_FIELDS: dict[str, type] = {"Bsu": dict, "DeviceName": str, "VirtualDeviceName": str}
_BSU_FIELDS: dict[str, type] = {
    "DeleteOnVmDeletion": bool, "Iops": int, "SnapshotId": str, "VolumeSize": int,
    "VolumeType": str,
}  # fmt: skip
_TYPE_NAMES = {dict: "object", str: "string", bool: "boolean", int: "integer"}


def _check_fields(value: Any, allowed: dict[str, type], name: str) -> Body:
    if not isinstance(value, dict):
        raise errors.invalid_type(name, "object")
    for key, item in value.items():
        if key not in allowed:
            raise errors.unknown_parameter(f"{name}.{key}")
        kind = allowed[key]
        # bool is an int to Python, not to the API.
        if not isinstance(item, kind) or (kind is int and isinstance(item, bool)):
            raise errors.invalid_type(f"{name}.{key}", _TYPE_NAMES[kind])
    return value


def _check_name(body: Body) -> str:
    if "ImageName" not in body:
        raise errors.missing_parameter("ImageName")
    name: str = body["ImageName"]
    if not 3 <= len(name) <= 128:
        raise errors.invalid_image_name(name, "must be 3 to 128 characters long")
    if not _NAME.fullmatch(name):
        raise errors.invalid_image_name(
            name, "may hold only letters, digits, spaces and the characters _ ( ) / . -"
        )
    return name


def _check_bsu(context: Any, bsu: Body, name: str) -> Body:
    _check_fields(bsu, _BSU_FIELDS, name)
    if "SnapshotId" not in bsu:
        raise errors.missing_parameter(f"{name}.SnapshotId")
    snapshot = source_snapshot(context, bsu["SnapshotId"])
    size = check_size(f"{name}.VolumeSize", bsu.get("VolumeSize"), snapshot)
    volume_type = check_volume_type(f"{name}.VolumeType", bsu.get("VolumeType", "standard"))
    iops = check_iops(f"{name}.Iops", bsu.get("Iops"), volume_type, size)
    checked: Body = {
        "DeleteOnVmDeletion": bsu.get("DeleteOnVmDeletion", True),
        "SnapshotId": snapshot.snapshot_id,
        "VolumeSize": size,
        "VolumeType": volume_type,
    }
    if iops is not None:
        checked["Iops"] = iops
    return checked


def _check_mappings(context: Any, body: Body) -> list[Body]:
    """Each mapping is a BSU volume from an own completed snapshot, or an ephemeral device."""
    if not body.get("BlockDeviceMappings"):
        raise errors.missing_parameter("BlockDeviceMappings")
    checked: list[Body] = []
    for index, mapping in enumerate(body["BlockDeviceMappings"]):
        name = f"BlockDeviceMappings[{index}]"
        _check_fields(mapping, _MAPPING_FIELDS, name)
        if "DeviceName" not in mapping:
            raise errors.missing_parameter(f"{name}.DeviceName")
        device = mapping["DeviceName"]
        if not _DEVICE.fullmatch(device):
            raise errors.invalid_device_name(f"{name}.DeviceName", device)
        if any(m["DeviceName"] == device for m in checked):
            raise errors.invalid_block_device_mapping(name, f"maps '{device}' a second time")
        if ("Bsu" in mapping) == ("VirtualDeviceName" in mapping):
            raise errors.invalid_block_device_mapping(
                name, "needs exactly one of Bsu or VirtualDeviceName"
            )
        if "Bsu" in mapping:
            checked.append(
                {"DeviceName": device, "Bsu": _check_bsu(context, mapping["Bsu"], f"{name}.Bsu")}
            )
        else:
            checked.append(
                {"DeviceName": device, "VirtualDeviceName": mapping["VirtualDeviceName"]}
            )
    return checked


def _check_root(body: Body, mappings: list[Body]) -> str:
    if "RootDeviceName" not in body:
        raise errors.missing_parameter("RootDeviceName")
    root: str = body["RootDeviceName"]
    if root != ROOT_DEVICE:
        raise errors.invalid_root_mapping(f"is '{root}', and the root device must be {ROOT_DEVICE}")
    if not any(m["DeviceName"] == root and "Bsu" in m for m in mappings):
        raise errors.invalid_root_mapping(f"'{root}' is not a BSU device of BlockDeviceMappings")
    return root


def _check_choices(body: Body) -> tuple[str, list[str]]:
    architecture = body.get("Architecture", "x86_64")
    if architecture not in ARCHITECTURES:
        raise errors.invalid_value("Architecture", f"must be one of {', '.join(ARCHITECTURES)}")
    boot_modes = body.get("BootModes", ["legacy"])
    if not boot_modes or len(set(boot_modes)) != len(boot_modes):
        raise errors.invalid_value("BootModes", "must list legacy and/or uefi, each once")
    for mode in boot_modes:
        if mode not in BOOT_MODES:
            raise errors.invalid_value("BootModes", f"holds '{mode}', not legacy or uefi")
    return architecture, list(boot_modes)


# --- The API actions ---------------------------------------------------------------------------


def create_image(context: Any, body: Body) -> Body:
    for mode in _OTHER_MODES:
        if mode in body:
            if mode == "VmId":
                raise errors.no_such_vm(body["VmId"])  # the sandbox runs no VMs
            raise errors.invalid_value(mode, "is not emulated: register from snapshots")
    name = _check_name(body)
    architecture, boot_modes = _check_choices(body)
    store: ImageStore = context.images
    account = context.account
    # Checked and made under the lock DeleteSnapshot takes: no snapshot can go in between.
    with context.state.lock:
        mappings = _check_mappings(context, body)
        root = _check_root(body, mappings)
        if body.get("DryRun"):
            return {}
        image = store.create(
            account.account_id,
            name,
            account_alias=account.alias,
            mappings=mappings,
            root_device_name=root,
            architecture=architecture,
            boot_modes=boot_modes,
            description=body.get("Description", ""),
            product_codes=list(body.get("ProductCodes") or ["0001"]),
            tpm_mandatory=body.get("TpmMandatory", False),
        )
    return {"Image": image.to_api()}


def find_images(context: Any, filters: Body) -> list[Body]:
    store: ImageStore = context.images
    found = store.find(context.account.account_id, lambda i: matches(filters, i.filter_fields()))
    return [image.to_api() for image in found]


def delete_image(context: Any, body: Body) -> Body:
    store: ImageStore = context.images
    image_id = body["ImageId"]
    if not image_id.startswith("ami-"):
        raise errors.invalid_id_prefix(image_id)
    image = store.get(context.account.account_id, image_id)
    if image is None:
        raise errors.no_such_image(image_id)
    if not body.get("DryRun"):
        store.delete(image)
    return {}


PARAMS: dict[str, dict[str, str]] = {
    "CreateImage": {
        "Architecture": "string", "BlockDeviceMappings": "objects", "BootModes": "strings",
        "Description": "string", "DryRun": "boolean", "FileLocation": "string",
        "ImageName": "string", "NoReboot": "boolean", "ProductCodes": "strings",
        "RootDeviceName": "string", "SourceImageId": "string", "SourceRegionName": "string",
        "TpmMandatory": "boolean", "VmId": "string",
    },
    "ReadImages": {
        "DryRun": "boolean", "Filters": "object", "NextPageToken": "string",
        "ResultsPerPage": "integer",
    },
    "DeleteImage": {"DryRun": "boolean", "ImageId": "string"},
}  # fmt: skip
REQUIRED: dict[str, tuple[str, ...]] = {"DeleteImage": ("ImageId",)}
HANDLERS: dict[str, Callable[[Any, Body], Body]] = {
    "CreateImage": create_image,
    "DeleteImage": delete_image,
}
_FILTER_TYPES = {
    "AccountAliases": "strings", "AccountIds": "strings", "Architectures": "strings",
    "BlockDeviceMappingDeleteOnVmDeletion": "boolean",
    "BlockDeviceMappingDeviceNames": "strings", "BlockDeviceMappingSnapshotIds": "strings",
    "BlockDeviceMappingVolumeSizes": "integers", "BlockDeviceMappingVolumeTypes": "strings",
    "BootModes": "strings", "Descriptions": "strings", "FileLocations": "strings",
    "Hypervisors": "strings", "ImageIds": "strings", "ImageNames": "strings",
    "PermissionsToLaunchAccountIds": "strings", "PermissionsToLaunchGlobalPermission": "boolean",
    "ProductCodeNames": "strings", "ProductCodes": "strings", "RootDeviceNames": "strings",
    "RootDeviceTypes": "strings", "SecureBoot": "boolean", "States": "strings",
    "TagKeys": "strings", "TagValues": "strings", "Tags": "strings", "TpmMandatory": "boolean",
    "VirtualizationTypes": "strings",
}  # fmt: skip
LISTS: dict[str, tuple[str, dict[str, str], Callable[[Any, Body], list[Body]]]] = {
    "ReadImages": ("Images", _FILTER_TYPES, find_images),
}
