from __future__ import annotations

import operator
from collections.abc import Iterator
from functools import reduce
from typing import Any

from django.db.models import Exists, OuterRef, QuerySet
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from importer.audit.downloads import audited_csv
from importer.audit.forms import AuditFilterForm
from importer.audit.models import AuditAction, AuditEvent
from importer.core.pages import CSV_CHUNK, CURSOR_PARAMS, Keyset, Paging, filtered, query_without
from importer.teams.models import READERS_OF_HISTORY, Membership
from importer.teams.permissions import current_team, require_role

# The filter form's fields, and what each looks for.
AUDIT_FILTERS = {"actor": "actor_name", "action": "action", "q": "target__icontains"}


# The log's order, newest first; the `after` and `before` cursors hold an entry's (at, id).
AUDIT_KEYSET = Keyset(AuditEvent, ("-at", "-id"))


def _audit_sources(request: HttpRequest, form: AuditFilterForm) -> list[QuerySet[AuditEvent]]:
    """The team's own entries, and its members' sign-ins (which belong to no team), but only
    from the moment each member joined: what they did before is none of the team's business.

    Two sources, so that a page reads each along its own index instead of one OR of both.
    """
    team = current_team(request)
    if team is None:
        return []
    member_since = Membership.objects.filter(
        team=team, user_id=OuterRef("actor_id"), created_at__lte=OuterRef("at")
    )
    sources: list[QuerySet[AuditEvent]] = [
        AuditEvent.objects.filter(team=team),
        AuditEvent.objects.filter(team__isnull=True, actor_id__isnull=False).filter(
            Exists(member_since)
        ),
    ]
    if form.is_valid():
        sources = [
            filtered(events, form.cleaned_data, AUDIT_FILTERS, day_field="at") for events in sources
        ]
    return sources


def _audit_events(request: HttpRequest, form: AuditFilterForm) -> QuerySet[AuditEvent]:
    sources = _audit_sources(request, form)
    if not sources:
        return AuditEvent.objects.none()
    return reduce(operator.or_, sources).order_by(*AUDIT_KEYSET.fields)


@require_role(*READERS_OF_HISTORY)
@require_GET
def audit_log(request: HttpRequest) -> HttpResponse:
    form = AuditFilterForm(request.GET or None)
    paging = Paging.from_query(request.GET, AUDIT_KEYSET)
    page = paging.page(paging.read_each(_audit_sources(request, form)))
    context = {
        "form": form,
        "actions": AuditAction.choices,
        "page": page,
        "rows": page.rows,
        "query": query_without(request.GET, *CURSOR_PARAMS),
    }
    return render(request, "audit/audit_log.html", context)


AUDIT_COLUMNS = ["id", "at", "who", "action", "target", "ip", "details", "hash"]


def _audit_lines(events: QuerySet[AuditEvent]) -> Iterator[list[Any]]:
    yield AUDIT_COLUMNS
    for event in events.iterator(chunk_size=CSV_CHUNK):
        yield [
            event.pk,
            event.at.isoformat(),
            event.actor_name,
            event.action,
            event.target,
            event.ip or "",
            event.details,
            event.hash,
        ]


@require_role(*READERS_OF_HISTORY)
@require_GET
def audit_log_csv(request: HttpRequest) -> StreamingHttpResponse:
    events = _audit_events(request, AuditFilterForm(request.GET or None))
    return audited_csv(request, target="audit log", lines=_audit_lines(events), name="audit")
