"""Small factories with sensible defaults for the tests."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import boto3
from botocore.config import Config
from django.contrib.auth.models import User
from django.utils import timezone

from importer.imports.models import ImportJob
from importer.teams.models import Membership, Role, Team

OOS_ENDPOINT = "https://oos.eu-west-2.outscale.com"


def oos_presigned_url(
    *, key: str = "exports/snap.qcow2.gz", expires: int = 3600, style: str = "v4"
) -> str:
    """A real pre-signed URL for OUTSCALE's OOS, made offline by boto3 (no request is sent)."""
    s3 = boto3.client(
        "s3",
        endpoint_url=OOS_ENDPOINT,
        region_name="eu-west-2",
        aws_access_key_id="AKIAEXAMPLEACCESSKEY",
        aws_secret_access_key="example-secret-key-for-presigning-only",
        config=Config(
            signature_version="s3v4" if style == "v4" else "s3", s3={"addressing_style": "path"}
        ),
    )
    return s3.generate_presigned_url(
        "get_object", Params={"Bucket": "exports-bucket", "Key": key}, ExpiresIn=expires
    )


def make_team(name: str = "ops", **fields: Any) -> Team:
    fields.setdefault("uses_environment_credentials", True)
    return Team.objects.get_or_create(name=name, defaults=fields)[0]


def make_user(
    username: str = "alice",
    password: str = "a-long-test-password",
    *,
    team: Team | None = None,
    role: str = Role.OPERATOR,
) -> User:
    """A user, by default an operator of the team `ops`."""
    user = User.objects.create_user(username=username, password=password)
    Membership.objects.create(user=user, team=team or make_team(), role=role)
    return user


def make_job(user: User, **fields: Any) -> ImportJob:
    defaults: dict[str, Any] = {
        "team": user.memberships.first().team,
        "name": "backup-volume",
        "snapshot_size": 10 * 1024**3,
        "submitted_by": user,
        "url_redacted": "https://oos.eu-west-2.outscale.com/exports-bucket/snap.qcow2.gz",
        "url_host": "oos.eu-west-2.outscale.com",
        "url_bucket": "exports-bucket",
        "url_key": "snap.qcow2.gz",
        "url_expires_at": timezone.now() + timedelta(hours=1),
    }
    defaults.update(fields)
    return ImportJob.objects.create(**defaults)
