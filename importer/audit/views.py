from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.db.models import Exists, OuterRef, Q, QuerySet
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from importer.audit.downloads import audited_csv
from importer.audit.forms import AuditFilterForm
from importer.audit.models import AuditAction, AuditEvent
from importer.core.pages import CSV_CHUNK, filtered, paged
from importer.teams.models import READERS_OF_HISTORY, Membership
from importer.teams.permissions import current_team, require_role

# The filter form's fields, and what each looks for.
AUDIT_FILTERS = {"actor": "actor_name", "action": "action", "q": "target__icontains"}


def _audit_events(request: HttpRequest, form: AuditFilterForm) -> QuerySet[AuditEvent]:
    team = current_team(request)
    if team is None:
        return AuditEvent.objects.none()
    # The team's own entries, and its members' sign-ins (which belong to no team), but only
    # from the moment each member joined: what they did before is none of the team's business.
    member_since = Membership.objects.filter(
        team=team, user_id=OuterRef("actor_id"), created_at__lte=OuterRef("at")
    )
    events = AuditEvent.objects.filter(
        Q(team=team) | (Q(team__isnull=True, actor_id__isnull=False) & Exists(member_since))
    )
    if form.is_valid():
        events = filtered(events, form.cleaned_data, AUDIT_FILTERS, day_field="at")
    return events.order_by("-at", "-id")


@require_role(*READERS_OF_HISTORY)
@require_GET
def audit_log(request: HttpRequest) -> HttpResponse:
    form = AuditFilterForm(request.GET or None)
    context = {
        "form": form,
        "actions": AuditAction.choices,
        **paged(request, _audit_events(request, form)),
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
