from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, quote, unquote

from importer.core.net.guard import NETLOC_CHARS

# What stands in for a removed secret.
REDACTED = "[redacted]"


# OUTSCALE API error texts have always said "[REDACTED]": the same marker, upper-cased, so that
# the errors stored on job rows and the new ones read alike.
API_REDACTED = REDACTED.upper()


# What stands in for a whole URL that could not be taken apart.
REDACTED_URL = "[redacted URL]"


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
        return REDACTED_URL


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
        return f"{prefix}{safe_host}/{REDACTED}"
    safe_path = quote(slash + path, safe="/%:!$'()*+,;=-._~")
    if len(safe_path) > _MAX_REDACTED_PATH:
        safe_path = safe_path[:_MAX_REDACTED_PATH] + "..."
    suffix = ""
    if query_sep:
        expires_at = expiry_of(query)
        suffix = f"?expires={iso(expires_at)}" if expires_at else f"?{REDACTED}"
    return f"{prefix}{safe_host}{safe_path}{suffix}"


def _decoded(text: str) -> str:
    for _ in range(3):  # undo double encoding such as %253F
        text = unquote(text)
    return text


def _looks_secret(text: str) -> bool:
    decoded = _decoded(text)
    lowered = decoded.lower()
    return any(word in lowered for word in _SECRET_WORDS) or "?" in decoded


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
        return _SECRET_PARAM_RE.sub(lambda m: f"{m[1]}{m[2]}{REDACTED}", redacted)
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


# A URL with a query string: the query of a pre-signed URL carries its signature.
_URL_QUERY_RE = re.compile(r"(?P<base>https?://[^\s?#\"'<>]*)\?[^\s#\"'<>]*", re.IGNORECASE)


# Signature-bearing parameters seen outside a URL (an echoed fragment, a URL-encoded URL). The
# value runs to the next space or '&', so a marker already in place is replaced by itself: the
# text comes out the same however often it passes (an error is redacted again when unpickled).
_SIGNATURE_PARAM_RE = re.compile(
    r"(?P<key>(?:x-amz-signature|x-amz-credential|x-amz-security-token|signature"
    r"|awsaccesskeyid)(?:=|%3D))[^&\s\"'<>]+",
    re.IGNORECASE,
)


def redact_strictly(text: str, secrets: Sequence[str] = ()) -> str:
    """Remove every URL query string, signature parameters and the given secrets from `text`.

    For text a third party wrote (an API's error details), where any query may hold a secret;
    `redact_text` instead keeps unsigned URLs and shows a signed URL's expiry.
    """
    for secret in secrets:
        # Short values would blank out ordinary words; real secrets are long.
        if len(secret) >= 8:
            text = text.replace(secret, API_REDACTED)
    text = _URL_QUERY_RE.sub(lambda m: f"{m.group('base')}?{API_REDACTED}", text)
    return _SIGNATURE_PARAM_RE.sub(lambda m: f"{m.group('key')}{API_REDACTED}", text)


def redact_destination(raw: str) -> str:
    """What may be shown of a person-chosen URL: scheme, host and port, never path or query.

    Webhook URLs of chat services carry their token in the path; nothing after the host is
    kept. Never raises (it runs in error paths).
    """
    try:
        scheme, sep, rest = raw.strip().partition("://")
        if not sep:
            return REDACTED_URL
        authority = rest.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
        host = authority.rpartition("@")[2]
        if not host or any(char not in NETLOC_CHARS and char not in "[]:" for char in host):
            return REDACTED_URL
        tail = f"/{REDACTED}" if rest[len(authority) :].strip("/") else ""
        return f"{scheme.lower()[:10]}://{host.lower()[:255]}{tail}"
    except Exception:
        return REDACTED_URL


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


SIGV4_MAX_EXPIRES = 604800  # one week, the S3 maximum for SigV4 pre-signed URLs

AMZ_DATE_FORMAT = "%Y%m%dT%H%M%SZ"


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def expiry_of(query: str) -> datetime | None:
    try:
        params = {name.lower(): value for name, value in parse_qsl(query, max_num_fields=64)}
        if "x-amz-date" in params and "x-amz-expires" in params:
            signed_at = datetime.strptime(params["x-amz-date"], AMZ_DATE_FORMAT)
            seconds = int(params["x-amz-expires"])
            if not 0 <= seconds <= SIGV4_MAX_EXPIRES:
                return None
            return signed_at.replace(tzinfo=UTC) + timedelta(seconds=seconds)
        if "expires" in params and params["expires"].isdigit() and len(params["expires"]) <= 11:
            return datetime.fromtimestamp(int(params["expires"]), tz=UTC)
    except (ValueError, OverflowError, OSError):
        return None
    return None
