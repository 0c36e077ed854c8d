from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime

ALGORITHM = "OSC4-HMAC-SHA256"


SERVICE = "api"


# The exact value the SDK signs; the header sent must be byte-identical to it.
CONTENT_TYPE = "application/json; charset=utf-8"


SIGNED_HEADERS = "content-type;host;x-osc-date"


@dataclass(frozen=True)
class OscCredentials:
    access_key: str
    secret_key: str

    def __post_init__(self) -> None:
        if not self.access_key or not self.secret_key:
            raise ValueError("OUTSCALE access key and secret key must both be set")

    def __repr__(self) -> str:
        return f"OscCredentials(access_key={self.masked_access_key!r}, secret_key='***')"

    __str__ = __repr__

    @property
    def masked_access_key(self) -> str:
        return f"{self.access_key[:4]}…"


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode("utf-8"), hashlib.sha256).digest()


def sign_request(
    *,
    credentials: OscCredentials,
    region: str,
    host: str,
    path: str,
    body: bytes,
    now: datetime,
) -> dict[str, str]:
    """Headers that authenticate a POST of `body` to `path` on `host`, as osc_sdk_python signs.

    `host` is the bare host name: the SDK signs the URL's host without its port.
    """
    now = now.astimezone(UTC)
    osc_date = now.strftime("%Y%m%dT%H%M%SZ")
    day = now.strftime("%Y%m%d")
    scope = f"{day}/{region}/{SERVICE}/osc4_request"
    canonical_request = "\n".join(
        [
            "POST",
            path,
            "",  # the query string: the API takes everything in the body
            f"content-type:{CONTENT_TYPE}\nhost:{host}\nx-osc-date:{osc_date}\n",
            SIGNED_HEADERS,
            hashlib.sha256(body).hexdigest(),
        ]
    )
    string_to_sign = "\n".join(
        [ALGORITHM, osc_date, scope, hashlib.sha256(canonical_request.encode()).hexdigest()]
    )
    key = _hmac(f"OSC4{credentials.secret_key}".encode(), day)
    for part in (region, SERVICE, "osc4_request"):
        key = _hmac(key, part)
    signature = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
    return {
        "Content-Type": CONTENT_TYPE,
        "X-Osc-Date": osc_date,
        "Authorization": (
            f"{ALGORITHM} Credential={credentials.access_key}/{scope}, "
            f"SignedHeaders={SIGNED_HEADERS}, Signature={signature}"
        ),
    }
