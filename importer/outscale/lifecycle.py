"""What is made from a snapshot: volumes, OMIs, copies, and who may use the snapshot.

`LifecycleCalls` is a mixin of `client.OscClient`, kept apart to keep each module short. Like the
client, it never retries: a create whose answer is lost or lacks its object raises, and the
caller reconciles (volumes and copies by ClientToken, OMIs by name) before sending it again.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from functools import partial
from typing import Any, TypedDict, Unpack

from importer.outscale.lifecycle_resources import (
    IMAGE_BOOT_MODES,
    IOPS_VOLUME_TYPE,
    VOLUME_TYPES,
    CreateImageResult,
    CreateVolumeResult,
    Image,
    Subregion,
    UpdateSnapshotResult,
    Volume,
)
from importer.outscale.listing import (
    DEFAULT_MAX_PAGES,
    MAX_RESULTS_PER_PAGE,
    ListingAction,
    _every_item_of,
    _strings,
)
from importer.outscale.resources import CreateSnapshotResult, Page, Snapshot
from importer.outscale.transport import Transport

SUBREGIONS = ListingAction("ReadSubregions", "Subregions", Subregion.from_api, Page)


class VolumeFilters(TypedDict, total=False):
    """ReadVolumes' filters (see VOLUMES); each one left out, or None, filters nothing."""

    volume_ids: Sequence[str] | None
    snapshot_ids: Sequence[str] | None
    client_tokens: Sequence[str] | None


VOLUMES = ListingAction(
    "ReadVolumes",
    "Volumes",
    Volume.from_api,
    Page,
    filters=(
        ("VolumeIds", "volume_ids"),
        ("SnapshotIds", "snapshot_ids"),
        ("ClientTokens", "client_tokens"),
    ),
)


class ImageFilters(TypedDict, total=False):
    """ReadImages' filters (see IMAGES); each one left out, or None, filters nothing."""

    image_ids: Sequence[str] | None
    image_names: Sequence[str] | None
    # The OMIs with a block device made from one of these snapshots.
    snapshot_ids: Sequence[str] | None
    account_ids: Sequence[str] | None


IMAGES = ListingAction(
    "ReadImages",
    "Images",
    Image.from_api,
    Page,
    filters=(
        ("ImageIds", "image_ids"),
        ("ImageNames", "image_names"),
        ("BlockDeviceMappingSnapshotIds", "snapshot_ids"),
        ("AccountIds", "account_ids"),
    ),
)


class LifecycleCalls:
    """CreateVolume, CreateImage, UpdateSnapshot, copy-mode CreateSnapshot and their reads."""

    # Set by OscClient.__init__.
    _transport: Transport

    def read_subregions(self, *, max_pages: int = DEFAULT_MAX_PAGES) -> list[Subregion]:
        """Every Subregion of the client's Region that the account may use."""
        read_page = partial(SUBREGIONS.read_page, self._transport, {})
        return list(SUBREGIONS.iterate(read_page, {}, max_pages=max_pages))

    def create_volume(
        self,
        *,
        subregion_name: str,
        snapshot_id: str,
        volume_type: str = "standard",
        size_gib: int | None = None,
        iops: int | None = None,
        client_token: str | None = None,
    ) -> CreateVolumeResult:
        """Create a volume from a snapshot (never retried here; reconcile by `client_token`).

        Without `size_gib` the volume has the snapshot's size.
        """
        if not subregion_name or not snapshot_id:
            raise ValueError("subregion_name and snapshot_id are required")
        _check_volume(volume_type=volume_type, size_gib=size_gib, iops=iops)
        body: dict[str, Any] = {
            "SubregionName": subregion_name,
            "SnapshotId": snapshot_id,
            "VolumeType": volume_type,
        }
        if size_gib is not None:
            body["Size"] = size_gib
        if iops is not None:
            body["Iops"] = iops
        if client_token is not None:
            body["ClientToken"] = _client_token(client_token)
        # An answer without the volume raises: it may exist, the caller reconciles by ClientToken.
        volume, request_id = self._transport.call_for(
            "CreateVolume", body, "Volume", Volume.from_api
        )
        return CreateVolumeResult(volume=volume, request_id=request_id)

    def read_volumes_page(
        self,
        *,
        results_per_page: int = MAX_RESULTS_PER_PAGE,
        next_page_token: str | None = None,
        **filters: Unpack[VolumeFilters],
    ) -> Page[Volume]:
        """One page of ReadVolumes; an empty id list matches nothing (no request)."""
        return VOLUMES.read_page(self._transport, filters, results_per_page, next_page_token)

    def iter_volumes(
        self,
        *,
        results_per_page: int = MAX_RESULTS_PER_PAGE,
        max_pages: int = DEFAULT_MAX_PAGES,
        **filters: Unpack[VolumeFilters],
    ) -> Iterator[Volume]:
        """Every matching volume, page by page as the iteration goes (see _follow_pages)."""
        return VOLUMES.iterate(
            self.read_volumes_page, filters, max_pages=max_pages, results_per_page=results_per_page
        )

    # Every matching volume, following NextPageToken to the end, as one list.
    read_volumes = _every_item_of(iter_volumes)

    def create_image(
        self,
        *,
        image_name: str,
        snapshot_id: str,
        root_device_name: str = "/dev/sda1",
        volume_size_gib: int | None = None,
        volume_type: str | None = None,
        iops: int | None = None,
        delete_on_vm_deletion: bool = True,
        description: str | None = None,
        architecture: str | None = None,
        boot_modes: Sequence[str] = (),
    ) -> CreateImageResult:
        """Register an OMI whose root device is made from a snapshot (never retried here).

        The API takes no ClientToken here: a caller that lost the answer looks for the OMI by
        its name, unique in an account (`read_images(image_names=..., account_ids=...)`).
        """
        if not image_name or not snapshot_id or not root_device_name:
            raise ValueError("image_name, snapshot_id and root_device_name are required")
        _check_volume(volume_type=volume_type, size_gib=volume_size_gib, iops=iops)
        modes = _strings("boot_modes", boot_modes)
        if any(mode not in IMAGE_BOOT_MODES for mode in modes):
            raise ValueError(f"boot_modes must be among {', '.join(IMAGE_BOOT_MODES)}")
        bsu: dict[str, Any] = {
            "SnapshotId": snapshot_id,
            "DeleteOnVmDeletion": delete_on_vm_deletion,
        }
        if volume_size_gib is not None:
            bsu["VolumeSize"] = volume_size_gib
        if volume_type is not None:
            bsu["VolumeType"] = volume_type
        if iops is not None:
            bsu["Iops"] = iops
        body: dict[str, Any] = {
            "ImageName": image_name,
            "RootDeviceName": root_device_name,
            "BlockDeviceMappings": [{"DeviceName": root_device_name, "Bsu": bsu}],
        }
        if description is not None:
            body["Description"] = description
        if architecture is not None:
            body["Architecture"] = architecture
        if modes:
            body["BootModes"] = modes
        # An answer without the OMI raises: it may exist, the caller reconciles by its name.
        image, request_id = self._transport.call_for("CreateImage", body, "Image", Image.from_api)
        return CreateImageResult(image=image, request_id=request_id)

    def read_images_page(
        self,
        *,
        results_per_page: int = MAX_RESULTS_PER_PAGE,
        next_page_token: str | None = None,
        **filters: Unpack[ImageFilters],
    ) -> Page[Image]:
        """One page of ReadImages; an empty id list matches nothing (no request).

        The API lists every public OMI too, other accounts' included: filter by `account_ids`
        to see only the account's own (a name is unique only within an account).
        """
        return IMAGES.read_page(self._transport, filters, results_per_page, next_page_token)

    def iter_images(
        self,
        *,
        results_per_page: int = MAX_RESULTS_PER_PAGE,
        max_pages: int = DEFAULT_MAX_PAGES,
        **filters: Unpack[ImageFilters],
    ) -> Iterator[Image]:
        """Every matching OMI, page by page as the iteration goes (see _follow_pages)."""
        return IMAGES.iterate(
            self.read_images_page, filters, max_pages=max_pages, results_per_page=results_per_page
        )

    # Every matching OMI, following NextPageToken to the end, as one list.
    read_images = _every_item_of(iter_images)

    def update_snapshot_permissions(
        self,
        *,
        snapshot_id: str,
        add_account_ids: Sequence[str] = (),
        remove_account_ids: Sequence[str] = (),
        make_public: bool | None = None,
    ) -> UpdateSnapshotResult:
        """Share a snapshot with accounts or everyone (`make_public=True`), or stop sharing it.

        The API takes either additions or removals in one call, never both: asking for both
        raises ValueError (call twice). `make_public=False` makes it private again.
        """
        if not snapshot_id:
            raise ValueError("snapshot_id is required")
        added = _strings("add_account_ids", add_account_ids)
        removed = _strings("remove_account_ids", remove_account_ids)
        if any(not account for account in (*added, *removed)):
            raise ValueError("account ids must not be empty")
        additions: dict[str, Any] = {"AccountIds": added} if added else {}
        removals: dict[str, Any] = {"AccountIds": removed} if removed else {}
        if make_public is not None:
            (additions if make_public else removals)["GlobalPermission"] = True
        if not additions and not removals:
            raise ValueError("nothing to change: give account ids or make_public")
        if additions and removals:
            raise ValueError("the API takes additions or removals in one call, not both")
        permissions = {"Additions": additions} if additions else {"Removals": removals}
        body = {"SnapshotId": snapshot_id, "PermissionsToCreateVolume": permissions}
        snapshot, request_id = self._transport.call_for(
            "UpdateSnapshot", body, "Snapshot", Snapshot.from_api
        )
        return UpdateSnapshotResult(snapshot=snapshot, request_id=request_id)

    def copy_snapshot(
        self,
        *,
        source_snapshot_id: str,
        source_region_name: str,
        description: str | None = None,
        client_token: str | None = None,
    ) -> CreateSnapshotResult:
        """Copy a snapshot (the account's own, or one shared with it) into the account.

        The API copies only within the account's Region: `source_region_name` names it. Never
        retried here; reconcile by `client_token`.
        """
        if not source_snapshot_id or not source_region_name:
            raise ValueError("source_snapshot_id and source_region_name are required")
        body: dict[str, Any] = {
            "SourceSnapshotId": source_snapshot_id,
            "SourceRegionName": source_region_name,
        }
        if description is not None:
            body["Description"] = description
        if client_token is not None:
            body["ClientToken"] = _client_token(client_token)
        # An answer without the copy raises: it may exist, the caller reconciles by ClientToken.
        snapshot, request_id = self._transport.call_for(
            "CreateSnapshot", body, "Snapshot", Snapshot.from_api
        )
        return CreateSnapshotResult(snapshot=snapshot, request_id=request_id)


def _check_volume(*, volume_type: str | None, size_gib: int | None, iops: int | None) -> None:
    """Refuses what is the caller's bug; a `volume_type` of None leaves the API's default."""
    if volume_type is not None and volume_type not in VOLUME_TYPES:
        raise ValueError(f"volume_type must be one of {', '.join(VOLUME_TYPES)}")
    if iops is not None and volume_type != IOPS_VOLUME_TYPE:
        raise ValueError(f"iops is only for {IOPS_VOLUME_TYPE} volumes")
    if iops is not None and (isinstance(iops, bool) or iops <= 0):
        raise ValueError("iops must be a positive number")
    if size_gib is not None and (isinstance(size_gib, bool) or size_gib <= 0):
        raise ValueError("the size must be a positive number of GiB")


def _client_token(token: str) -> str:
    # An empty token would silently give up the idempotency the caller counts on.
    if not token:
        raise ValueError("client_token must not be empty")
    return token
