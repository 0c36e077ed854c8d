"""OSC4-HMAC-SHA256: OUTSCALE's variant of AWS Signature Version 4.

Written from OUTSCALE's documentation and a reading of what osc-sdk-python signs; it does not
reuse the portal's client code, so the sandbox can catch a client that signs wrongly.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import quote, unquote

from sandbox import errors

ALGORITHM = "OSC4-HMAC-SHA256"
SERVICE = "api"
TERMINATOR = "osc4_request"
DATE_FORMAT = "%Y%m%dT%H%M%SZ"
MAX_SKEW = dt.timedelta(minutes=15)
_CREDENTIAL = re.compile(
    r"^(?P<ak>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/(?P<service>[^/]+)/(?P<term>[^/]+)$"
)


@dataclass(frozen=True)
class Account:
    access_key: str
    secret_key: str = field(repr=False)
    account_id: str
    alias: str | None = None


@dataclass(frozen=True)
class SignedRequest:
    """The parts of an HTTP request that the signature covers."""

    method: str
    path: str
    query: str
    headers: Mapping[str, str]  # lower-case names
    body: bytes


def sign_request(
    account: Account,
    region: str,
    *,
    method: str,
    host: str,
    path: str,
    body: bytes,
    content_type: str = "application/json; charset=utf-8",
    now: dt.datetime | None = None,
) -> dict[str, str]:
    """Headers signing a request with content-type;host;x-osc-date (for tests and the CLI)."""
    stamp = (now or dt.datetime.now(dt.UTC)).strftime(DATE_FORMAT)
    headers = {"content-type": content_type, "host": host, "x-osc-date": stamp}
    signed = "content-type;host;x-osc-date"
    request = SignedRequest(method, path, "", headers, body)
    scope = f"{stamp[:8]}/{region}/{SERVICE}/{TERMINATOR}"
    signature = _signature(account.secret_key, stamp, scope, request, signed.split(";"))
    return {
        "Content-Type": content_type,
        "X-Osc-Date": stamp,
        "Authorization": (
            f"{ALGORITHM} Credential={account.access_key}/{scope}, "
            f"SignedHeaders={signed}, Signature={signature}"
        ),
    }


def verify_request(
    request: SignedRequest,
    accounts: Mapping[str, Account],
    region: str,
    now: dt.datetime | None = None,
) -> Account:
    """Return the account whose key signed `request`, or raise a 401 `OscError`."""
    authorization = request.headers.get("authorization", "")
    if not authorization:
        raise errors.authentication_failed("The Authorization header is missing.")
    scheme, _, params = authorization.partition(" ")
    if scheme != ALGORITHM:
        raise errors.unknown_authorization_type()
    fields = _parse_authorization(params)
    match = _CREDENTIAL.match(fields.get("Credential", ""))
    signed_headers = fields.get("SignedHeaders", "").split(";")
    if not match or not fields.get("Signature"):
        raise errors.authentication_failed("The Authorization header is malformed.")
    if match["service"] != SERVICE or match["term"] != TERMINATOR or match["region"] != region:
        raise errors.authentication_failed("The credential scope is invalid.")
    if not {"host", "x-osc-date"} <= set(signed_headers):
        raise errors.authentication_failed("Host and X-Osc-Date must be signed.")
    stamp = request.headers.get("x-osc-date", "")
    _check_date(stamp, match["date"], now or dt.datetime.now(dt.UTC))
    account = accounts.get(match["ak"])
    if account is None:
        raise errors.authentication_failed("The access key is unknown.")
    scope = "/".join((match["date"], match["region"], match["service"], match["term"]))
    for candidate in _host_variants(request):
        expected = _signature(account.secret_key, stamp, scope, candidate, signed_headers)
        if hmac.compare_digest(expected, fields["Signature"]):
            return account
    raise errors.authentication_failed("The request signature does not match.")


def _host_variants(request: SignedRequest) -> list[SignedRequest]:
    """The request as sent, then with the port dropped from Host.

    osc-sdk-python signs `host` without the port (it uses urllib3's parse_url(...).host) while
    its HTTP library sends the port; on OUTSCALE's default ports the two agree, on the
    sandbox's they do not, so both spellings are accepted.
    """
    host = request.headers.get("host", "")
    bare = host.rsplit(":", 1)[0] if re.search(r":\d+$", host) else host
    if bare == host:
        return [request]
    headers = {**request.headers, "host": bare}
    return [
        request,
        SignedRequest(request.method, request.path, request.query, headers, request.body),
    ]


def _check_date(stamp: str, scope_date: str, now: dt.datetime) -> None:
    try:
        when = dt.datetime.strptime(stamp, DATE_FORMAT).replace(tzinfo=dt.UTC)
    except ValueError:
        raise errors.authentication_failed("X-Osc-Date is missing or malformed.") from None
    if stamp[:8] != scope_date:
        raise errors.authentication_failed("The credential date does not match X-Osc-Date.")
    if abs(now - when) > MAX_SKEW:
        raise errors.authentication_failed("The request date is too far from the server time.")


def _parse_authorization(params: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for part in params.split(","):
        name, _, value = part.strip().partition("=")
        fields[name] = value
    return fields


def _signature(
    secret_key: str, stamp: str, scope: str, request: SignedRequest, signed_headers: list[str]
) -> str:
    canonical = _canonical_request(request, signed_headers)
    string_to_sign = "\n".join(
        (ALGORITHM, stamp, scope, hashlib.sha256(canonical.encode()).hexdigest())
    )
    key = ("OSC4" + secret_key).encode()
    for part in scope.split("/"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()


def _canonical_request(request: SignedRequest, signed_headers: list[str]) -> str:
    header_lines = "".join(
        f"{name}:{' '.join(request.headers.get(name, '').split())}\n" for name in signed_headers
    )
    return "\n".join(
        (
            request.method,
            request.path or "/",
            canonical_query(request.query),
            header_lines,
            ";".join(signed_headers),
            hashlib.sha256(request.body).hexdigest(),
        )
    )


def canonical_query(query: str) -> str:
    """Sorted, RFC 3986-encoded query pairs, as SigV4 and its variants sign them."""
    pairs = []
    for part in query.split("&") if query else []:
        name, _, value = part.partition("=")
        pairs.append((_encode(unquote(name)), _encode(unquote(value))))
    return "&".join(f"{name}={value}" for name, value in sorted(pairs))


def _encode(text: str) -> str:
    return quote(text, safe="-_.~")
