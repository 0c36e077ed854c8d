from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from django.db.models import Exists, OuterRef, Q, QuerySet
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from importer.audit.addresses import client_ip
from importer.audit.chain import record
from importer.audit.forms import AuditFilterForm
from importer.audit.models import AuditAction, AuditEvent
from importer.core.pages import CSV_CHUNK, _csv_response, _day_start, _paged
from importer.teams.models import Membership
from importer.teams.permissions import READERS_OF_HISTORY, actor, current_team, require_role


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
        data = form.cleaned_data
        if data["actor"]:
            events = events.filter(actor_name=data["actor"])
        if data["action"]:
            events = events.filter(action=data["action"])
        if data["since"]:
            events = events.filter(at__gte=_day_start(data["since"]))
        if data["until"]:
            events = events.filter(at__lt=_day_start(data["until"]) + timedelta(days=1))
        if data["q"]:
            events = events.filter(target__icontains=data["q"])
    return events.order_by("-at", "-id")


@require_role(*READERS_OF_HISTORY)
@require_GET
def audit_log(request: HttpRequest) -> HttpResponse:
    form = AuditFilterForm(request.GET or None)
    context = {
        "form": form,
        "actions": AuditAction.choices,
        **_paged(request, _audit_events(request, form)),
    }
    return render(request, "audit/audit_log.html", context)


@require_role(*READERS_OF_HISTORY)
@require_GET
def audit_log_csv(request: HttpRequest) -> StreamingHttpResponse:
    form = AuditFilterForm(request.GET or None)
    events = _audit_events(request, form)
    record(
        action=AuditAction.CSV_EXPORT,
        actor=actor(request),
        team=current_team(request),
        target="audit log",
        ip=client_ip(request),
        details={"filters": request.GET.dict()},
    )

    def lines() -> Iterator[list[Any]]:
        yield ["id", "at", "who", "action", "target", "ip", "details", "hash"]
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

    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    return _csv_response(lines(), f"audit-{stamp}.csv")
