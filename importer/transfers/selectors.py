from __future__ import annotations

import uuid

from django.db.models import Q, QuerySet
from django.http import Http404, HttpRequest

from importer.teams.permissions import team_ids
from importer.transfers.models import CopyChain, ExportTask


def exports_for_user(request: HttpRequest) -> QuerySet[ExportTask]:
    """Exports of every team the user is in: another team's export answers 404."""
    return ExportTask.objects.filter(team_id__in=team_ids(request))


def copies_for_user(request: HttpRequest) -> QuerySet[CopyChain]:
    """Copies from or to any team the user is in: both ends follow a copy."""
    teams = team_ids(request)
    return CopyChain.objects.filter(Q(source_team_id__in=teams) | Q(target_team_id__in=teams))


def get_export_for_user(request: HttpRequest, export_id: uuid.UUID) -> ExportTask:
    export = (
        exports_for_user(request)
        .select_related("team", "requested_by")
        .filter(pk=export_id)
        .first()
    )
    if export is None:
        raise Http404("No such export in your teams.")
    return export


def get_copy_for_user(request: HttpRequest, copy_id: uuid.UUID) -> CopyChain:
    chain = (
        copies_for_user(request)
        .select_related(
            "source_team", "target_team", "export", "import_job", "requested_by", "share"
        )
        .filter(pk=copy_id)
        .first()
    )
    if chain is None:
        raise Http404("No such copy in your teams.")
    return chain
