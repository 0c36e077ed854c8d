"""Validate OUTSCALE API bodies against the official OpenAPI spec (outscale.yaml).

`validate_request(action, body)` and `validate_response(action, body, status)` raise
`jsonschema.ValidationError` when a body strays from the spec (which forbids extra fields).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import yaml
from openapi_schema_validator import OAS30Validator, oas30_format_checker

# The spec lives in shared/reference beside the project checkout (as in CI), unless told; a
# clone made elsewhere on a workplace machine finds the workplace's copy.
_CANDIDATES = (
    Path(__file__).resolve().parents[3] / "shared" / "reference" / "outscale.yaml",
    Path("/work/shared/reference/outscale.yaml"),
)
SPEC_PATH = Path(
    os.environ.get("OUTSCALE_SPEC")
    or next((path for path in _CANDIDATES if path.exists()), _CANDIDATES[0])
)


@functools.cache
def load_spec() -> dict[str, Any]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with SPEC_PATH.open(encoding="utf-8") as handle:
        spec: dict[str, Any] = yaml.load(handle, Loader=loader)  # noqa: S506 - a safe loader
    return spec


@functools.cache
def _validator(schema_name: str) -> OAS30Validator:
    # Refs like "#/components/schemas/X" resolve inside this wrapper document.
    schema = {
        "$ref": f"#/components/schemas/{schema_name}",
        "components": load_spec()["components"],
    }
    return OAS30Validator(schema, format_checker=oas30_format_checker)


def _operation(action: str) -> dict[str, Any]:
    try:
        operation: dict[str, Any] = load_spec()["paths"][f"/{action}"]["post"]
    except KeyError:
        raise KeyError(f"outscale.yaml has no action {action!r}") from None
    return operation


def _schema_name(schema: dict[str, Any]) -> str:
    return str(schema["$ref"]).rsplit("/", 1)[-1]


def request_schema_name(action: str) -> str:
    content = _operation(action)["requestBody"]["content"]["application/json"]
    return _schema_name(content["schema"])


def response_schema_name(action: str, status: int) -> str:
    """The spec's schema for `status`; errors the spec does not list (429, 503) use
    ErrorResponse, which is what the API answers them with."""
    responses = _operation(action)["responses"]
    if str(status) in responses:
        return _schema_name(responses[str(status)]["content"]["application/json"]["schema"])
    if status >= 400:
        return "ErrorResponse"
    raise KeyError(f"outscale.yaml lists no {status} response for {action}")


def validate_request(action: str, body: dict[str, Any]) -> None:
    _validator(request_schema_name(action)).validate(body)


def validate_response(action: str, body: dict[str, Any], status: int = 200) -> None:
    _validator(response_schema_name(action, status)).validate(body)
    if status >= 400 and not body.get("Errors"):
        raise AssertionError(f"an error response ({status}) without Errors: {body}")
