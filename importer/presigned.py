"""Pre-signed URL parsing, redaction, expiry, image header sniffing and one guarded fetch.

Pure module: no Django imports and no settings reads; every policy value comes in as an argument.

The signature of a pre-signed URL is a bearer secret. Outside ``PresignedUrl.secret_url`` the URL
only ever travels in its redacted form, produced by :func:`redact_url`::

    https://oos.eu-west-2.outscale.com/bucket/key.qcow2.gz?expires=2026-11-28T10:00:00Z

scheme, host, port (when not the default), bucket and key, then ``?expires=<UTC ISO 8601>`` when
the expiry can be read, or ``?[redacted]`` when there was a query whose expiry cannot be read.
User-info and fragments are always dropped; when the part before the query itself looks like it
carries signature material, the path is replaced by ``/[redacted]``.
"""

from __future__ import annotations

import logging
import re
import ssl
import struct
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from urllib.parse import parse_qsl, quote, unquote

import requests
from urllib3.exceptions import (
    HTTPError,
    MaxRetryError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
)

from importer import net

__all__ = [
    "OOS_HOSTS",
    "OUTSCALE_REGIONS",
    "ImageInfo",
    "Inspection",
    "InspectionError",
    "ObjectHead",
    "PresignedUrl",
    "PresignedUrlError",
    "SignatureRedactingFilter",
    "UrlPolicy",
    "format_gib",
    "inspect_presigned_url",
    "parse_presigned_url",
    "read_object_head",
    "redact_text",
    "redact_url",
    "sniff_image",
]

# Public OUTSCALE Regions (docs.outscale.com, "Regions, Endpoints and Subregions Reference").
OUTSCALE_REGIONS: tuple[str, ...] = (
    "eu-west-2",
    "us-east-2",
    "us-west-1",
    "cloudgouv-eu-west-1",
    "ap-northeast-1",
)
OOS_HOSTS: frozenset[str] = frozenset(f"oos.{region}.outscale.com" for region in OUTSCALE_REGIONS)

GIB = 1024**3
SIGV4_MAX_EXPIRES = 604800  # one week, the S3 maximum for SigV4 pre-signed URLs
SNIFF_OUTPUT_LIMIT = 64 * 1024  # decompressed bytes we are willing to produce from a gzip header
_PRESIGN_HINT = "aws s3 presign s3://BUCKET/KEY --expires-in 86400 --endpoint https://oos.eu-west-2.outscale.com"


class PresignedUrlError(ValueError):
    """A pasted URL cannot be used. The message says why and how to fix it, never the secret."""


class InspectionError(Exception):
    """Reading the first bytes of the object failed. The message never holds the secret."""


class ForbiddenAddressError(InspectionError):
    """The URL's host resolves to an internal address: such a URL must not be imported."""


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
        resolver: net.Resolver = net.system_resolver,
        ssl_context: ssl.SSLContext | None = None,
        timeout: float = 5.0,
    ) -> net.Policy:
        """The outbound guard's rules for object stores: OOS hosts plus the extra hosts."""
        return net.Policy(
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


@dataclass(frozen=True)
class ImageInfo:
    container: Literal["gzip"] | None
    format: Literal["qcow2", "raw", "unknown"]
    virtual_size: int | None
    object_size: int | None
    suggested_size: int | None
    explanation: str


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


# --------------------------------------------------------------------------------------------
# Parsing

_PATH_BUCKET_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}")
_SIGV4_SIGNATURE_RE = re.compile(r"[0-9a-fA-F]{64}")
_AMZ_DATE_FORMAT = "%Y%m%dT%H%M%SZ"

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
    target = _checked_target(text, policy.outbound())
    bucket, key = _bucket_and_key(target.path, _virtual_bucket(target))
    params = _query_params(target.query)
    style, expires_at = _check_signature(params)
    if expires_at <= now:
        raise PresignedUrlError(
            f"This pre-signed URL expired at {_iso(expires_at)}. Generate a new one "
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


def _checked_target(text: str, outbound: net.Policy) -> net.Target:
    """The outbound guard's verdict on the URL, as a message of the IMPORT SNAPSHOT dialog."""
    try:
        return net.check_url(text, outbound)
    except net.DestinationRefused as refusal:
        raise PresignedUrlError(str(refusal)) from None


def _virtual_bucket(target: net.Target) -> str | None:
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
        signed_at = datetime.strptime(params["x-amz-date"], _AMZ_DATE_FORMAT).replace(tzinfo=UTC)
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
    target: net.Target, expires_at: datetime, policy: UrlPolicy, now: datetime
) -> tuple[str, ...]:
    warnings = []
    remaining = expires_at - now
    if remaining < policy.expiry_warning:
        minutes = max(1, int(remaining.total_seconds() // 60))
        warnings.append(
            f"This URL expires in {minutes} minute{'s' if minutes > 1 else ''} "
            f"(at {_iso(expires_at)}). The import fails if OUTSCALE cannot read the whole object "
            "before then: for a large image, generate a URL valid for longer "
            "(for example --expires-in 86400)."
        )
    if target.scheme == "http":
        warnings.append("This URL uses plain http://, acceptable only for a local sandbox.")
    return tuple(warnings)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --------------------------------------------------------------------------------------------
# Redaction

_SCHEME_RE = re.compile(r"([A-Za-z][A-Za-z0-9+.-]{0,15})://")
# Words that, before the query, mean the URL was mangled around its signature.
_SECRET_WORDS = ("signature", "x-amz-", "awsaccesskeyid", "credential", "token")
# Query parameters that mark a URL in free text as pre-signed.
_SECRET_PARAMS = (
    "x-amz-signature",
    "x-amz-credential",
    "x-amz-security-token",
    "awsaccesskeyid",
    "signature=",
)
_MAX_REDACTED_PATH = 512


def redact_url(raw: str) -> str:
    """The shareable form of a URL: never the signature, access key id, user-info or fragment."""
    try:
        return _redact_url(str(raw))
    except Exception:
        # Redaction runs inside logging and error paths: it must never raise.
        return "[redacted URL]"


def _redact_url(raw: str) -> str:
    text = raw.strip()
    base, query_sep, rest = text.partition("?")
    base = base.partition("#")[0]
    query = rest.partition("#")[0]
    match = _SCHEME_RE.match(base)
    scheme = match[1].lower() if match else ""
    remainder = base[match.end() :] if match else base
    authority, slash, path = remainder.partition("/")
    host = authority.rpartition("@")[2]
    prefix = f"{scheme}://" if scheme else ""
    safe_host = quote(host.lower()[:255], safe=":[].-_")
    if _looks_secret(remainder):
        return f"{prefix}{safe_host}/[redacted]"
    safe_path = quote(slash + path, safe="/%:!$'()*+,;=-._~")
    if len(safe_path) > _MAX_REDACTED_PATH:
        safe_path = safe_path[:_MAX_REDACTED_PATH] + "..."
    suffix = ""
    if query_sep:
        expires_at = _expiry_of(query)
        suffix = f"?expires={_iso(expires_at)}" if expires_at else "?[redacted]"
    return f"{prefix}{safe_host}{safe_path}{suffix}"


def _decoded(text: str) -> str:
    for _ in range(3):  # undo double encoding such as %253F
        text = unquote(text)
    return text


def _looks_secret(text: str) -> bool:
    decoded = _decoded(text)
    lowered = decoded.lower()
    return any(word in lowered for word in _SECRET_WORDS) or "?" in decoded


def _expiry_of(query: str) -> datetime | None:
    try:
        params = {name.lower(): value for name, value in parse_qsl(query, max_num_fields=64)}
        if "x-amz-date" in params and "x-amz-expires" in params:
            signed_at = datetime.strptime(params["x-amz-date"], _AMZ_DATE_FORMAT)
            seconds = int(params["x-amz-expires"])
            if not 0 <= seconds <= SIGV4_MAX_EXPIRES:
                return None
            return signed_at.replace(tzinfo=UTC) + timedelta(seconds=seconds)
        if "expires" in params and params["expires"].isdigit() and len(params["expires"]) <= 11:
            return datetime.fromtimestamp(int(params["expires"]), tz=UTC)
    except (ValueError, OverflowError, OSError):
        return None
    return None


_URL_IN_TEXT_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]{0,15}://[^\s\"'<>`]+")
# Redaction runs on every log line and API error, so it must stay linear in the text whatever an
# attacker puts in it. Possessive quantifiers (*+, ?+, ++) never give back what they took: each
# start position costs at most the run of separators after the word, and those runs do not
# overlap. The old `\s*:\s*\[?\s*` split one run of spaces between three quantifiers in every way
# before failing, quadratic in its length ("signature:" + 20 000 spaces took 15 s). The value
# class excludes spaces and quotes, so nothing a backtrack could have found is lost.
_SECRET_PARAM_RE = re.compile(
    r"(?i)(x-amz-signature|x-amz-credential|x-amz-security-token|awsaccesskeyid|signature)"
    r"(=|%3d|%253d|\\u003d|['\"]?+\s*+:\s*+\[?\s*+['\"]?+)"
    r"(?:(?!%26|\\u0026)[^&\s\"'<>,;)\]}])++"
)
_TRAILING_PUNCTUATION = ".,;:!)]}"


def redact_text(text: str) -> str:
    """Redact pre-signed URLs and stray signature parameters inside free text."""
    try:
        redacted = _URL_IN_TEXT_RE.sub(_redact_url_match, text)
        return _SECRET_PARAM_RE.sub(lambda m: f"{m[1]}{m[2]}[redacted]", redacted)
    except Exception:
        return "[text redacted: it could not be checked for secrets]"


def _redact_url_match(match: re.Match[str]) -> str:
    url = match[0]
    stripped = url.rstrip(_TRAILING_PUNCTUATION)
    trailing = url[len(stripped) :]
    lowered = _decoded(stripped).lower()
    authority = stripped.partition("://")[2].partition("/")[0]
    if not any(name in lowered for name in _SECRET_PARAMS) and "@" not in authority:
        return url
    return redact_url(stripped) + trailing


class SignatureRedactingFilter(logging.Filter):
    """Redacts pre-signed URLs from log records (message, args, exception text)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:
            message = str(record.msg)
        redacted = redact_text(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info:
            exc_text = record.exc_text or logging.Formatter().formatException(record.exc_info)
            # Formatters print exc_text as is when set; dropping exc_info stops them re-rendering.
            record.exc_text, record.exc_info = redact_text(exc_text), None
        elif record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        if record.stack_info:
            record.stack_info = redact_text(record.stack_info)
        return True


# --------------------------------------------------------------------------------------------
# Header sniffing

_QCOW2_MAGIC = b"QFI\xfb"
_OTHER_FORMATS: tuple[tuple[int, bytes, str], ...] = (
    (0, b"KDMV", "VMDK"),
    (0, b"# Disk DescriptorFile", "VMDK"),
    (0, b"conectix", "VHD"),
    (0, b"vhdxfile", "VHDX"),
    (0x40, b"\x7f\x10\xda\xbe", "VDI"),
    (0, b"\xfd7zXZ\x00", "xz-compressed"),
    (0, b"BZh", "bzip2-compressed"),
    (0, b"\x28\xb5\x2f\xfd", "zstd-compressed"),
    (0, b"PK\x03\x04", "zip"),
)
_CONVERT = (
    "OUTSCALE imports raw or qcow2 images: convert it (qemu-img convert -O qcow2) and upload "
    "it again."
)


def format_gib(size: int) -> str:
    """Human size in GiB: exact for whole GiB, two decimals otherwise."""
    if size < 0:
        raise ValueError("size must not be negative")
    if size % GIB == 0:
        return f"{size // GIB} GiB"
    value = size / GIB
    if value < 0.01:
        return "less than 0.01 GiB"
    return f"{value:.2f}".rstrip("0").rstrip(".") + " GiB"


def _describe_size(size: int) -> str:
    return f"{format_gib(size)} = {size} bytes"


def sniff_image(first_bytes: bytes, *, object_size: int | None) -> ImageInfo:
    """Guess format and size of a disk image from its first bytes; never raises on bad input."""
    if first_bytes[:2] == b"\x1f\x8b":
        return _sniff_gzip(first_bytes, object_size)
    return _sniff_plain(first_bytes, object_size)


def _sniff_gzip(first_bytes: bytes, object_size: int | None) -> ImageInfo:
    decompressor = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        # max_length bounds the output, so a gzip bomb costs us at most 64 KiB.
        inner = decompressor.decompress(first_bytes, SNIFF_OUTPUT_LIMIT)
    except zlib.error:
        return ImageInfo(
            "gzip",
            "unknown",
            None,
            object_size,
            None,
            "gzip-compressed, but the compressed stream is damaged: check the object, and enter "
            "at least the original volume's size.",
        )
    if len(inner) < 4:
        return ImageInfo(
            "gzip",
            "unknown",
            None,
            object_size,
            None,
            "gzip-compressed, but too little data to read the image header inside; enter at "
            "least the original volume's size.",
        )
    if inner[:4] == _QCOW2_MAGIC:
        return _qcow2_info(inner, "gzip", object_size)
    other = _other_format(inner)
    if other:
        return ImageInfo(
            "gzip", "unknown", None, object_size, None, f"{other} image inside gzip. {_CONVERT}"
        )
    return ImageInfo(
        "gzip",
        "raw",
        None,
        object_size,
        None,
        "gzip-compressed raw image: the uncompressed size cannot be known from its first bytes; "
        "use at least the original volume's size.",
    )


def _sniff_plain(first_bytes: bytes, object_size: int | None) -> ImageInfo:
    if not first_bytes:
        return ImageInfo(
            None, "unknown", None, object_size, None, "The object is empty: nothing to import."
        )
    if first_bytes[:4] == _QCOW2_MAGIC:
        return _qcow2_info(first_bytes, None, object_size)
    other = _other_format(first_bytes)
    if other:
        return ImageInfo(None, "unknown", None, object_size, None, f"{other} image. {_CONVERT}")
    table = _partition_table(first_bytes)
    if object_size is None:
        return ImageInfo(
            None,
            "raw",
            None,
            None,
            None,
            f"Raw image{table}, but the object size is unknown: use at least the original "
            "volume's size.",
        )
    return ImageInfo(
        None,
        "raw",
        object_size,
        object_size,
        object_size or None,
        f"Raw image{table}: the object size is the volume size, {_describe_size(object_size)}.",
    )


def _qcow2_info(header: bytes, container: Literal["gzip"] | None, size: int | None) -> ImageInfo:
    where = "qcow2 inside gzip" if container else "qcow2"
    if len(header) < 32:
        return ImageInfo(
            container,
            "qcow2",
            None,
            size,
            None,
            f"{where}, but the header is truncated: the virtual size cannot be read; enter the "
            "original volume's size.",
        )
    (version,) = struct.unpack_from(">I", header, 4)
    (virtual_size,) = struct.unpack_from(">Q", header, 24)
    note = "" if version in (2, 3) else f" (unusual qcow2 version {version})"
    if virtual_size == 0:
        return ImageInfo(
            container,
            "qcow2",
            0,
            size,
            None,
            f"{where}{note} with a virtual size of 0 bytes: the header looks damaged.",
        )
    return ImageInfo(
        container,
        "qcow2",
        virtual_size,
        size,
        virtual_size,
        f"{where}{note}, virtual size {_describe_size(virtual_size)}",
    )


def _other_format(data: bytes) -> str | None:
    for offset, magic, name in _OTHER_FORMATS:
        if data[offset : offset + len(magic)] == magic:
            return name
    return None


def _partition_table(data: bytes) -> str:
    if data[512:520] == b"EFI PART":
        return " with a GPT partition table"
    if data[510:512] == b"\x55\xaa":
        return " with an MBR partition table"
    return ""


# --------------------------------------------------------------------------------------------
# The guarded fetch (through the outbound guard, importer.net)

Resolver = net.Resolver


def read_object_head(
    url: PresignedUrl,
    *,
    policy: UrlPolicy,
    max_bytes: int = 65536,
    timeout: float = 5.0,
    resolver: Resolver = net.system_resolver,
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
    session = net.guarded_session(outbound)
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
        first_bytes = _read_capped(response.raw, max_bytes, deadline=time.monotonic() + timeout)
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


def _inspectable_target(secret_url: str, outbound: net.Policy) -> net.Target:
    # The guarded session checks again, resolves once and checks every address before dialling.
    try:
        return _checked_target(secret_url, outbound)
    except PresignedUrlError as error:
        raise InspectionError(f"Refused to inspect this URL: {error}") from None


def _fetch_error(error: requests.RequestException, host: str, timeout: float) -> InspectionError:
    reason = getattr(error, "reason", None)
    if isinstance(reason, net.ForbiddenAddress):
        # The name resolved elsewhere between the check and the dial: still refused.
        return ForbiddenAddressError(str(reason))
    if isinstance(error, net.GuardRefusal | net.UnresolvedHostError):
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


def _read_capped(response: Any, max_bytes: int, deadline: float) -> bytes:
    # read1 returns what has arrived, so a server dripping bytes still hits the deadline.
    chunks: list[bytes] = []
    received = 0
    while received < max_bytes:
        if time.monotonic() > deadline:
            raise InspectionError("The object store is sending too slowly; gave up.")
        chunk = response.read1(min(65536, max_bytes - received), decode_content=False)
        if not chunk:
            break
        chunks.append(chunk)
        received += len(chunk)
    return b"".join(chunks)[:max_bytes]


_CONTENT_RANGE_RE = re.compile(r"bytes\s+(?:\d+-\d+|\*)/(\d{1,19})")


def _total_size(status: int, headers: Any) -> int | None:
    if status == 206:
        match = _CONTENT_RANGE_RE.fullmatch(str(headers.get("Content-Range", "")).strip())
        return int(match[1]) if match else None
    length = str(headers.get("Content-Length", "")).strip()
    return int(length) if length.isdigit() and len(length) <= 19 else None


def inspect_presigned_url(
    url: PresignedUrl,
    *,
    policy: UrlPolicy,
    max_bytes: int = 65536,
    timeout: float = 5.0,
    resolver: Resolver = net.system_resolver,
    ssl_context: ssl.SSLContext | None = None,
) -> Inspection:
    """Fetch the first bytes and sniff them. A failure is a warning, never a block."""
    try:
        head = read_object_head(
            url,
            policy=policy,
            max_bytes=max_bytes,
            timeout=timeout,
            resolver=resolver,
            ssl_context=ssl_context,
        )
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
