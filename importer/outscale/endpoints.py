from __future__ import annotations

from urllib.parse import urlsplit

from django.conf import settings

from importer.core.net.addresses import check_destination
from importer.core.net.guard import DestinationRefused, Policy
from importer.outscale.regions import OUTSCALE_REGIONS
from importer.presigned.policy import presigned_url_policy

API_HOSTS: frozenset[str] = frozenset(f"api.{region}.outscale.com" for region in OUTSCALE_REGIONS)


API_MAX_RESPONSE_BYTES = 32 * 1024 * 1024


def _environment_api_origin() -> tuple[str, ...]:
    """The deployment's own OSC_ENDPOINT_API (chosen by whoever deploys, not by a team admin)."""
    parts = urlsplit(settings.OSC_ENDPOINT_API)
    if parts.hostname is None:
        return ()
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    default = 443 if parts.scheme == "https" else 80
    return (f"{parts.scheme}://{host}:{parts.port or default}",)


def api_policy() -> Policy:
    return Policy(
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


def object_store_policy() -> Policy:
    """A team's OOS endpoint (boto3): the same hosts as pre-signed URLs, the API's timeouts."""
    return presigned_url_policy().outbound(timeout=float(settings.OSC_READ_TIMEOUT))


def api_endpoint_check(url: str) -> str:
    """A team's API endpoint, checked as it is saved; returns it without a trailing slash."""
    target = check_destination(url, api_policy())
    if target.query:
        raise DestinationRefused("The API endpoint must not have a query string ('?...').")
    return url.strip().rstrip("/")


def oos_endpoint_check(url: str) -> str:
    target = check_destination(url, object_store_policy())
    if target.query or target.path.strip("/"):
        raise DestinationRefused(
            "The OOS endpoint is a bare address with no path or query, for example "
            "https://oos.eu-west-2.outscale.com."
        )
    return url.strip().rstrip("/")
