"""The API calls of each kind of thing made from a snapshot: send it, find it again, read many.

A volume, an OMI and a copy are claimed, retried and followed the same way (services and
polling); what differs is here: the action that makes one, how an attempt whose answer was
lost finds what it made (the ClientToken, or the OMI's name), and the one listing that reads
a team's many at once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from importer.lifecycle.models import DerivedJob, DerivedKind
from importer.outscale.client import OscClient
from importer.outscale.lifecycle_resources import Image, Volume
from importer.outscale.paginator import Listing, pages_for, read_bounded
from importer.outscale.resources import Page, Snapshot


@dataclass(frozen=True)
class Made:
    """What the API says of one volume, OMI or copy, in the words the jobs share."""

    resource_id: str
    state: str
    progress: int = 0
    done: bool = False
    failed: bool = False
    message: str = ""


def volume_made(volume: Volume) -> Made:
    done = volume.is_available
    return Made(volume.volume_id, volume.state, 100 if done else 0, done, volume.is_failed)


def image_made(image: Image) -> Made:
    done = image.is_available
    failed = image.is_failed
    return Made(image.image_id, image.state, 100 if done else 0, done, failed, image.state_message)


def copy_made(snapshot: Snapshot) -> Made:
    state, progress = snapshot.state, snapshot.progress
    return Made(snapshot.snapshot_id, state, progress, snapshot.is_completed, snapshot.is_failed)


@dataclass(frozen=True)
class Sent:
    made: Made
    request_id: str


def _client_token(job: DerivedJob) -> str:
    # The job's id: an attempt whose answer was lost is found again by it, never made twice.
    return str(job.pk)


def _send_volume(client: OscClient, job: DerivedJob) -> Sent:
    asked = job.parameters
    result = client.create_volume(
        subregion_name=asked["subregion_name"],
        snapshot_id=job.source_snapshot_id,
        volume_type=asked["volume_type"],
        size_gib=asked["size_gib"],
        iops=asked.get("iops"),
        client_token=_client_token(job),
    )
    return Sent(volume_made(result.volume), result.request_id)


def _send_image(client: OscClient, job: DerivedJob) -> Sent:
    asked = job.parameters
    result = client.create_image(
        image_name=asked["image_name"],
        snapshot_id=job.source_snapshot_id,
        root_device_name=asked["root_device_name"],
        volume_size_gib=asked["volume_size_gib"],
        volume_type=asked["volume_type"],
        iops=asked.get("iops"),
        delete_on_vm_deletion=asked["delete_on_vm_deletion"],
        description=asked["description"] or None,
        architecture=asked["architecture"],
        boot_modes=[asked["boot_mode"]],
    )
    return Sent(image_made(result.image), result.request_id)


def _send_copy(client: OscClient, job: DerivedJob) -> Sent:
    result = client.copy_snapshot(
        source_snapshot_id=job.source_snapshot_id,
        source_region_name=client.region,
        description=job.parameters["description"] or None,
        client_token=_client_token(job),
    )
    if result.snapshot is None:
        raise ValueError("CreateSnapshot answered no snapshot for the copy")
    return Sent(copy_made(result.snapshot), result.request_id)


def _find_volume(client: OscClient, job: DerivedJob) -> Made | None:
    volumes = client.read_volumes(client_tokens=[_client_token(job)])
    return volume_made(volumes[0]) if volumes else None


def _find_image(client: OscClient, job: DerivedJob, claimed: set[str]) -> Made | None:
    """CreateImage takes no ClientToken: the OMI of that name made from this snapshot that no
    other job of ours has taken (the API keeps names unique in an account)."""
    for image in client.read_images(image_names=[job.parameters["image_name"]]):
        if job.source_snapshot_id in image.snapshot_ids and image.image_id not in claimed:
            return image_made(image)
    return None


def _find_copy(client: OscClient, job: DerivedJob) -> Made | None:
    snapshots = client.read_snapshots(client_tokens=[_client_token(job)])
    return copy_made(snapshots[0]) if snapshots else None


def send(client: OscClient, job: DerivedJob) -> Sent:
    """Asks the API to make the job's volume, OMI or copy (never retried here)."""
    senders: dict[str, Callable[[OscClient, DerivedJob], Sent]] = {
        DerivedKind.VOLUME: _send_volume,
        DerivedKind.IMAGE: _send_image,
        DerivedKind.COPY: _send_copy,
    }
    return senders[job.kind](client, job)


def find_made(client: OscClient, job: DerivedJob) -> Made | None:
    """What an earlier attempt of `job` made, if the API has it: asked before any retry."""
    if job.kind == DerivedKind.IMAGE:
        claimed = set(
            DerivedJob.objects.filter(team=job.team_id, kind=DerivedKind.IMAGE)
            .exclude(pk=job.pk)
            .exclude(resource_id="")
            .values_list("resource_id", flat=True)
        )
        return _find_image(client, job, claimed)
    if job.kind == DerivedKind.VOLUME:
        return _find_volume(client, job)
    return _find_copy(client, job)


def read_made(
    client: OscClient, kind: str, resource_ids: Sequence[str], *, budget_seconds: float
) -> Listing[Made]:
    """One listing (paged, bounded) of the team's `kind` with these ids: never a call per row."""
    ids = list(resource_ids)
    listing: Listing[Made] = Listing()

    def read_page(token: str | None) -> Page[Made]:
        if kind == DerivedKind.VOLUME:
            volumes = client.read_volumes_page(volume_ids=ids, next_page_token=token)
            items = [volume_made(volume) for volume in volumes.items]
            return Page(items, volumes.next_page_token, volumes.request_id)
        if kind == DerivedKind.IMAGE:
            images = client.read_images_page(image_ids=ids, next_page_token=token)
            items = [image_made(image) for image in images.items]
            return Page(items, images.next_page_token, images.request_id)
        snapshots = client.read_snapshots_page(snapshot_ids=ids, next_page_token=token)
        items = [copy_made(snapshot) for snapshot in snapshots.items]
        return Page(items, snapshots.next_page_token, snapshots.request_id)

    return read_bounded(
        read_page,
        listing,
        action=f"Read ({kind})",
        max_pages=pages_for(ids),
        budget_seconds=budget_seconds,
    )
