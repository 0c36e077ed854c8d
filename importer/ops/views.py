from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from importer.ops.health import health_report


@require_GET
@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    status, body = health_report(request)
    return JsonResponse(body, status=status)
