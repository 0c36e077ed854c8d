from __future__ import annotations

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from importer.ops.health import health_report, holds_bearer_token
from importer.ops.metrics import CONTENT_TYPE, metrics_text


@require_GET
@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    status, body = health_report(request)
    return JsonResponse(body, status=status)


@require_GET
@never_cache
def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus text for the operators' scraper, behind PORTAL_METRICS_TOKEN."""
    token: str = settings.PORTAL_METRICS_TOKEN
    if not token:
        raise Http404  # closed: the deployment did not ask for metrics
    if not holds_bearer_token(request, token):
        # 401, not 404: a scraper with a wrong token tells its operator why it fails.
        response = HttpResponse(
            "This page needs the metrics token: Authorization: Bearer <PORTAL_METRICS_TOKEN>.\n",
            status=401,
            content_type="text/plain; charset=utf-8",
        )
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(metrics_text(), content_type=CONTENT_TYPE)
