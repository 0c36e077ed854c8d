from __future__ import annotations

import re
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal
from urllib.parse import parse_qsl, quote, unquote

from importer.core.net.guard import (
    DestinationRefused,
    Policy,
    Resolver,
    Target,
    check_url,
    system_resolver,
)
from importer.core.redaction import AMZ_DATE_FORMAT, SIGV4_MAX_EXPIRES, iso, redact_url
from importer.outscale.regions import OOS_HOSTS, OUTSCALE_REGIONS

_PRESIGN_HINT = "aws s3 presign s3://BUCKET/KEY --expires-in 86400 --endpoint https://oos.eu-west-2.outscale.com"


class PresignedUrlError(ValueError):
    """A pasted URL cannot be used. The message says why and how to fix it, never the secret."""


@dataclass(frozen=True)
class UrlPolicy:
    """What URLs are accepted.

    ``extra_hosts`` entries are ``host`` (default port only) or ``host:port``.
    """

    extra_hosts: tuple[str, ...] = ()
    allow_http: bool = False
    max_length: int = 4096
    expiry_warning: timedelta = timedelta(hours=1)

    def __post_init__(self) -> None:
        # Fail at configuration time rather than on the first pasted URL.
        self.outbound()

    def outbound(
        self,
        *,
        resolver: Resolver = system_resolver,
        ssl_context: ssl.SSLContext | None = None,
        timeout: float = 5.0,
    ) -> Policy:
        """The outbound guard's rules for object stores: OOS hosts plus the extra hosts."""
        return Policy(
            purpose="object store",
            example="https://oos.eu-west-2.outscale.com/BUCKET/KEY?...",
            hosts=OOS_HOSTS,
            bucket_hosts=OOS_HOSTS,
            extra_hosts=self.extra_hosts,
            allow_http=self.allow_http,
            connect_timeout=timeout,
            read_timeout=timeout,
            total_timeout=2 * timeout,
            resolver=resolver,
            ssl_context=ssl_context,
            extra_hosts_setting="PORTAL_URL_HOSTS",
            allowed_hint=(
                "Use a pre-signed URL from OUTSCALE Object Storage: "
                "https://oos.<region>.outscale.com/BUCKET/KEY, where <region> is one of "
                f"{', '.join(OUTSCALE_REGIONS)}"
            ),
        )


@dataclass(frozen=True)
class PresignedUrl:
    scheme: str
    host: str
    port: int
    bucket: str
    key: str
    style: Literal["sigv4", "sigv2"]
    expires_at: datetime
    warnings: tuple[str, ...]
    secret_url: str = field(repr=False)

    @property
    def redacted(self) -> str:
        return redact_url(self.secret_url)


_PATH_BUCKET_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}")


_SIGV4_SIGNATURE_RE = re.compile(r"[0-9a-fA-F]{64}")


_SIGV4_PARAMS = (
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Date",
    "X-Amz-Expires",
    "X-Amz-SignedHeaders",
    "X-Amz-Signature",
)


_SIGV2_PARAMS = ("AWSAccessKeyId", "Expires", "Signature")


def parse_presigned_url(raw: str, *, policy: UrlPolicy, now: datetime) -> PresignedUrl:
    """Check a pasted pre-signed URL against ``policy``; surrounding whitespace is ignored."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    text = raw.strip()
    _check_text(text, policy)
    target = checked_target(text, policy.outbound())
    bucket, key = _bucket_and_key(target.path, _virtual_bucket(target))
    params = _query_params(target.query)
    style, expires_at = _check_signature(params)
    if expires_at <= now:
        raise PresignedUrlError(
            f"This pre-signed URL expired at {iso(expires_at)}. Generate a new one "
            f"(for example: {_PRESIGN_HINT}) and paste it here."
        )
    return PresignedUrl(
        scheme=target.scheme,
        host=target.host,
        port=target.port,
        bucket=bucket,
        key=key,
        style=style,
        expires_at=expires_at,
        warnings=_warnings(target, expires_at, policy, now),
        secret_url=text,
    )


def _check_text(text: str, policy: UrlPolicy) -> None:
    # The outbound guard checks the characters; these two need the presign hint.
    if not text:
        raise PresignedUrlError(f"Paste the pre-signed URL of the object ({_PRESIGN_HINT}).")
    if len(text) > policy.max_length:
        raise PresignedUrlError(
            f"This URL is {len(text)} characters long; at most {policy.max_length} are accepted. "
            "Paste only the pre-signed URL, once."
        )


def checked_target(text: str, outbound: Policy) -> Target:
    """The outbound guard's verdict on the URL, as a message of the IMPORT SNAPSHOT dialog."""
    try:
        return check_url(text, outbound)
    except DestinationRefused as refusal:
        raise PresignedUrlError(str(refusal)) from None


def _virtual_bucket(target: Target) -> str | None:
    """The bucket of a virtual-hosted OOS URL (https://BUCKET.oos.<region>.outscale.com/KEY)."""
    bucket, _, endpoint = target.host.partition(".")
    if target.host not in OOS_HOSTS and endpoint in OOS_HOSTS and not target.exact:
        return bucket
    return None


def _bucket_and_key(path: str, virtual_bucket: str | None) -> tuple[str, str]:
    decoded_segments = unquote(path).split("/")
    if any(segment in {".", ".."} for segment in decoded_segments):
        raise PresignedUrlError(
            "The URL path contains '.' or '..' segments. Use the plain /BUCKET/KEY path printed "
            "by the presign command."
        )
    if virtual_bucket is not None:
        bucket, raw_key = virtual_bucket, path[1:]
    else:
        raw_bucket, _, raw_key = path[1:].partition("/")
        bucket = unquote(raw_bucket)
        if not _PATH_BUCKET_RE.fullmatch(bucket):
            raise PresignedUrlError(
                "The URL does not name a bucket. It must look like "
                "https://oos.eu-west-2.outscale.com/BUCKET/KEY?..."
            )
    key = unquote(raw_key)
    if not key:
        raise PresignedUrlError(
            f"The URL points at the bucket {bucket}, not at an object. Pre-sign the object itself "
            "(s3://BUCKET/KEY)."
        )
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in key):
        raise PresignedUrlError("The object key contains control characters. Rename the object.")
    return bucket, key


def _query_params(query: str) -> dict[str, str]:
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=True, max_num_fields=64)
    except ValueError:
        raise PresignedUrlError(
            "The query string of the URL (after '?') is malformed or truncated. Copy the whole "
            "URL again."
        ) from None
    params: dict[str, str] = {}
    for name, value in pairs:
        lowered = name.lower()
        if lowered in params:
            raise PresignedUrlError(
                f"The parameter {_safe_name(name)} appears more than once. Copy the URL again "
                "without editing it."
            )
        params[lowered] = value
    return params


def _safe_name(name: str) -> str:
    return quote(name[:40], safe="-_.")


def _check_signature(params: dict[str, str]) -> tuple[Literal["sigv4", "sigv2"], datetime]:
    has_v4 = any(name.lower() in params for name in _SIGV4_PARAMS)
    has_v2 = "awsaccesskeyid" in params or "signature" in params
    if has_v4 and has_v2:
        raise PresignedUrlError(
            "The URL mixes two signature versions (X-Amz-* and AWSAccessKeyId/Signature). "
            "Generate a fresh pre-signed URL and paste it unchanged."
        )
    if has_v4:
        return "sigv4", _check_sigv4(params)
    if has_v2 or "expires" in params:
        return "sigv2", _check_sigv2(params)
    raise PresignedUrlError(
        "This URL is not pre-signed: it has no signature. Generate one with "
        f"{_PRESIGN_HINT} and paste the whole URL, including everything after '?'."
    )


def _require(params: dict[str, str], names: Sequence[str]) -> None:
    missing = [name for name in names if not params.get(name.lower())]
    if missing:
        raise PresignedUrlError(
            f"The pre-signed URL is incomplete: {', '.join(missing)} is missing or empty. "
            "Copy the whole URL, including everything after '?'."
        )


def _check_sigv4(params: dict[str, str]) -> datetime:
    _require(params, _SIGV4_PARAMS)
    if params["x-amz-algorithm"] != "AWS4-HMAC-SHA256":
        raise PresignedUrlError(
            "X-Amz-Algorithm must be AWS4-HMAC-SHA256. Generate the URL with a standard S3 tool."
        )
    try:
        signed_at = datetime.strptime(params["x-amz-date"], AMZ_DATE_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        raise PresignedUrlError(
            "X-Amz-Date is malformed (expected YYYYMMDDTHHMMSSZ). Copy the URL again without "
            "editing it."
        ) from None
    expires = params["x-amz-expires"]
    if not (expires.isdigit() and len(expires) <= 7 and 1 <= int(expires) <= SIGV4_MAX_EXPIRES):
        raise PresignedUrlError(
            f"X-Amz-Expires must be a number of seconds between 1 and {SIGV4_MAX_EXPIRES} "
            "(one week). Generate the URL again with a valid --expires-in."
        )
    credential = params["x-amz-credential"].split("/")
    if (
        len(credential) != 5
        or not credential[0]
        or credential[1] != params["x-amz-date"][:8]
        or credential[3] != "s3"
        or credential[4] != "aws4_request"
    ):
        raise PresignedUrlError(
            "X-Amz-Credential is malformed. Copy the URL again without editing it."
        )
    if "host" not in params["x-amz-signedheaders"].split(";"):
        raise PresignedUrlError(
            "X-Amz-SignedHeaders must include host. Generate the URL with a standard S3 tool."
        )
    if not _SIGV4_SIGNATURE_RE.fullmatch(params["x-amz-signature"]):
        raise PresignedUrlError(
            "X-Amz-Signature is malformed or truncated. Copy the whole URL again."
        )
    return signed_at + timedelta(seconds=int(expires))


def _check_sigv2(params: dict[str, str]) -> datetime:
    _require(params, _SIGV2_PARAMS)
    expires = params["expires"]
    if not (expires.isdigit() and len(expires) <= 11):
        raise PresignedUrlError(
            "Expires must be a Unix timestamp in seconds. Copy the URL again without editing it."
        )
    return datetime.fromtimestamp(int(expires), tz=UTC)


def _warnings(
    target: Target, expires_at: datetime, policy: UrlPolicy, now: datetime
) -> tuple[str, ...]:
    warnings = []
    remaining = expires_at - now
    if remaining < policy.expiry_warning:
        minutes = max(1, int(remaining.total_seconds() // 60))
        warnings.append(
            f"This URL expires in {minutes} minute{'s' if minutes > 1 else ''} "
            f"(at {iso(expires_at)}). The import fails if OUTSCALE cannot read the whole object "
            "before then: for a large image, generate a URL valid for longer "
            "(for example --expires-in 86400)."
        )
    if target.scheme == "http":
        warnings.append("This URL uses plain http://, acceptable only for a local sandbox.")
    return tuple(warnings)
