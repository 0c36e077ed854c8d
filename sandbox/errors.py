"""OUTSCALE-shaped API errors.

Codes, types and HTTP statuses follow OUTSCALE's errors page (docs.outscale.com/api-errors.html)
and the code table shipped with osc-sdk-python (resources/gateway_errors.yaml).
"""

from __future__ import annotations

import uuid
from typing import Any


class OscError(Exception):
    """An error the API answers with `{"Errors": [...], "ResponseContext": {...}}`."""

    def __init__(self, status: int, code: str, type_: str, details: str) -> None:
        super().__init__(f"{status} {code} {type_}: {details}")
        self.status = status
        self.code = code
        self.type = type_
        self.details = details

    def body(self, request_id: str | None = None) -> dict[str, Any]:
        return {
            "Errors": [{"Code": self.code, "Type": self.type, "Details": self.details}],
            "ResponseContext": {"RequestId": request_id or new_request_id()},
        }


def new_request_id() -> str:
    return str(uuid.uuid4())


def authentication_failed(details: str) -> OscError:
    return OscError(401, "1", "AccessDenied", f"ErrorAuthenticationFailed: {details}")


def unknown_authorization_type() -> OscError:
    return OscError(
        401,
        "12",
        "AccessDenied",
        "ErrorUnknownAuthorizationType: The authentication type specified in the "
        "Authorization header is unknown.",
    )


def throttled(status: int) -> OscError:
    """429 is per-account/per-call throttling (codes 24/25); 503 is the whole platform (6)."""
    if status == 503:
        return OscError(
            503, "6", "AccessDenied", "ErrorOperationThrottledWholePlatform: Request rate exceeded."
        )
    return OscError(
        429, "24", "AccessDenied", "ErrorOperationThrottledPerAccount: Request rate exceeded."
    )


def throttled_per_call() -> OscError:
    return OscError(
        429, "25", "AccessDenied", "ErrorOperationThrottledPerCall: Request rate exceeded."
    )


def too_many_concurrent_imports(limit: int) -> OscError:
    """OUTSCALE answers a quota with the type `TooManyResources (QuotaExceded)` and a code of
    the 10000s; which code means "too many snapshot imports at once" is not published, so this
    one is the sandbox's own."""
    return OscError(
        400,
        "10029",
        "TooManyResources (QuotaExceded)",
        f"ErrorTooManyConcurrentSnapshotImports: the account already has {limit} snapshot "
        "imports in progress.",
    )


def internal_error() -> OscError:
    return OscError(500, "2000", "InternalError", "ErrorInternalError: An internal error occurred.")


def unknown_action(action: str) -> OscError:
    return OscError(400, "0", "DefaultError", f"ErrorDefaultError: Unknown action '{action}'.")


def method_not_allowed() -> OscError:
    return OscError(405, "2", "AccessDenied", "ErrorHttpMethodNotAllowed")


def missing_parameter(name: str) -> OscError:
    return OscError(400, "7000", "MissingParameter", f"Parameter '{name}' is required.")


def unknown_parameter(name: str) -> OscError:
    return OscError(
        400, "4045", "InvalidParameterValue", f"invalid-parameter: Unknown parameter '{name}'."
    )


def invalid_type(name: str, expected: str) -> OscError:
    return OscError(
        400,
        "4108",
        "InvalidParameterValue",
        f"invalid-parameter-type: Value of parameter '{name}' must be of type {expected}.",
    )


def invalid_value(name: str, why: str) -> OscError:
    return OscError(
        400, "4047", "InvalidParameterValue", f"invalid-parameter-value: '{name}' {why}."
    )


def invalid_url(name: str) -> OscError:
    return OscError(
        400, "4075", "InvalidParameterValue", f"invalid-url-format: '{name}' is not a valid URL."
    )


def invalid_id_prefix(resource_id: str) -> OscError:
    return OscError(
        400, "4104", "InvalidParameterValue", f"invalid-id-prefix: Invalid ID '{resource_id}'."
    )


def invalid_tag(name: str, why: str) -> OscError:
    code = "4069" if name == "Key" else "4070"
    kind = "invalid-tag-key" if name == "Key" else "invalid-tag-value"
    return OscError(400, code, "InvalidParameterValue", f"{kind}: Tag {name} {why}.")


def no_such_snapshot(snapshot_id: str) -> OscError:
    return OscError(
        400,
        "5054",
        "InvalidResource",
        f"no-such-snapshot: The snapshot '{snapshot_id}' does not exist.",
    )


def no_such_volume(volume_id: str) -> OscError:
    return OscError(
        400, "5064", "InvalidResource", f"no-such-volume: The volume '{volume_id}' does not exist."
    )


def invalid_snapshot_state(snapshot_id: str, state: str) -> OscError:
    return OscError(
        409,
        "6003",
        "InvalidState",
        f"invalid-state: The snapshot '{snapshot_id}' is in state '{state}'.",
    )


# --- Volumes, OMIs and snapshot permissions ---------------------------------------------------


def invalid_volume_size(name: str, why: str) -> OscError:
    return OscError(400, "4078", "InvalidParameterValue", f"invalid-volume-size: '{name}' {why}.")


def invalid_iops(name: str, why: str) -> OscError:
    return OscError(400, "4029", "InvalidParameterValue", f"invalid-iops: '{name}' {why}.")


def invalid_image_name(name: str, why: str) -> OscError:
    return OscError(
        400, "4026", "InvalidParameterValue", f"invalid-image-name: The name '{name}' {why}."
    )


def invalid_device_name(name: str, device: str) -> OscError:
    return OscError(
        400,
        "4019",
        "InvalidParameterValue",
        f"invalid-device-name: '{name}' is '{device}', not /dev/sda1, /dev/sdX[X] or /dev/xvdX[X].",
    )


def invalid_block_device_mapping(name: str, why: str) -> OscError:
    return OscError(400, "4011", "InvalidParameterValue", f"invalid-bdm: '{name}' {why}.")


def invalid_root_mapping(why: str) -> OscError:
    return OscError(
        400, "4057", "InvalidParameterValue", f"invalid-root-mapping: 'RootDeviceName' {why}."
    )


def no_such_image(image_id: str) -> OscError:
    return OscError(
        400, "5023", "InvalidResource", f"no-such-image: The OMI '{image_id}' does not exist."
    )


def no_such_vm(vm_id: str) -> OscError:
    return OscError(400, "5063", "InvalidResource", f"no-such-vm: The VM '{vm_id}' does not exist.")


def duplicate_image_name(name: str, image_id: str) -> OscError:
    """OMI names are unique per account: a retried CreateImage meets its own first OMI here."""
    return OscError(
        409,
        "9015",
        "ResourceConflict",
        f"duplicate-name: An OMI named '{name}' already exists ({image_id}).",
    )


def snapshot_in_use(snapshot_id: str, image_id: str) -> OscError:
    return OscError(
        409,
        "9002",
        "ResourceConflict",
        f"busy: The snapshot '{snapshot_id}' is in use by the OMI '{image_id}'; delete the OMI "
        "first.",
    )
