from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from importer.health import check_broker, check_database
from importer.models import WorkerHeartbeat


@require_GET
@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    database_ok, database_detail = check_database()
    broker_ok, broker_detail = check_broker()
    body: dict[str, object] = {
        "status": "ok" if database_ok and broker_ok else "unavailable",
        "database": {"ok": database_ok, "detail": database_detail},
        "broker": {"ok": broker_ok, "detail": broker_detail},
    }
    if database_ok:
        latest = WorkerHeartbeat.objects.order_by("-seen_at").first()
        body["last_worker_heartbeat"] = latest.seen_at.isoformat() if latest else None
    return JsonResponse(body, status=200 if database_ok and broker_ok else 503)


@login_required
def dashboard(request: HttpRequest) -> HttpResponse:
    return render(request, "importer/dashboard.html")
