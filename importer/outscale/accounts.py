from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from functools import cache
from typing import TYPE_CHECKING, Any

import boto3
import requests
from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)
from django.conf import settings

from importer.core.crypto import decrypt_text
from importer.core.net.guard import GuardRefusal, Policy, check_url
from importer.core.net.session import guarded_session
from importer.outscale.client import OscClient
from importer.outscale.endpoints import api_policy, object_store_policy
from importer.outscale.signing import OscCredentials

if TYPE_CHECKING:
    from importer.teams.models import Team

MAX_SHARE_SECONDS = 7 * 24 * 3600  # SigV4 pre-signed URLs last at most 7 days


@cache
def _client(
    endpoint: str, region: str, access_key: str, secret_key: str, policy: Policy
) -> OscClient:
    # Every call goes through the outbound guard: a team's endpoint is chosen by its admin.
    return OscClient(
        credentials=OscCredentials(access_key=access_key, secret_key=secret_key),
        region=region,
        endpoint=endpoint,
        connect_timeout=settings.OSC_CONNECT_TIMEOUT,
        read_timeout=settings.OSC_READ_TIMEOUT,
        session=guarded_session(policy),
    )


def api_client(team: Team | None) -> OscClient:
    """The client for a team's account; a team set to use the environment gets the OSC_* one.

    Raises ValueError when there is no team (never the environment's account by default) or
    the team has no usable credentials.
    """
    if team is None:
        raise ValueError("no team: join a team to reach an OUTSCALE account")
    if team.uses_environment_credentials:
        return _client(
            settings.OSC_ENDPOINT_API,
            settings.OSC_REGION,
            settings.OSC_ACCESS_KEY,
            settings.OSC_SECRET_KEY,
            api_policy(),
        )
    if not team.secret_key_encrypted:
        raise ValueError(f"team {team.name} has no OUTSCALE credentials yet")
    endpoint = team.endpoint or f"https://api.{team.region}.outscale.com/api/v1"
    policy = api_policy()
    # The value as stored, before requests normalises it (a fragment, a leading-zero port):
    # what was saved is what is checked. Raises DestinationRefused, a ValueError.
    check_url(endpoint, policy)
    return _client(
        endpoint,
        team.region,
        decrypt_text(team.access_key_encrypted),
        decrypt_text(team.secret_key_encrypted),
        policy,
    )


S3_TIMEOUTS = (5, 30)


def oos_endpoint(team: Team) -> str:
    return (team.oos_endpoint or f"https://oos.{team.region}.outscale.com").rstrip("/")


def _oos_keys(team: Team) -> tuple[str, str]:
    """OOS takes the account's API access key; raises ValueError when the team has none."""
    if team.uses_environment_credentials:
        return settings.OSC_ACCESS_KEY, settings.OSC_SECRET_KEY
    if not team.secret_key_encrypted:
        raise ValueError(f"team {team.name} has no OUTSCALE credentials yet")
    return decrypt_text(team.access_key_encrypted), decrypt_text(team.secret_key_encrypted)


def _region(team: Team) -> str:
    return settings.OSC_REGION if team.uses_environment_credentials else team.region


class OutboundRefusedError(BotoCoreError):
    """The outbound guard refused the OOS endpoint at send time (never retried)."""

    fmt = "{message}"


def s3_client(team: Team) -> Any:
    """A boto3 S3 client on the team's OOS endpoint: SigV4, path-style, timeouts, 2 attempts.

    Its requests go through the outbound guard (a team admin chose the endpoint): the endpoint
    is checked here (DestinationRefused, a ValueError) and every request again as it is sent.
    """
    endpoint = oos_endpoint(team)
    policy = object_store_policy()
    check_url(endpoint, policy)
    access_key, secret_key = _oos_keys(team)
    connect, read = S3_TIMEOUTS
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=_region(team),
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        config=Config(
            signature_version="s3v4",
            s3={"addressing_style": "path"},
            connect_timeout=connect,
            read_timeout=read,
            retries={"max_attempts": 2, "mode": "standard"},
            proxies={},
        ),
    )
    # A handler's answer replaces botocore's own send (its documented before-send hook).
    client.meta.events.register("before-send.s3", _guarded_sender(policy))  # type: ignore[arg-type]
    return client


class _Body(io.BytesIO):
    """What botocore reads an answer from (``stream()`` for content, ``read()`` for bodies)."""

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.getvalue()


def _guarded_sender(policy: Policy) -> Callable[..., AWSResponse]:
    """botocore's before-send hook: the request leaves through the guarded session instead."""

    def send(request: AWSPreparedRequest, **_: Any) -> AWSResponse:
        session = guarded_session(policy)
        try:
            response = session.request(
                request.method,
                request.url,
                data=request.body,
                headers={name: str(value) for name, value in request.headers.items()},
                timeout=S3_TIMEOUTS,
            )
        except GuardRefusal as refusal:
            raise OutboundRefusedError(message=str(refusal)) from None
        except requests.ConnectTimeout:
            raise ConnectTimeoutError(endpoint_url=request.url) from None
        except requests.ReadTimeout:
            raise ReadTimeoutError(endpoint_url=request.url) from None
        except requests.RequestException:
            raise EndpointConnectionError(endpoint_url=request.url) from None
        headers = dict(response.headers)
        return AWSResponse(request.url, response.status_code, headers, _Body(response.content))  # type: ignore[arg-type]

    return send


def presign_object(team: Team, *, bucket: str, key: str, seconds: int) -> str:
    """A SigV4 pre-signed GET of the object, made locally (no request is sent). A secret."""
    if not 1 <= seconds <= MAX_SHARE_SECONDS:
        raise ValueError("a pre-signed URL lasts between 1 second and 7 days")
    url: str = s3_client(team).generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=seconds
    )
    return url
