"""Volumes made from snapshots, and the Subregions they are made in.

CreateVolume answers a volume `creating` that becomes `available` after the lifecycle delay
(`CloudState.lifecycle`, 0 = at once). A ClientToken makes it idempotent per account, so a
client whose answer was lost can retry without making a second volume.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sandbox import errors
from sandbox.state import CloudState, Snapshot, api_date, matches

Body = dict[str, Any]
VOLUME_TYPES = ("standard", "gp2", "io1")
MAX_SIZE_GIB = 14901
MIN_IOPS, MAX_IOPS, MAX_IOPS_PER_GIB = 100, 13000, 300
# Physical zones behind `<region>a/b/c`. The real mapping differs per account; a fixed one is
# enough to show the field.
_LOCATION_CODES = {
    "eu-west-2": ("PAR1", "PAR4", "PAR7"),
    "cloudgouv-eu-west-1": ("SEC1", "SEC2", "SEC3"),
    "us-east-2": ("NJ1", "NJ2", "NJ3"),
    "us-west-1": ("SV1", "SV2", "SV3"),
    "ap-northeast-1": ("TYO1", "TYO2", "TYO3"),
}


# --- Subregions --------------------------------------------------------------------------------


def subregions(region: str) -> list[Body]:
    """The Region's three Subregions, in the shape of outscale.yaml's `Subregion`."""
    fallback = tuple(f"{region.split('-')[0].upper()}{n}" for n in (1, 2, 3))
    codes = _LOCATION_CODES.get(region, fallback)
    return [
        {
            "LocationCode": code,
            "RegionName": region,
            "State": "available",
            "SubregionName": f"{region}{letter}",
        }
        for letter, code in zip("abc", codes, strict=True)
    ]


def find_subregions(context: Any, filters: Body) -> list[Body]:
    names = {"RegionNames": "RegionName", "States": "State", "SubregionNames": "SubregionName"}
    return [
        subregion
        for subregion in subregions(context.region)
        if matches(filters, {name: subregion[key] for name, key in names.items()})
    ]


# --- The store ---------------------------------------------------------------------------------


@dataclass
class Volume:
    volume_id: str
    account_id: str
    subregion_name: str
    size: int
    volume_type: str
    created_at: dt.datetime
    state: str = "creating"
    snapshot_id: str | None = None
    iops: int | None = None
    client_token: str | None = None
    tags: dict[str, str] = field(default_factory=dict)

    def to_api(self) -> Body:
        """The volume in the exact shape of outscale.yaml's `Volume` schema."""
        body: Body = {
            "CreationDate": api_date(self.created_at),
            "LinkedVolumes": [],
            "Size": self.size,
            "State": self.state,
            "SubregionName": self.subregion_name,
            "Tags": [{"Key": key, "Value": value} for key, value in self.tags.items()],
            "VolumeId": self.volume_id,
            "VolumeType": self.volume_type,
        }
        iops = self.iops if self.volume_type == "io1" else _baseline_iops(self)
        if iops is not None:
            body["Iops"] = iops
        if self.client_token is not None:
            body["ClientToken"] = self.client_token
        if self.snapshot_id is not None:
            body["SnapshotId"] = self.snapshot_id
        return body

    def filter_fields(self) -> Body:
        """Its value(s) for each of FiltersVolume's filters (never linked to a VM here)."""
        return {
            "ClientTokens": self.client_token,
            "CreationDates": {api_date(self.created_at), self.created_at.date().isoformat()},
            "LinkVolumeDeleteOnVmDeletion": set(),
            "LinkVolumeDeviceNames": set(),
            "LinkVolumeLinkDates": set(),
            "LinkVolumeLinkStates": set(),
            "LinkVolumeVmIds": set(),
            "SnapshotIds": self.snapshot_id,
            "SubregionNames": self.subregion_name,
            "TagKeys": set(self.tags),
            "TagValues": set(self.tags.values()),
            "Tags": {f"{key}={value}" for key, value in self.tags.items()},
            "VolumeIds": self.volume_id,
            "VolumeSizes": self.size,
            "VolumeStates": self.state,
            "VolumeTypes": self.volume_type,
        }


def _baseline_iops(volume: Volume) -> int | None:
    # gp2 volumes report their baseline: 3 IOPS per GiB, at least 100.
    return max(100, 3 * volume.size) if volume.volume_type == "gp2" else None


class VolumeStore:
    """Volumes per account, under the cloud state's lock."""

    def __init__(self, state: CloudState) -> None:
        self._state = state
        self._volumes: dict[str, Volume] = {}
        self._by_token: dict[tuple[str, str], str] = {}

    def by_token(self, account_id: str, client_token: str | None) -> Volume | None:
        if client_token is None:
            return None
        with self._state.lock:
            return self._volumes.get(self._by_token.get((account_id, client_token), ""))

    def create(
        self, account_id: str, client_token: str | None, **fields: Any
    ) -> tuple[Volume, bool]:
        """Return (volume, created); a known ClientToken returns the existing volume."""
        with self._state.lock:
            existing = self.by_token(account_id, client_token)
            if existing is not None:
                return existing, False
            volume = Volume(
                volume_id=self._new_id(),
                account_id=account_id,
                created_at=dt.datetime.now(dt.UTC),
                client_token=client_token,
                **fields,
            )
            self._volumes[volume.volume_id] = volume
            if client_token is not None:
                self._by_token[(account_id, client_token)] = volume.volume_id
        self._state.lifecycle.later(lambda: self._become_available(volume))
        return volume, True

    def _become_available(self, volume: Volume) -> None:
        with self._state.lock:
            if self._volumes.get(volume.volume_id) is volume and volume.state == "creating":
                volume.state = "available"

    def get(self, account_id: str, volume_id: str) -> Volume | None:
        with self._state.lock:
            volume = self._volumes.get(volume_id)
            return volume if volume and volume.account_id == account_id else None

    def find(self, account_id: str, keep: Callable[[Volume], bool]) -> list[Volume]:
        with self._state.lock:
            found = [v for v in self._volumes.values() if v.account_id == account_id and keep(v)]
        return sorted(found, key=lambda v: (v.created_at, v.volume_id))

    def delete(self, volume: Volume) -> None:
        with self._state.lock:
            self._volumes.pop(volume.volume_id, None)
            if volume.client_token is not None:
                self._by_token.pop((volume.account_id, volume.client_token), None)

    def reset(self) -> None:
        with self._state.lock:
            self._volumes.clear()
            self._by_token.clear()

    def dump(self, account_ids: list[str]) -> dict[str, list[Body]]:
        with self._state.lock:
            per_account: dict[str, list[Body]] = {account_id: [] for account_id in account_ids}
            for volume in sorted(self._volumes.values(), key=lambda v: v.created_at):
                state = {**volume.to_api(), "AccountId": volume.account_id}
                per_account.setdefault(volume.account_id, []).append(state)
            return per_account

    def _new_id(self) -> str:
        while True:
            volume_id = f"vol-{secrets.token_hex(4)}"
            if volume_id not in self._volumes:
                return volume_id


# --- Checks shared with CreateImage's block device mappings ------------------------------------


def source_snapshot(context: Any, snapshot_id: str, *, shared: bool = False) -> Snapshot:
    """A `completed` snapshot of the account's (or, with `shared`, one it may use)."""
    if not snapshot_id.startswith("snap-"):
        raise errors.invalid_id_prefix(snapshot_id)
    state: CloudState = context.state
    account_id = context.account.account_id
    found = (
        state.get_readable(account_id, snapshot_id)
        if shared
        else state.get(account_id, snapshot_id)
    )
    if found is None:
        raise errors.no_such_snapshot(snapshot_id)
    if found.state != "completed":
        raise errors.invalid_snapshot_state(snapshot_id, found.state)
    return found


def check_size(name: str, size: int | None, snapshot: Snapshot | None) -> int:
    """The size in GiB: by default the snapshot's, never below it, at most 14901."""
    smallest = (snapshot.volume_size or 1) if snapshot is not None else 1
    if size is None:
        if snapshot is None:
            raise errors.missing_parameter(name)
        size = smallest
    if not 1 <= size <= MAX_SIZE_GIB:
        raise errors.invalid_volume_size(name, f"must be between 1 and {MAX_SIZE_GIB} GiB")
    if size < smallest:
        raise errors.invalid_volume_size(
            name, f"must be at least the snapshot's size ({smallest} GiB)"
        )
    return size


def check_volume_type(name: str, volume_type: str) -> str:
    if volume_type not in VOLUME_TYPES:
        raise errors.invalid_value(name, f"must be one of {', '.join(VOLUME_TYPES)}")
    return volume_type


def check_iops(name: str, iops: int | None, volume_type: str, size: int) -> int | None:
    """Iops goes with io1 only, and io1 needs it: 100 to 13000, at most 300 per GiB."""
    if volume_type != "io1":
        if iops is not None:
            raise errors.invalid_iops(name, "can only be given for io1 volumes")
        return None
    if iops is None:
        raise errors.missing_parameter(name)
    if not MIN_IOPS <= iops <= MAX_IOPS:
        raise errors.invalid_iops(name, f"must be between {MIN_IOPS} and {MAX_IOPS}")
    if iops > MAX_IOPS_PER_GIB * size:
        raise errors.invalid_iops(
            name, f"must be at most {MAX_IOPS_PER_GIB} per GiB ({MAX_IOPS_PER_GIB * size})"
        )
    return iops


# --- The API actions ---------------------------------------------------------------------------


def create_volume(context: Any, body: Body) -> Body:
    store: VolumeStore = context.volumes
    account_id = context.account.account_id
    # A retry with a known token gets its volume back, whatever happened to the snapshot since.
    existing = store.by_token(account_id, body.get("ClientToken"))
    if existing is not None:
        return {} if body.get("DryRun") else {"Volume": existing.to_api()}
    names = [subregion["SubregionName"] for subregion in subregions(context.region)]
    if body["SubregionName"] not in names:
        raise errors.invalid_value("SubregionName", f"must be one of {', '.join(names)}")
    snapshot = None
    if "SnapshotId" in body:
        snapshot = source_snapshot(context, body["SnapshotId"], shared=True)
    size = check_size("Size", body.get("Size"), snapshot)
    volume_type = check_volume_type("VolumeType", body.get("VolumeType", "standard"))
    iops = check_iops("Iops", body.get("Iops"), volume_type, size)
    if body.get("DryRun"):
        return {}
    volume, _ = store.create(
        account_id,
        body.get("ClientToken"),
        subregion_name=body["SubregionName"],
        size=size,
        volume_type=volume_type,
        iops=iops,
        snapshot_id=snapshot.snapshot_id if snapshot is not None else None,
    )
    return {"Volume": volume.to_api()}


def find_volumes(context: Any, filters: Body) -> list[Body]:
    store: VolumeStore = context.volumes
    found = store.find(context.account.account_id, lambda v: matches(filters, v.filter_fields()))
    return [volume.to_api() for volume in found]


def delete_volume(context: Any, body: Body) -> Body:
    store: VolumeStore = context.volumes
    volume_id = body["VolumeId"]
    if not volume_id.startswith("vol-"):
        raise errors.invalid_id_prefix(volume_id)
    volume = store.get(context.account.account_id, volume_id)
    if volume is None:
        raise errors.no_such_volume(volume_id)
    if not body.get("DryRun"):
        store.delete(volume)
    return {}


PARAMS: dict[str, dict[str, str]] = {
    "ReadSubregions": {
        "DryRun": "boolean", "Filters": "object", "NextPageToken": "string",
        "ResultsPerPage": "integer",
    },
    "CreateVolume": {
        "ClientToken": "string", "DryRun": "boolean", "Iops": "integer", "Size": "integer",
        "SnapshotId": "string", "SubregionName": "string", "VolumeType": "string",
    },
    "ReadVolumes": {
        "DryRun": "boolean", "Filters": "object", "NextPageToken": "string",
        "ResultsPerPage": "integer",
    },
    "DeleteVolume": {"DryRun": "boolean", "VolumeId": "string"},
}  # fmt: skip
REQUIRED: dict[str, tuple[str, ...]] = {
    "CreateVolume": ("SubregionName",),
    "DeleteVolume": ("VolumeId",),
}
HANDLERS: dict[str, Callable[[Any, Body], Body]] = {
    "CreateVolume": create_volume,
    "DeleteVolume": delete_volume,
}
# Read actions: (the answer's list key, filter types, the filtered resources in page order).
LISTS: dict[str, tuple[str, dict[str, str], Callable[[Any, Body], list[Body]]]] = {
    "ReadSubregions": (
        "Subregions",
        {"RegionNames": "strings", "States": "strings", "SubregionNames": "strings"},
        find_subregions,
    ),
    "ReadVolumes": (
        "Volumes",
        {
            "ClientTokens": "strings",
            "CreationDates": "strings",
            "LinkVolumeDeleteOnVmDeletion": "boolean",
            "LinkVolumeDeviceNames": "strings",
            "LinkVolumeLinkDates": "strings",
            "LinkVolumeLinkStates": "strings",
            "LinkVolumeVmIds": "strings",
            "SnapshotIds": "strings",
            "SubregionNames": "strings",
            "TagKeys": "strings",
            "TagValues": "strings",
            "Tags": "strings",
            "VolumeIds": "strings",
            "VolumeSizes": "integers",
            "VolumeStates": "strings",
            "VolumeTypes": "strings",
        },  # fmt: skip
        find_volumes,
    ),
}
