"""The counters and histograms the processes keep for /metrics (Prometheus).

Every process (gunicorn workers, Celery prefork children, beat) writes its own values into
files under PROMETHEUS_MULTIPROC_DIR, which `snapshots_portal/__init__.py` sets before
prometheus_client is first imported; the /metrics view sums them at scrape time. Only counters
and histograms live here: they add up across processes. What the database knows (imports by
state, the queue, heartbeats) is read at scrape time instead (importer.ops.metrics).
"""

from __future__ import annotations

import re

from prometheus_client import Counter, Histogram

# One process's label values must stay few: an error code the API invents is kept only when
# it looks like one (the API's codes are short digits), anything else is reduced to its status.
_CODE_RE = re.compile(r"^[0-9A-Za-z]{1,12}$")

API_CALLS = Counter(
    "portal_api_calls",
    "OUTSCALE API calls by action and outcome: ok, the API's error code, http_<status> "
    "or transport (no answer).",
    ["action", "outcome"],
)
API_CALL_SECONDS = Histogram(
    "portal_api_call_seconds",
    "How long OUTSCALE API calls took, answer read, by action.",
    ["action"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
API_THROTTLED = Counter(
    "portal_api_throttled",
    "Throttling answers to an import's CreateSnapshot that paused its team's account.",
)
POLL_CYCLE_SECONDS = Histogram(
    "portal_poll_cycle_seconds",
    "How long one poll cycle of the in-flight imports took.",
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
WEBHOOK_DELIVERIES = Counter(
    "portal_webhook_deliveries",
    "Webhook delivery attempts by outcome: delivered, failed (given up) or retried.",
    ["outcome"],
)


def api_outcome(*, failed: bool, code: str = "", http_status: int | None = None) -> str:
    """The `outcome` label of one API call: plain values, so that core knows no client."""
    if not failed:
        return "ok"
    if code and _CODE_RE.match(code):
        return code
    if http_status is not None:
        return f"http_{http_status}"
    return "transport"


def api_call_observed(action: str, outcome: str, seconds: float) -> None:
    API_CALLS.labels(action=action, outcome=outcome).inc()
    API_CALL_SECONDS.labels(action=action).observe(seconds)
