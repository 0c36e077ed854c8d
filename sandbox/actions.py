"""The OUTSCALE API actions the sandbox implements, on plain dicts in and out."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sandbox import errors, exports, images, volumes
from sandbox.imports import Importer
from sandbox.signing import Account
from sandbox.state import CloudState, Snapshot, volume_size_gib

MAX_RESULTS_PER_PAGE = 1000
Body = dict[str, Any]

# Parameter types as outscale.yaml declares them, per action.
_PARAMS: dict[str, dict[str, str]] = {
    "CreateSnapshot": {
        "ClientToken": "string", "Description": "string", "DryRun": "boolean",
        "FileLocation": "string", "SnapshotSize": "integer", "SourceRegionName": "string",
        "SourceSnapshotId": "string", "VolumeId": "string",
    },
    "ReadSnapshots": {
        "DryRun": "boolean", "Filters": "object", "NextPageToken": "string",
        "ResultsPerPage": "integer",
    },
    "DeleteSnapshot": {"DryRun": "boolean", "SnapshotId": "string"},
    "UpdateSnapshot": {
        "DryRun": "boolean", "PermissionsToCreateVolume": "object", "SnapshotId": "string",
    },
    "CreateTags": {"DryRun": "boolean", "ResourceIds": "strings", "Tags": "tags"},
    "DeleteTags": {"DryRun": "boolean", "ResourceIds": "strings", "Tags": "tags"},
}  # fmt: skip
_REQUIRED = {
    "DeleteSnapshot": ("SnapshotId",),
    "UpdateSnapshot": ("SnapshotId", "PermissionsToCreateVolume"),
    "CreateTags": ("ResourceIds", "Tags"),
    "DeleteTags": ("ResourceIds", "Tags"),
}
for _module in (exports, volumes, images):
    _PARAMS.update(_module.PARAMS)
    _REQUIRED.update(_module.REQUIRED)
_FILTERS = {
    "AccountAliases": "strings", "AccountIds": "strings", "ClientTokens": "strings",
    "Descriptions": "strings", "FromCreationDate": "string",
    "PermissionsToCreateVolumeAccountIds": "strings",
    "PermissionsToCreateVolumeGlobalPermission": "boolean", "Progresses": "integers",
    "SnapshotIds": "strings", "States": "strings", "TagKeys": "strings", "TagValues": "strings",
    "Tags": "strings", "ToCreationDate": "string", "VolumeIds": "strings",
    "VolumeSizes": "integers",
}  # fmt: skip
_TYPE_NAMES = {
    "string": "string", "integer": "integer", "boolean": "boolean", "object": "object",
    "strings": "array of strings", "integers": "array of integers", "tags": "array of tags",
    "objects": "array of objects",
}  # fmt: skip
_PERMISSION_CHANGES = {"Additions": "object", "Removals": "object"}
_PERMISSIONS = {"AccountIds": "strings", "GlobalPermission": "boolean"}
_ACCOUNT_ID = re.compile(r"[0-9]{12}")


@dataclass(frozen=True)
class Context:
    account: Account
    state: CloudState
    importer: Importer
    region: str
    exporter: exports.Exporter | None = None
    volumes: volumes.VolumeStore | None = None
    images: images.ImageStore | None = None


Handler = Callable[[Context, Body], Body]
# A read action: the answer's list key, its filters' types, and the filtered resources (in the
# order OUTSCALE pages them) in the API's shape. Paging is the same for all: see `_read`.
Lister = tuple[str, dict[str, str], Callable[[Context, Body], list[Body]]]


def is_known(action: str) -> bool:
    return action in _PARAMS


def run(action: str, context: Context, body: Body) -> Body:
    """Validate `body` for `action`, then act; raises `OscError` on a bad request."""
    _check_params(body, _PARAMS[action], _REQUIRED.get(action, ()))
    if action in exports.HANDLERS:
        if context.exporter is None:
            raise errors.internal_error()
        return exports.HANDLERS[action](context.exporter, context, body)
    if context.volumes is None or context.images is None:
        raise errors.internal_error()
    if action in _LISTS:
        return _read(action, context, body)
    return _HANDLERS[action](context, body)


def create_snapshot(context: Context, body: Body) -> Body:
    sources = [name for name in ("FileLocation", "SourceSnapshotId", "VolumeId") if name in body]
    if not sources:
        raise errors.missing_parameter("FileLocation, SourceSnapshotId or VolumeId")
    if len(sources) > 1:
        raise errors.invalid_value(" and ".join(sources), "cannot be used together")
    if "FileLocation" in body:
        _check_import(body)
    elif "SourceSnapshotId" in body:
        _check_copy(context, body)
    else:
        raise errors.no_such_volume(body["VolumeId"])
    if body.get("DryRun"):
        return {}
    start = _start_import if "FileLocation" in body else _copy
    return {"Snapshot": start(context, body).to_api()}


def _check_import(body: Body) -> None:
    if "SnapshotSize" not in body:
        raise errors.missing_parameter("SnapshotSize")
    if body["SnapshotSize"] <= 0:
        raise errors.invalid_value("SnapshotSize", "must be a positive number of bytes")
    url = urlsplit(body["FileLocation"])
    if url.scheme not in ("http", "https") or not url.netloc:
        raise errors.invalid_url("FileLocation")


def _start_import(context: Context, body: Body) -> Snapshot:
    account = context.account
    snapshot, created = context.state.start_import(
        account.account_id,
        account.alias,
        body.get("ClientToken"),
        state="in-queue",
        description=body.get("Description", ""),
        snapshot_size=body["SnapshotSize"],
        volume_size=volume_size_gib(body["SnapshotSize"]),
        file_location=body["FileLocation"],
    )
    if created:
        context.importer.submit(snapshot)
    return snapshot


def _check_copy(context: Context, body: Body) -> None:
    source_region = body.get("SourceRegionName", context.region)
    if source_region != context.region:
        raise errors.invalid_value("SourceRegionName", "must be the Region of your account")
    source = _own_snapshot(context, body["SourceSnapshotId"])
    if source.state != "completed":
        raise errors.invalid_snapshot_state(source.snapshot_id, source.state)


def _copy(context: Context, body: Body) -> Snapshot:
    """A copy is `pending` for the lifecycle delay, then `completed` (with 0: at once)."""
    source = _own_snapshot(context, body["SourceSnapshotId"])
    state = context.state
    snapshot, created = state.create_snapshot(
        context.account.account_id,
        context.account.alias,
        body.get("ClientToken"),
        state="pending",
        description=body.get("Description", source.description),
        volume_size=source.volume_size,
        volume_id=source.volume_id,
    )
    if created:
        state.lifecycle.later(lambda: _complete_copy(state, snapshot))
    return snapshot


def _complete_copy(state: CloudState, snapshot: Snapshot) -> None:
    with state.lock:
        if not snapshot.cancelled.is_set():  # set once deleted
            state.update(snapshot, state="completed", progress=100)


def _find_snapshots(context: Context, filters: Body) -> list[Body]:
    # Own snapshots, and those other accounts shared with this one, as OUTSCALE lists them.
    found = context.state.readable(context.account.account_id, _snapshot_filter(filters))
    return [snapshot.to_api() for snapshot in found]


def _read(action: str, context: Context, body: Body) -> Body:
    key, filter_types, find = _LISTS[action]
    filters = body.get("Filters", {})
    _check_params(filters, filter_types, (), prefix="Filters.")
    found = find(context, filters)
    if "ResultsPerPage" not in body:
        if "NextPageToken" in body:
            raise errors.invalid_value("NextPageToken", "requires ResultsPerPage")
        return {key: found}
    per_page = body["ResultsPerPage"]
    if not 1 <= per_page <= MAX_RESULTS_PER_PAGE:
        raise errors.invalid_value(
            "ResultsPerPage", f"must be between 1 and {MAX_RESULTS_PER_PAGE}"
        )
    fingerprint = _fingerprint(action, context.account.account_id, filters, per_page)
    start = _page_start(body.get("NextPageToken"), fingerprint)
    reply: Body = {key: found[start : start + per_page]}
    if start + per_page < len(found):
        reply["NextPageToken"] = _page_token(start + per_page, fingerprint)
    return reply


def _fingerprint(action: str, account_id: str, filters: Body, per_page: int) -> str:
    canonical = json.dumps([action, account_id, filters, per_page], sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _page_token(offset: int, fingerprint: str) -> str:
    return base64.b64encode(json.dumps({"o": offset, "f": fingerprint}).encode()).decode()


def _page_start(token: str | None, fingerprint: str) -> int:
    """Tokens carry the offset and the query they belong to, like real opaque tokens."""
    if token is None:
        return 0
    try:
        data = json.loads(base64.b64decode(token, validate=True))
        offset, owner = int(data["o"]), data["f"]
    except (binascii.Error, ValueError, TypeError, KeyError):
        raise errors.invalid_value("NextPageToken", "is not a valid page token") from None
    if owner != fingerprint or offset < 0:
        raise errors.invalid_value("NextPageToken", "does not belong to this request")
    return offset


def _snapshot_filter(filters: Body) -> Callable[[Snapshot], bool]:
    checks: list[Callable[[Snapshot], bool]] = []

    def among(name: str, value: Callable[[Snapshot], Any]) -> None:
        if name in filters:
            wanted = set(filters[name])
            checks.append(lambda s: value(s) in wanted)

    among("SnapshotIds", lambda s: s.snapshot_id)
    among("ClientTokens", lambda s: s.client_token)
    among("States", lambda s: s.state)
    among("Descriptions", lambda s: s.description)
    among("AccountIds", lambda s: s.account_id)
    among("AccountAliases", lambda s: s.account_alias)
    among("VolumeIds", lambda s: s.volume_id)
    among("VolumeSizes", lambda s: s.volume_size)
    among("Progresses", lambda s: s.progress)
    if "TagKeys" in filters:
        keys = set(filters["TagKeys"])
        checks.append(lambda s: bool(keys & s.tags.keys()))
    if "TagValues" in filters:
        values = set(filters["TagValues"])
        checks.append(lambda s: bool(values & set(s.tags.values())))
    if "Tags" in filters:
        pairs = {tuple(tag.split("=", 1)) for tag in filters["Tags"] if "=" in tag}
        checks.append(lambda s: bool(pairs & set(s.tags.items())))
    if "PermissionsToCreateVolumeGlobalPermission" in filters:
        public = filters["PermissionsToCreateVolumeGlobalPermission"]
        checks.append(lambda s: s.public is public)
    if "PermissionsToCreateVolumeAccountIds" in filters:
        grantees = set(filters["PermissionsToCreateVolumeAccountIds"])
        checks.append(lambda s: bool(grantees & set(s.permitted_account_ids)))
    if "FromCreationDate" in filters:
        start = _parse_date("FromCreationDate", filters["FromCreationDate"])
        checks.append(lambda s: s.created_at >= start)
    if "ToCreationDate" in filters:
        end = _parse_date("ToCreationDate", filters["ToCreationDate"])
        checks.append(lambda s: s.created_at <= end)
    return lambda snapshot: all(check(snapshot) for check in checks)


def _parse_date(name: str, text: str) -> dt.datetime:
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise errors.invalid_value(f"Filters.{name}", "is not an ISO 8601 date-time") from None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def delete_snapshot(context: Context, body: Body) -> Body:
    snapshot = _own_snapshot(context, body["SnapshotId"])
    omis = context.images
    if omis is None:
        raise errors.internal_error()
    # Under the lock CreateImage checks its snapshots with: no OMI can start using it meanwhile.
    with context.state.lock:
        users = omis.using(snapshot.account_id, snapshot.snapshot_id)
        if users:
            raise errors.snapshot_in_use(snapshot.snapshot_id, users[0])
        if not body.get("DryRun"):
            context.state.delete(snapshot)
    return {}


def update_snapshot(context: Context, body: Body) -> Body:
    """Adds or removes who may create volumes from the snapshot (one of the two per call)."""
    snapshot = _own_snapshot(context, body["SnapshotId"])
    changes = body["PermissionsToCreateVolume"]
    _check_params(changes, _PERMISSION_CHANGES, (), prefix="PermissionsToCreateVolume.")
    if len(changes) != 1:
        raise errors.invalid_value(
            "PermissionsToCreateVolume", "takes exactly one of Additions or Removals"
        )
    ((kind, permission),) = changes.items()
    prefix = f"PermissionsToCreateVolume.{kind}."
    _check_params(permission, _PERMISSIONS, (), prefix=prefix)
    if not permission:
        raise errors.missing_parameter(f"{prefix}AccountIds or {prefix}GlobalPermission")
    account_ids = permission.get("AccountIds", [])
    for account_id in account_ids:
        if not _ACCOUNT_ID.fullmatch(account_id):
            raise errors.invalid_value(
                f"{prefix}AccountIds", f"holds '{account_id}', which is not a 12-digit account ID"
            )
    if body.get("DryRun"):
        return {}
    context.state.change_permissions(
        snapshot,
        grant=kind == "Additions",
        account_ids=account_ids,
        everyone=permission.get("GlobalPermission", False),
    )
    return {"Snapshot": snapshot.to_api()}


def create_tags(context: Context, body: Body) -> Body:
    snapshots = _tag_targets(context, body)
    if not body.get("DryRun"):
        with context.state.lock:
            for snapshot in snapshots:
                snapshot.tags.update({tag["Key"]: tag["Value"] for tag in body["Tags"]})
    return {}


def delete_tags(context: Context, body: Body) -> Body:
    snapshots = _tag_targets(context, body)
    if not body.get("DryRun"):
        with context.state.lock:
            for snapshot in snapshots:
                for tag in body["Tags"]:
                    # An empty Value deletes the key whatever its value; a value must match.
                    if tag["Value"] in ("", snapshot.tags.get(tag["Key"])):
                        snapshot.tags.pop(tag["Key"], None)
    return {}


def _tag_targets(context: Context, body: Body) -> list[Snapshot]:
    if not body["ResourceIds"]:
        raise errors.missing_parameter("ResourceIds")
    if not body["Tags"]:
        raise errors.missing_parameter("Tags")
    for tag in body["Tags"]:
        if not 1 <= len(tag["Key"]) <= 255:
            raise errors.invalid_tag("Key", "must be between 1 and 255 characters")
        if len(tag["Value"]) > 255:
            raise errors.invalid_tag("Value", "must be at most 255 characters")
    return [_own_snapshot(context, resource_id) for resource_id in body["ResourceIds"]]


def _own_snapshot(context: Context, snapshot_id: str) -> Snapshot:
    if not snapshot_id.startswith("snap-"):
        raise errors.invalid_id_prefix(snapshot_id)
    snapshot = context.state.get(context.account.account_id, snapshot_id)
    if snapshot is None:
        raise errors.no_such_snapshot(snapshot_id)
    return snapshot


def _check_params(
    body: Body, types: dict[str, str], required: tuple[str, ...], prefix: str = ""
) -> None:
    for name, value in body.items():
        if name not in types:
            raise errors.unknown_parameter(prefix + name)
        if not _has_type(value, types[name]):
            raise errors.invalid_type(prefix + name, _TYPE_NAMES[types[name]])
    for name in required:
        if name not in body:
            raise errors.missing_parameter(prefix + name)


def _has_type(value: Any, kind: str) -> bool:
    if kind == "string":
        return isinstance(value, str)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "object":
        return isinstance(value, dict)
    if kind == "strings":
        return isinstance(value, list) and all(isinstance(item, str) for item in value)
    if kind == "integers":
        return isinstance(value, list) and all(_has_type(item, "integer") for item in value)
    if kind == "objects":
        return isinstance(value, list) and all(isinstance(item, dict) for item in value)
    return isinstance(value, list) and all(_is_tag(item) for item in value)


def _is_tag(item: Any) -> bool:
    return (
        isinstance(item, dict)
        and set(item) == {"Key", "Value"}
        and all(isinstance(part, str) for part in item.values())
    )


_HANDLERS: dict[str, Handler] = {
    "CreateSnapshot": create_snapshot,
    "DeleteSnapshot": delete_snapshot,
    "UpdateSnapshot": update_snapshot,
    "CreateTags": create_tags,
    "DeleteTags": delete_tags,
    **volumes.HANDLERS,
    **images.HANDLERS,
}
_LISTS: dict[str, Lister] = {
    "ReadSnapshots": ("Snapshots", _FILTERS, _find_snapshots),
    **volumes.LISTS,
    **images.LISTS,
}
