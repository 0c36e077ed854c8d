from __future__ import annotations

import os
import runpy
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.utils import timezone

from importer.jobs.models import WorkerHeartbeat
from importer.jobs.tasks import record_worker_heartbeat
from importer.teams.models import Role
from tests.support.factories import make_user
from tests.support.workers import ROOT, start_process, wait_until

SETTINGS_FILE = ROOT / "snapshots_portal" / "settings.py"
PRODUCTION_ENV = {
    "DEBUG": "0",
    "SECRET_KEY": "x7!kq2-production-like-secret-key-for-the-deploy-check-0123456789abcdef",
    "PORTAL_ENCRYPTION_KEY": "kTz3n1QnV4c1l5cM3eQ0m4pJ2f9rS8uW6yA7bC5dE0g=",
    "PORTAL_AUDIT_KEY": "an-audit-key-of-enough-length-for-the-tests-0123456789",
    "ALLOWED_HOSTS": "portal.example.com",
    "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/portal",
    "CELERY_BROKER_URL": "redis://127.0.0.1:6379/0",
    "PORTAL_CACHE_URL": "redis://127.0.0.1:6379/1",
}


def load_settings(monkeypatch: pytest.MonkeyPatch, **env: str) -> dict[str, object]:
    for name in (
        "DEBUG",
        "SECRET_KEY",
        "CELERY_BROKER_URL",
        "DATABASE_URL",
        "PORTAL_ENCRYPTION_KEY",
        "PORTAL_CACHE_URL",
    ):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(SETTINGS_FILE))


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PORTAL_POLL_SECONDS", "soon"),
        ("PORTAL_POLL_SECONDS", "0"),
        ("DEBUG", "maybe"),
        ("CELERY_BROKER_URL", "amqp://guest@127.0.0.1//"),
        ("OSC_ENDPOINT_API", "ftp://api.example.com"),
        ("DATABASE_URL", "nosuchdb://x"),
        ("PORTAL_ENCRYPTION_KEY", "too-short"),
    ],
)
def test_it_names_the_variable_when_a_setting_is_bad(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    with pytest.raises(ImproperlyConfigured, match=name):
        load_settings(monkeypatch, **{"DEBUG": "1", name: value})


def test_it_refuses_production_without_a_secret_key(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ImproperlyConfigured, match="SECRET_KEY"):
        load_settings(monkeypatch, DEBUG="0", ALLOWED_HOSTS="portal.example.com")


@pytest.mark.parametrize("missing", ["SECRET_KEY", "PORTAL_ENCRYPTION_KEY", "ALLOWED_HOSTS"])
def test_it_fails_closed_when_debug_is_not_set(
    monkeypatch: pytest.MonkeyPatch, missing: str
) -> None:
    production = {name: value for name, value in PRODUCTION_ENV.items() if name != "DEBUG"}
    production.pop(missing, None)
    monkeypatch.delenv("ALLOWED_HOSTS", raising=False)
    with pytest.raises(ImproperlyConfigured, match=f"{missing} must .* DEBUG=1"):
        load_settings(monkeypatch, **production)


def test_it_runs_with_the_secure_defaults_when_debug_is_not_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("OSC_ENDPOINT_API", "OSC_ACCESS_KEY", "OSC_REGION", "PORTAL_SSL_REDIRECT"):
        monkeypatch.delenv(name, raising=False)
    production = {name: value for name, value in PRODUCTION_ENV.items() if name != "DEBUG"}
    loaded = load_settings(monkeypatch, **production)
    assert loaded["DEBUG"] is False
    assert loaded["SESSION_COOKIE_SECURE"] is True
    assert loaded["SECURE_SSL_REDIRECT"] is True
    assert loaded["OSC_ACCESS_KEY"] == ""
    assert loaded["OSC_ENDPOINT_API"] == "https://api.eu-west-2.outscale.com/api/v1"


def test_it_refuses_production_without_a_shared_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    production = {
        name: value for name, value in PRODUCTION_ENV.items() if name != "PORTAL_CACHE_URL"
    }
    with pytest.raises(ImproperlyConfigured, match="PORTAL_CACHE_URL must name a Redis server"):
        load_settings(monkeypatch, **production)
    with pytest.raises(ImproperlyConfigured, match="PORTAL_CACHE_URL must be a URL"):
        load_settings(monkeypatch, **production, PORTAL_CACHE_URL="memcached://127.0.0.1")


def test_it_keeps_sessions_and_versions_in_one_cache_shared_by_every_process(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    production = load_settings(monkeypatch, **PRODUCTION_ENV)
    local = load_settings(monkeypatch, DEBUG="1", PORTAL_VAR_DIR=str(tmp_path))

    assert production["CACHES"]["default"]["BACKEND"].endswith("RedisCache")  # type: ignore[index]
    assert production["CACHES"]["default"]["LOCATION"] == "redis://127.0.0.1:6379/1"  # type: ignore[index]
    # Files, not a cache per process: the worker's version bumps must reach the web server.
    assert local["CACHES"]["default"]["BACKEND"].endswith("FileBasedCache")  # type: ignore[index]
    assert local["CACHES"]["default"]["LOCATION"] == str(tmp_path / "cache")  # type: ignore[index]
    assert production["SESSION_ENGINE"] == "importer.core.sessions"  # cached_db, capped


def test_it_stops_a_production_start_without_secrets_with_a_clear_message() -> None:
    env = {name: value for name, value in os.environ.items() if name not in PRODUCTION_ENV}
    result = subprocess.run(  # noqa: S603
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr
    assert "for a local run set DEBUG=1" in result.stderr


def test_it_defaults_to_sqlite_in_wal_mode_and_an_embedded_broker(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    loaded = load_settings(monkeypatch, DEBUG="1", PORTAL_VAR_DIR=str(tmp_path))
    database = loaded["DATABASES"]["default"]  # type: ignore[index]
    assert database["ENGINE"] == "django.db.backends.sqlite3"
    assert "journal_mode=WAL" in database["OPTIONS"]["init_command"]
    assert database["OPTIONS"]["timeout"] >= 5
    assert loaded["CELERY_BROKER_URL"] == "filesystem://"
    assert loaded["OSC_ENDPOINT_API"] == "http://127.0.0.1:8787/api/v1"
    assert loaded["OSC_REGION"] == "eu-west-2"
    assert loaded["PORTAL_POLL_SECONDS"] == 5


def test_it_passes_the_deploy_check_in_the_production_configuration() -> None:
    env = {**os.environ, **PRODUCTION_ENV}
    # The browser tests' escape hatch for Playwright's event loop is no production setting.
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    result = subprocess.run(  # noqa: S603
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_it_fails_the_deploy_check_when_debug_is_on() -> None:
    env = {**os.environ, **PRODUCTION_ENV, "DEBUG": "1"}
    result = subprocess.run(  # noqa: S603
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "DEBUG" in result.stderr


HEALTH_TOKEN = "health-token-for-the-monitor-0123456789abcdef"  # noqa: S105


@pytest.mark.django_db
def test_it_reports_health_of_database_and_broker(admin_client) -> None:
    response = admin_client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["database"]["ok"] is True
    assert body["broker"]["ok"] is True


@pytest.mark.django_db
def test_it_answers_503_when_the_broker_is_unreachable(admin_client, settings) -> None:
    # Port 9 (discard) on loopback refuses connections here.
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:9/0"
    response = admin_client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["broker"]["ok"] is False


@pytest.mark.django_db
def test_it_tells_the_public_the_health_status_only(client, settings) -> None:
    settings.PORTAL_HEALTH_TOKEN = HEALTH_TOKEN
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:9/0"
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable"}


@pytest.mark.django_db
def test_it_hides_health_details_from_operators_and_wrong_tokens(client, settings) -> None:
    settings.PORTAL_HEALTH_TOKEN = HEALTH_TOKEN
    client.force_login(make_user("olivia", role=Role.OPERATOR))
    assert client.get("/healthz").json() == {"status": "ok"}
    for header in (f"Bearer {HEALTH_TOKEN[:-1]}", f"Basic {HEALTH_TOKEN}", "Bearer "):
        assert client.get("/healthz", HTTP_AUTHORIZATION=header).json() == {"status": "ok"}


@pytest.mark.django_db
def test_it_opens_no_health_details_with_a_token_when_none_is_set(client, settings) -> None:
    settings.PORTAL_HEALTH_TOKEN = ""
    response = client.get("/healthz", HTTP_AUTHORIZATION="Bearer ")
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_it_shows_health_details_to_the_token_and_team_admins(client, settings) -> None:
    settings.PORTAL_HEALTH_TOKEN = HEALTH_TOKEN
    WorkerHeartbeat.objects.create(hostname="worker-1@host")
    body = client.get("/healthz", HTTP_AUTHORIZATION=f"Bearer {HEALTH_TOKEN}").json()
    assert body["database"] == {"ok": True, "detail": connection.vendor}
    assert body["broker"]["ok"] is True
    assert body["last_worker_heartbeat"]
    client.force_login(make_user("adele", role=Role.ADMIN))
    assert client.get("/healthz").json()["database"]["ok"] is True


def test_it_refuses_a_short_health_token(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ImproperlyConfigured, match="PORTAL_HEALTH_TOKEN must be 32"):
        load_settings(monkeypatch, DEBUG="1", PORTAL_HEALTH_TOKEN="short")


@pytest.mark.django_db
def test_it_asks_anonymous_users_to_log_in(client) -> None:
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"].startswith("/login/")
    assert client.get("/login/").status_code == 200


@pytest.mark.django_db
def test_it_serves_htmx_from_the_app_not_a_cdn(admin_client) -> None:
    page = admin_client.get("/").content.decode()
    assert "/static/django-htmx/htmx" in page or "/static/django_htmx/htmx" in page
    assert "unpkg.com" not in page and "cdn" not in page.lower()
    assert 'hx-headers=\'{"x-csrftoken"' in page


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_it_runs_a_task_on_a_real_worker_over_redis(celery_worker) -> None:
    assert settings.CELERY_BROKER_URL.startswith("redis://")
    sent_at = timezone.now()
    record_worker_heartbeat.delay()
    heartbeat = wait_until(
        lambda: WorkerHeartbeat.objects.filter(seen_at__gte=sent_at).first(), seconds=30
    )
    assert heartbeat.hostname


@pytest.mark.integration
def test_it_runs_a_task_with_the_embedded_broker_and_nothing_but_python(tmp_path: Path) -> None:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DATABASE_URL", "CELERY_BROKER_URL"}
    }
    env["PORTAL_VAR_DIR"] = str(tmp_path)
    run = [sys.executable, "manage.py"]
    subprocess.run([*run, "migrate", "-v", "0"], cwd=ROOT, env=env, check=True, timeout=120)  # noqa: S603
    send = (
        "from importer.jobs.tasks import record_worker_heartbeat; record_worker_heartbeat.delay()"
    )
    subprocess.run(  # noqa: S603
        [*run, "shell", "-c", send], cwd=ROOT, env=env, check=True, timeout=60
    )
    celery = [sys.executable, "-m", "celery", "-A", "snapshots_portal", "worker", "--pool", "solo"]
    celery += ["--loglevel", "WARNING", "--without-gossip", "--without-mingle"]
    worker = start_process(celery, env=env, log_path=tmp_path / "worker.log")

    def heartbeats() -> int:
        with sqlite3.connect(tmp_path / "portal.sqlite3", timeout=10) as db:
            return int(db.execute("SELECT COUNT(*) FROM importer_workerheartbeat").fetchone()[0])

    try:
        assert wait_until(heartbeats, seconds=60, interval=0.3) == 1, worker.log()
    finally:
        worker.stop()
