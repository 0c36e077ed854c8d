from __future__ import annotations

import re
import ssl
import time
from dataclasses import dataclass, field
from typing import Any, TypedDict, Unpack

import requests
from urllib3.exceptions import (
    HTTPError,
    MaxRetryError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
)

from importer.core.net import guard
from importer.core.net.guard import (
    ForbiddenAddress,
    GuardRefusal,
    Policy,
    Target,
    UnresolvedHostError,
    system_resolver,
)
from importer.core.net.session import guarded_session, read_until
from importer.presigned.sniff import ImageInfo, sniff_image
from importer.presigned.urls import PresignedUrl, PresignedUrlError, UrlPolicy, checked_target


class InspectionError(Exception):
    """Reading the first bytes of the object failed. The message never holds the secret."""


class ForbiddenAddressError(InspectionError):
    """The URL's host resolves to an internal address: such a URL must not be imported."""


@dataclass(frozen=True)
class ObjectHead:
    status: int
    total_size: int | None
    first_bytes: bytes = field(repr=False)


@dataclass(frozen=True)
class Inspection:
    """Either ``info`` (what the header says) or ``warning`` (why we could not tell)."""

    info: ImageInfo | None
    warning: str | None
    head: ObjectHead | None = field(default=None, repr=False)
    # Set when the host resolves to an internal address: the form refuses the URL.
    refusal: str | None = None


Resolver = guard.Resolver


class HeadOptions(TypedDict, total=False):
    """How `read_object_head` reads, beside the URL and the policy (its defaults apply)."""

    max_bytes: int
    timeout: float
    resolver: Resolver
    ssl_context: ssl.SSLContext | None


def read_object_head(
    url: PresignedUrl,
    *,
    policy: UrlPolicy,
    max_bytes: int = 65536,
    timeout: float = 5.0,
    resolver: Resolver = system_resolver,
    ssl_context: ssl.SSLContext | None = None,
) -> ObjectHead:
    """Ranged GET of the first ``max_bytes`` of the object, on an address checked beforehand.

    ``ssl_context`` replaces the default trust store (tests use it with their own CA).
    """
    if max_bytes < 1:
        raise ValueError("max_bytes must be positive")
    outbound = policy.outbound(resolver=resolver, ssl_context=ssl_context, timeout=timeout)
    # Re-check from the secret URL itself: the PresignedUrl fields could have been edited.
    target = _inspectable_target(url.secret_url, outbound)
    session = guarded_session(outbound)
    host = target.host
    try:
        response = session.get(
            url.secret_url,
            headers={
                "Range": f"bytes=0-{max_bytes - 1}",
                "User-Agent": "snapshots-portal-inspector",
            },
            stream=True,
            timeout=(timeout, timeout),
        )
    except requests.RequestException as error:
        raise _fetch_error(error, host, timeout) from None
    try:
        _check_status(response.status_code, host)
        # Only the first bytes matter: a body shorter than its Content-Length is still usable.
        response.raw.enforce_content_length = False
        deadline = time.monotonic() + timeout
        first_bytes = read_until(response.raw, max_bytes, deadline, decode_content=False)
        if first_bytes is None:
            raise InspectionError("The object store is sending too slowly; gave up.")
    except ReadTimeoutError:
        raise InspectionError(f"{host} did not answer within {timeout:g} s.") from None
    except (ProtocolError, HTTPError, OSError):
        raise InspectionError(f"The connection to {host} failed while reading.") from None
    finally:
        response.close()
    return ObjectHead(
        status=response.status_code,
        total_size=_total_size(response.status_code, response.headers),
        first_bytes=first_bytes,
    )


def _inspectable_target(secret_url: str, outbound: Policy) -> Target:
    # The guarded session checks again, resolves once and checks every address before dialling.
    try:
        return checked_target(secret_url, outbound)
    except PresignedUrlError as error:
        raise InspectionError(f"Refused to inspect this URL: {error}") from None


def _fetch_error(error: requests.RequestException, host: str, timeout: float) -> InspectionError:
    reason = getattr(error, "reason", None)
    if isinstance(reason, ForbiddenAddress):
        # The name resolved elsewhere between the check and the dial: still refused.
        return ForbiddenAddressError(str(reason))
    if isinstance(error, GuardRefusal | UnresolvedHostError):
        return InspectionError(str(error))
    if isinstance(error, requests.ConnectTimeout):
        return InspectionError(f"Timed out connecting to {host} after {timeout:g} s.")
    if isinstance(error, requests.ReadTimeout):
        return InspectionError(f"{host} did not answer within {timeout:g} s.")
    if isinstance(error, requests.exceptions.SSLError):
        return InspectionError(
            f"The TLS certificate of {host} could not be verified: refusing to read from it."
        )
    cause = error.args[0] if error.args else None
    if isinstance(cause, MaxRetryError) and isinstance(cause.reason, NewConnectionError):
        return InspectionError(f"Could not connect to {host}.")
    return InspectionError(f"The connection to {host} failed while reading.")


def _check_status(status: int, host: str) -> None:
    if status in (200, 206):
        return
    if 300 <= status < 400:
        raise InspectionError(
            f"{host} answered with a redirect (HTTP {status}); redirects are not followed. "
            "Use the URL of the object store that holds the object."
        )
    if status == 403:
        raise InspectionError(
            "The object store refused the URL: expired or not signed for GET (HTTP 403)."
        )
    if status == 404:
        raise InspectionError(
            "The object store has no such bucket or object (HTTP 404): check the bucket and key."
        )
    if status == 416:
        raise InspectionError("The object is empty (HTTP 416): there is nothing to import.")
    raise InspectionError(f"The object store answered HTTP {status}.")


_CONTENT_RANGE_RE = re.compile(r"bytes\s+(?:\d+-\d+|\*)/(\d{1,19})")


def _total_size(status: int, headers: Any) -> int | None:
    if status == 206:
        match = _CONTENT_RANGE_RE.fullmatch(str(headers.get("Content-Range", "")).strip())
        return int(match[1]) if match else None
    length = str(headers.get("Content-Length", "")).strip()
    return int(length) if length.isdigit() and len(length) <= 19 else None


def inspect_presigned_url(
    url: PresignedUrl, *, policy: UrlPolicy, **options: Unpack[HeadOptions]
) -> Inspection:
    """Fetch the first bytes and sniff them. A failure is a warning, never a block."""
    try:
        head = read_object_head(url, policy=policy, **options)
    except ForbiddenAddressError as error:
        # Not a passing problem: whoever fetches this URL would reach an internal address.
        message = f"The object could not be inspected: {error} Use a URL of a public object store."
        return Inspection(info=None, warning=message, refusal=message)
    except InspectionError as error:
        return Inspection(
            info=None,
            warning=f"The object could not be inspected: {error} You can still import it; "
            "enter the snapshot size yourself.",
        )
    return Inspection(
        info=sniff_image(head.first_bytes, object_size=head.total_size), warning=None, head=head
    )
