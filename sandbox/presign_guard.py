"""A WSGI middleware that checks pre-signed S3 URLs before moto sees them.

moto's server accepts any pre-signed URL, expired or tampered; OOS does not. This guard
verifies SigV4 (`X-Amz-*`) and SigV2 (`AWSAccessKeyId`, `Expires`, `Signature`) query
signatures against the store's key, written from AWS's documentation.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import re
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl
from xml.sax.saxutils import escape

from sandbox.signing import canonical_query

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WsgiApp = Callable[[Environ, StartResponse], Iterable[bytes]]

MAX_V4_EXPIRES = 7 * 24 * 3600
# Query parameters that are part of a SigV2 canonical resource (sub-resources and overrides).
_V2_SUBRESOURCES = frozenset({
    "acl", "cors", "delete", "lifecycle", "location", "logging", "notification", "partNumber",
    "policy", "requestPayment", "response-cache-control", "response-content-disposition",
    "response-content-encoding", "response-content-language", "response-content-type",
    "response-expires", "restore", "tagging", "torrent", "uploadId", "uploads", "versionId",
    "versioning", "versions", "website",
})  # fmt: skip
_CREDENTIAL = re.compile(r"^(?P<ak>[^/]+)/(?P<scope>\d{8}/[^/]+/s3/aws4_request)$")


class Refused(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class PresignGuard:
    """Lets through requests signed in headers (the sandbox's own boto3 calls) or with a
    valid pre-signed query; refuses anonymous, expired and tampered requests with 403."""

    def __init__(
        self, app: WsgiApp, keys: Mapping[str, str], clock: Callable[[], float] = time.time
    ):
        self._app = app
        # Kept by reference: the store adds each sandbox account's keys, as OOS accepts them.
        self._keys = keys
        self._clock = clock

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        try:
            self._check(environ)
        except Refused as refusal:
            return _error(start_response, refusal)
        return self._app(environ, start_response)

    def _check(self, environ: Environ) -> None:
        if environ.get("HTTP_AUTHORIZATION"):
            return
        query = dict(parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True))
        if "X-Amz-Signature" in query:
            self._check_v4(environ, query)
        elif "Signature" in query:
            self._check_v2(environ, query)
        else:
            raise Refused(403, "AccessDenied", "Access Denied")

    def _check_v4(self, environ: Environ, query: dict[str, str]) -> None:
        if query.get("X-Amz-Algorithm") != "AWS4-HMAC-SHA256":
            raise Refused(400, "AuthorizationQueryParametersError", "Unsupported algorithm.")
        credential = _CREDENTIAL.match(query.get("X-Amz-Credential", ""))
        try:
            signed_at = dt.datetime.strptime(query["X-Amz-Date"], "%Y%m%dT%H%M%SZ")
            expires = int(query["X-Amz-Expires"])
        except (KeyError, ValueError):
            raise Refused(
                400, "AuthorizationQueryParametersError", "X-Amz-Date or X-Amz-Expires is invalid."
            ) from None
        if credential is None or not query.get("X-Amz-SignedHeaders"):
            raise Refused(400, "AuthorizationQueryParametersError", "X-Amz-Credential is invalid.")
        if not 1 <= expires <= MAX_V4_EXPIRES:
            raise Refused(
                400,
                "AuthorizationQueryParametersError",
                "X-Amz-Expires must be between 1 and 604800 seconds.",
            )
        secret = self._secret(credential["ak"])
        deadline = signed_at.replace(tzinfo=dt.UTC).timestamp() + expires
        if self._clock() > deadline:
            raise Refused(403, "AccessDenied", "Request has expired")
        expected = _v4_signature(environ, query, secret, credential["scope"])
        if not hmac.compare_digest(expected, query["X-Amz-Signature"]):
            raise _mismatch()

    def _check_v2(self, environ: Environ, query: dict[str, str]) -> None:
        try:
            expires = int(query["Expires"])
            access_key = query["AWSAccessKeyId"]
        except (KeyError, ValueError):
            raise Refused(
                403, "AccessDenied", "Query-string authentication is malformed."
            ) from None
        secret = self._secret(access_key)
        if self._clock() > expires:
            raise Refused(403, "AccessDenied", "Request has expired")
        expected = _v2_signature(environ, query, secret, expires)
        if not hmac.compare_digest(expected, query["Signature"]):
            raise _mismatch()

    def _secret(self, access_key: str) -> str:
        if access_key not in self._keys:
            raise Refused(
                403,
                "InvalidAccessKeyId",
                "The AWS Access Key Id you provided does not exist in our records.",
            )
        return self._keys[access_key]


def _mismatch() -> Refused:
    # Real S3 echoes the provided signature here; the sandbox never repeats it.
    return Refused(
        403,
        "SignatureDoesNotMatch",
        "The request signature we calculated does not match the signature you provided.",
    )


def _raw_path(environ: Environ) -> str:
    """The path exactly as the client sent it (still percent-encoded), which is what S3 signs."""
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI") or environ.get("PATH_INFO", "/")
    return str(raw).split("?", 1)[0] or "/"


def _v4_signature(environ: Environ, query: dict[str, str], secret: str, scope: str) -> str:
    signed_headers = query["X-Amz-SignedHeaders"].split(";")
    raw_query = "&".join(
        part
        for part in environ.get("QUERY_STRING", "").split("&")
        if part and not part.startswith("X-Amz-Signature=")
    )
    headers = "".join(f"{name}:{_header(environ, name)}\n" for name in signed_headers)
    payload = environ.get("HTTP_X_AMZ_CONTENT_SHA256", "UNSIGNED-PAYLOAD")
    canonical = "\n".join((
        environ["REQUEST_METHOD"], _raw_path(environ), canonical_query(raw_query), headers,
        ";".join(signed_headers), payload,
    ))  # fmt: skip
    string_to_sign = "\n".join((
        "AWS4-HMAC-SHA256", query["X-Amz-Date"], scope,
        hashlib.sha256(canonical.encode()).hexdigest(),
    ))  # fmt: skip
    key = ("AWS4" + secret).encode()
    for part in scope.split("/"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()


def _v2_signature(environ: Environ, query: dict[str, str], secret: str, expires: int) -> str:
    amz_headers = sorted(
        (key[5:].lower().replace("_", "-"), " ".join(str(value).split()))
        for key, value in environ.items()
        if key.startswith("HTTP_X_AMZ_")
    )
    subresources = sorted(
        (name, value) for name, value in query.items() if name in _V2_SUBRESOURCES
    )
    resource = _raw_path(environ)
    if subresources:
        resource += "?" + "&".join(
            f"{name}={value}" if value else name for name, value in subresources
        )
    string_to_sign = "\n".join((
        environ["REQUEST_METHOD"], environ.get("HTTP_CONTENT_MD5", ""),
        environ.get("CONTENT_TYPE", ""), str(expires),
        "".join(f"{name}:{value}\n" for name, value in amz_headers) + resource,
    ))  # fmt: skip
    digest = hmac.new(secret.encode(), string_to_sign.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def _header(environ: Environ, name: str) -> str:
    if name == "host":
        value = environ.get("HTTP_HOST", "")
    elif name == "content-type":
        value = environ.get("CONTENT_TYPE", "")
    else:
        value = environ.get("HTTP_" + name.upper().replace("-", "_"), "")
    return " ".join(str(value).split())


def _error(start_response: StartResponse, refusal: Refused) -> list[bytes]:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{escape(refusal.code)}</Code><Message>{escape(refusal.message)}</Message>"
        "<RequestId>sandbox</RequestId></Error>"
    ).encode()
    reason = {400: "Bad Request", 403: "Forbidden"}.get(refusal.status, "Error")
    start_response(
        f"{refusal.status} {reason}",
        [("Content-Type", "application/xml"), ("Content-Length", str(len(body)))],
    )
    return [body]
