"""The outbound guard's policies, one per purpose, built from the settings.

Every person-chosen destination is checked with one of these, when it is saved (a message in the
field) and again at every send (inside the guarded session).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from django.conf import settings

from importer import net
from importer.presigned import OUTSCALE_REGIONS, UrlPolicy

API_HOSTS: frozenset[str] = frozenset(f"api.{region}.outscale.com" for region in OUTSCALE_REGIONS)
# A webhook's answer is never used: a little is read so the connection closes cleanly.
WEBHOOK_MAX_RESPONSE_BYTES = 64 * 1024
API_MAX_RESPONSE_BYTES = 32 * 1024 * 1024
WEBHOOK_CONNECT_SECONDS = 5.0
WEBHOOK_READ_SECONDS = 10.0


def _environment_api_origin() -> tuple[str, ...]:
    """The deployment's own OSC_ENDPOINT_API (chosen by whoever deploys, not by a team admin)."""
    parts = urlsplit(settings.OSC_ENDPOINT_API)
    if parts.hostname is None:
        return ()
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    default = 443 if parts.scheme == "https" else 80
    return (f"{parts.scheme}://{host}:{parts.port or default}",)


def api_policy() -> net.Policy:
    return net.Policy(
        purpose="OUTSCALE API endpoint",
        example="https://api.eu-west-2.outscale.com/api/v1",
        hosts=API_HOSTS,
        extra_hosts=tuple(settings.PORTAL_API_HOSTS),
        trusted_origins=_environment_api_origin(),
        allow_http=settings.PORTAL_ALLOW_HTTP_URLS,
        connect_timeout=settings.OSC_CONNECT_TIMEOUT,
        read_timeout=settings.OSC_READ_TIMEOUT,
        total_timeout=settings.OSC_CONNECT_TIMEOUT + 2 * settings.OSC_READ_TIMEOUT,
        max_response_bytes=API_MAX_RESPONSE_BYTES,
        extra_hosts_setting="PORTAL_API_HOSTS",
    )


def presigned_url_policy() -> UrlPolicy:
    """What the IMPORT SNAPSHOT dialog accepts, and what an import re-checks before sending."""
    return UrlPolicy(
        extra_hosts=tuple(settings.PORTAL_URL_HOSTS), allow_http=settings.PORTAL_ALLOW_HTTP_URLS
    )


def object_store_policy() -> net.Policy:
    """A team's OOS endpoint (boto3): the same hosts as pre-signed URLs, the API's timeouts."""
    return presigned_url_policy().outbound(timeout=float(settings.OSC_READ_TIMEOUT))


def webhook_policy() -> net.Policy:
    return net.Policy(
        purpose="webhook",
        example="https://hooks.example.com/snapshots",
        any_public_host=True,
        extra_hosts=tuple(settings.PORTAL_WEBHOOK_HOSTS),
        allow_http=settings.PORTAL_ALLOW_HTTP_URLS,
        connect_timeout=WEBHOOK_CONNECT_SECONDS,
        read_timeout=WEBHOOK_READ_SECONDS,
        total_timeout=WEBHOOK_CONNECT_SECONDS + WEBHOOK_READ_SECONDS,
        max_response_bytes=WEBHOOK_MAX_RESPONSE_BYTES,
        extra_hosts_setting="PORTAL_WEBHOOK_HOSTS",
    )


def api_endpoint_check(url: str) -> str:
    """A team's API endpoint, checked as it is saved; returns it without a trailing slash."""
    target = net.check_destination(url, api_policy())
    if target.query:
        raise net.DestinationRefused("The API endpoint must not have a query string ('?...').")
    return url.strip().rstrip("/")


def oos_endpoint_check(url: str) -> str:
    target = net.check_destination(url, object_store_policy())
    if target.query or target.path.strip("/"):
        raise net.DestinationRefused(
            "The OOS endpoint is a bare address with no path or query, for example "
            "https://oos.eu-west-2.outscale.com."
        )
    return url.strip().rstrip("/")


def webhook_url_check(url: str) -> str:
    net.check_destination(url, webhook_policy())
    return url.strip()
