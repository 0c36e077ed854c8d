from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.http import HttpRequest, StreamingHttpResponse
from django.utils import timezone

from importer.audit.addresses import client_ip
from importer.audit.chain import record
from importer.audit.models import AuditAction
from importer.core.pages import csv_response
from importer.teams.permissions import actor, current_team


def audited_csv(
    request: HttpRequest, *, target: str, lines: Iterable[list[Any]], name: str
) -> StreamingHttpResponse:
    """The CSV download of a filtered list, audited with the filters it was asked with.

    The file is `<name>-<UTC time>.csv`; `target` says which list it is in the audit log.
    """
    record(
        action=AuditAction.CSV_EXPORT,
        actor=actor(request),
        team=current_team(request),
        target=target,
        ip=client_ip(request),
        details={"filters": request.GET.dict()},
    )
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    return csv_response(lines, f"{name}-{stamp}.csv")
