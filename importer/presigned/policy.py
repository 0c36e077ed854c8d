from __future__ import annotations

from django.conf import settings

from importer.presigned import urls
from importer.presigned.urls import UrlPolicy


def presigned_url_policy() -> UrlPolicy:
    """What the IMPORT SNAPSHOT dialog accepts, and what an import re-checks before sending."""
    return UrlPolicy(
        extra_hosts=tuple(settings.PORTAL_URL_HOSTS), allow_http=settings.PORTAL_ALLOW_HTTP_URLS
    )


def url_policy() -> urls.UrlPolicy:
    return presigned_url_policy()
