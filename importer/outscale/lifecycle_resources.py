"""What the lifecycle calls answer: Subregions, volumes, OMIs, and the results of their creation.

Each field is read as in resources.py (`api(...)`): a missing or odd one gives an empty value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

from importer.outscale.resources import (
    ApiObject,
    Snapshot,
    SnapshotPermissions,
    Stateful,
    _as_datetime,
    _as_int,
    _tags_from_api,
    api,
    as_str,
)

__all__ = [
    "IMAGE_BOOT_MODES",
    "VOLUME_TYPES",
    "CreateImageResult",
    "CreateVolumeResult",
    "Image",
    "SnapshotPermissions",
    "Subregion",
    "UpdateSnapshotResult",
    "Volume",
]


VOLUME_TYPES = ("standard", "gp2", "io1")


# The only volume type that takes a number of IOPS.
IOPS_VOLUME_TYPE = "io1"


IMAGE_BOOT_MODES = ("uefi", "legacy")


@dataclass(frozen=True)
class Subregion(ApiObject):
    name: str = field(metadata=api("SubregionName"))
    state: str = field(metadata=api("State"))
    region_name: str = field(metadata=api("RegionName"))


@dataclass(frozen=True)
class Volume(ApiObject, Stateful):
    in_progress_states: ClassVar[frozenset[str]] = frozenset({"creating"})
    failed_states: ClassVar[frozenset[str]] = frozenset({"error"})

    volume_id: str = field(metadata=api("VolumeId"))
    state: str = field(metadata=api("State"))
    subregion_name: str = field(metadata=api("SubregionName"))
    size_gib: int | None = field(metadata=api("Size", parse=_as_int))
    volume_type: str = field(metadata=api("VolumeType"))
    iops: int | None = field(metadata=api("Iops", parse=_as_int))
    snapshot_id: str = field(metadata=api("SnapshotId"))
    client_token: str = field(metadata=api("ClientToken"))
    creation_date: datetime | None = field(metadata=api("CreationDate", parse=_as_datetime))
    tags: dict[str, str] = field(default_factory=dict, metadata=api("Tags", parse=_tags_from_api))

    @property
    def is_available(self) -> bool:
        # "in-use": available, and already attached to a VM.
        return self.state in ("available", "in-use")


def _mapped_snapshot_ids(mappings: Any) -> tuple[str, ...]:
    if not isinstance(mappings, list):
        return ()
    ids: list[str] = []
    for mapping in mappings:
        bsu = mapping.get("Bsu") if isinstance(mapping, dict) else None
        snapshot_id = as_str(bsu.get("SnapshotId")) if isinstance(bsu, dict) else ""
        if snapshot_id:
            ids.append(snapshot_id)
    return tuple(ids)


@dataclass(frozen=True)
class Image(ApiObject, Stateful):
    in_progress_states: ClassVar[frozenset[str]] = frozenset({"pending"})
    failed_states: ClassVar[frozenset[str]] = frozenset({"failed"})

    image_id: str = field(metadata=api("ImageId"))
    image_name: str = field(metadata=api("ImageName"))
    state: str = field(metadata=api("State"))
    state_message: str = field(metadata=api("StateComment", "StateMessage"))
    description: str = field(metadata=api("Description"))
    # The snapshots behind its block device mappings, in their order.
    snapshot_ids: tuple[str, ...] = field(
        metadata=api("BlockDeviceMappings", parse=_mapped_snapshot_ids)
    )
    creation_date: datetime | None = field(metadata=api("CreationDate", parse=_as_datetime))
    # The owner: ReadImages lists other accounts' public OMIs too, names included.
    account_id: str = field(default="", metadata=api("AccountId"))

    @property
    def is_available(self) -> bool:
        return self.state == "available"


@dataclass(frozen=True)
class CreateVolumeResult:
    volume: Volume
    request_id: str


@dataclass(frozen=True)
class CreateImageResult:
    image: Image
    request_id: str


@dataclass(frozen=True)
class UpdateSnapshotResult:
    snapshot: Snapshot
    request_id: str
