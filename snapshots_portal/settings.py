"""Snapshots Portal settings, read from environment variables.

With `DEBUG=1` every value has a default that serves a local run (SQLite, an embedded broker, the
sandbox API). `DEBUG` defaults to 0, production: it sets `SECRET_KEY`, `PORTAL_ENCRYPTION_KEY`,
`PORTAL_AUDIT_KEY`, `DATABASE_URL`, `CELERY_BROKER_URL` and `ALLOWED_HOSTS`; see the README's
configuration table.
A bad value stops the process at start with `ImproperlyConfigured` naming the variable.
"""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
# Where a local run keeps its SQLite file, broker queue and beat schedule.
VAR_DIR = Path(os.environ.get("PORTAL_VAR_DIR", BASE_DIR / "var"))
VAR_DIR.mkdir(parents=True, exist_ok=True)

TRUE_WORDS = {"1", "true", "yes", "on"}
FALSE_WORDS = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default).strip()


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    word = raw.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ImproperlyConfigured(f"{name} must be 1/0, true/false, yes/no or on/off, not {raw!r}")


def env_int(name: str, default: int, *, minimum: int, maximum: int) -> int:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, not {raw!r}") from None
    if not minimum <= value <= maximum:
        raise ImproperlyConfigured(f"{name} must be between {minimum} and {maximum}, not {value}")
    return value


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def env_url(name: str, default: str, *, schemes: set[str]) -> str:
    value = env_str(name, default)
    parts = urlsplit(value)
    if parts.scheme not in schemes or not parts.netloc:
        allowed = ", ".join(sorted(f"{scheme}://" for scheme in schemes))
        raise ImproperlyConfigured(f"{name} must be a URL starting with {allowed}, not {value!r}")
    return value.rstrip("/")


# Off unless asked for: a production start that forgot the variable gets the secure defaults and
# stops until its secrets are set, rather than running with the local-only keys. `make run`, the
# tests and the benches set DEBUG=1.
DEBUG = env_bool("DEBUG", False)

_DEV_SECRET_KEY = "django-insecure-local-only-never-use-in-production"  # noqa: S105
SECRET_KEY = env_str("SECRET_KEY", _DEV_SECRET_KEY if DEBUG else "")
if not SECRET_KEY:
    raise ImproperlyConfigured(
        "SECRET_KEY must be set (50+ random characters) when DEBUG is 0 or unset; "
        "for a local run set DEBUG=1"
    )


def _default_encryption_key() -> str:
    # Local runs only: derived from SECRET_KEY so a fresh checkout works without set-up.
    digest = hashlib.sha256(b"portal-encryption-key:" + SECRET_KEY.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode()


# Fernet key that encrypts secrets at rest (pre-signed URLs in flight, team credentials).
PORTAL_ENCRYPTION_KEY = env_str("PORTAL_ENCRYPTION_KEY", _default_encryption_key() if DEBUG else "")
if not PORTAL_ENCRYPTION_KEY:
    raise ImproperlyConfigured(
        "PORTAL_ENCRYPTION_KEY must be set when DEBUG is 0 or unset (for a local run set "
        "DEBUG=1); make one with: python -c "
        "'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'"
    )
# Several comma-separated keys rotate: the first encrypts, every one of them decrypts.
for _key in PORTAL_ENCRYPTION_KEY.split(","):
    try:
        if len(base64.urlsafe_b64decode(_key.strip().encode())) != 32:
            raise ValueError
    except ValueError:
        raise ImproperlyConfigured(
            "PORTAL_ENCRYPTION_KEY must be Fernet keys (32 bytes, url-safe base64), comma-separated"
        ) from None

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]" if DEBUG else "")
if not ALLOWED_HOSTS:
    raise ImproperlyConfigured(
        "ALLOWED_HOSTS must name the portal's host names when DEBUG is 0 or unset "
        "(for a local run set DEBUG=1)"
    )
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")


def _default_audit_key() -> str:
    # Local runs only: derived from SECRET_KEY, like the encryption key.
    return hashlib.sha256(b"portal-audit-key:" + SECRET_KEY.encode()).hexdigest()


# HMAC keys that sign the audit chain (importer.audit), kept out of the database so that whoever
# can write the table cannot re-sign it. Several comma-separated keys rotate: the first signs new
# entries, every one of them verifies old ones.
PORTAL_AUDIT_KEYS = env_list("PORTAL_AUDIT_KEY", _default_audit_key() if DEBUG else "")
_MAKE_AUDIT_KEY = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
if not PORTAL_AUDIT_KEYS:
    raise ImproperlyConfigured(
        "PORTAL_AUDIT_KEY must be set when DEBUG is 0 or unset (for a local run set DEBUG=1); "
        f"make one with: {_MAKE_AUDIT_KEY}"
    )
if any(len(_key) < 32 for _key in PORTAL_AUDIT_KEYS):
    raise ImproperlyConfigured(
        "PORTAL_AUDIT_KEY must be keys of 32 or more characters, comma-separated; "
        f"make one with: {_MAKE_AUDIT_KEY}"
    )

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_htmx",
    "axes",
    "csp",
    "importer",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # Early, so that every answer of the middleware below (lock-out pages included) carries it.
    "csp.middleware.CSPMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    # Before the CSRF check, which would answer a POST over the upload limits with a bare 400.
    "importer.core.oversize.UnreadablePostMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Last, as django-axes requires: it turns a locked-out login into its lock-out answer.
    "axes.middleware.AxesMiddleware",
]

AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
# Lock a user name out from one address after 5 failed logins, for 15 minutes.
AXES_FAILURE_LIMIT = env_int("PORTAL_LOGIN_FAILURE_LIMIT", 5, minimum=1, maximum=100)
AXES_COOLOFF_TIME = env_int("PORTAL_LOGIN_LOCKOUT_MINUTES", 15, minimum=1, maximum=24 * 60) / 60
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
# And lock an address out after this many failed logins, whatever the names tried. Axes has one
# limit for all its parameters, so this second one is the portal's handler's
# (importer.audit.lockout).
PORTAL_LOGIN_ADDRESS_FAILURE_LIMIT = env_int(
    "PORTAL_LOGIN_ADDRESS_FAILURE_LIMIT", 20, minimum=1, maximum=10000
)
AXES_HANDLER = "importer.audit.lockout.PortalAxesHandler"
# The same client address as the audit log: behind the TLS proxy, the one it forwarded.
AXES_CLIENT_IP_CALLABLE = "importer.audit.addresses.client_ip"
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_VERBOSE = False

ROOT_URLCONF = "snapshots_portal.urls"
WSGI_APPLICATION = "snapshots_portal.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "importer.teams.context_processors.portal",
            ],
        },
    },
]


def _database(url: str) -> dict[str, Any]:
    try:
        config: dict[str, Any] = dict(dj_database_url.parse(url, conn_max_age=60))
    except ValueError as error:
        raise ImproperlyConfigured(f"DATABASE_URL is not a database URL: {error}") from None
    if config["ENGINE"] == "django.db.backends.sqlite3":
        # The web server and the worker share the file: WAL lets readers and one writer work
        # at once, IMMEDIATE transactions and a busy timeout make writers wait, not fail.
        config["CONN_MAX_AGE"] = 0
        config["OPTIONS"] = {
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
        }
        # Tests share their database with real worker processes, so it must be a file.
        config["TEST"] = {"NAME": str(VAR_DIR / "test.sqlite3")}
    elif config["ENGINE"] == "django.db.backends.postgresql":
        config["CONN_HEALTH_CHECKS"] = True
        config.setdefault("OPTIONS", {})["connect_timeout"] = 5
    return config


DATABASE_URL = env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'portal.sqlite3'}")
DATABASES = {"default": _database(DATABASE_URL)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}

# Sessions end after 8 hours, or when the browser closes.
SESSION_COOKIE_AGE = env_int("PORTAL_SESSION_SECONDS", 8 * 3600, minimum=300, maximum=30 * 86400)
SESSION_EXPIRE_AT_BROWSER_CLOSE = True
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
# Content-Security-Policy on every page (django-csp): scripts and styles only from our own
# static files, never inline (htmx is configured by <meta name="htmx-config">), so markup that
# slips through escaping cannot run; no framing, no <base>, no plugins, forms post only here.
CONTENT_SECURITY_POLICY: dict[str, Any] = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'"],
        "frame-ancestors": ["'none'"],
        "form-action": ["'self'"],
        "base-uri": ["'none'"],
        "object-src": ["'none'"],
    }
}

# Behind a TLS proxy: trust its X-Forwarded-Proto, and its X-Forwarded-For for the client address
# of the audit log and the login lock-out: the entry appended by the outermost of this many
# proxies (importer.audit.addresses.client_ip).
PORTAL_BEHIND_TLS_PROXY = env_bool("PORTAL_BEHIND_TLS_PROXY", False)
PORTAL_PROXY_COUNT = env_int("PORTAL_PROXY_COUNT", 1, minimum=1, maximum=10)


def env_token(name: str) -> str:
    """A bearer token that opens a page to machines: empty (closed), or 32+ printable ASCII."""
    token = env_str(name)
    if token and (len(token) < 32 or not all("!" <= char <= "~" for char in token)):
        raise ImproperlyConfigured(
            f"{name} must be 32 or more ASCII characters without spaces; make one with: "
            "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
        )
    return token


# /healthz tells the public its status only; `Authorization: Bearer <this>` (or a logged-in staff
# user or team admin) also gets each check's detail. Unset: no token opens them.
PORTAL_HEALTH_TOKEN = env_token("PORTAL_HEALTH_TOKEN")
# /metrics (Prometheus text) answers only `Authorization: Bearer <this>`. Unset: 404, closed.
PORTAL_METRICS_TOKEN = env_token("PORTAL_METRICS_TOKEN")

if not DEBUG:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = env_bool("PORTAL_SSL_REDIRECT", True)
    SECURE_HSTS_SECONDS = env_int("PORTAL_HSTS_SECONDS", 31536000, minimum=0, maximum=63072000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("PORTAL_HSTS_INCLUDE_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD = env_bool("PORTAL_HSTS_PRELOAD", True)
    if not SECURE_HSTS_PRELOAD:
        # Opting out of the browser preload list is a deliberate choice, not an oversight.
        SILENCED_SYSTEM_CHECKS = ["security.W021"]
    if PORTAL_BEHIND_TLS_PROXY:
        # The proxy terminates TLS and says so in this header; trust it only behind that proxy.
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# --- OUTSCALE API (names follow OUTSCALE's own SDK) ---------------------------------------
OSC_REGION = env_str("OSC_REGION", "eu-west-2")
if not OSC_REGION.replace("-", "").isalnum():
    raise ImproperlyConfigured(f"OSC_REGION must look like eu-west-2, not {OSC_REGION!r}")
# Unset means the sandbox on this machine in a local run (DEBUG=1), OUTSCALE's endpoint otherwise.
SANDBOX_ENDPOINT_API = "http://127.0.0.1:8787/api/v1"
OSC_ENDPOINT_API = env_url(
    "OSC_ENDPOINT_API",
    SANDBOX_ENDPOINT_API if DEBUG else f"https://api.{OSC_REGION}.outscale.com/api/v1",
    schemes={"http", "https"},
)
# The sandbox's demo credentials in a local run; production names its own.
OSC_ACCESS_KEY = env_str("OSC_ACCESS_KEY", "SANDBOXACCESSKEY0000" if DEBUG else "")
OSC_SECRET_KEY = env_str(
    "OSC_SECRET_KEY", "sandbox-secret-key-0000000000000000000000" if DEBUG else ""
)
OSC_CONNECT_TIMEOUT = env_int("OSC_CONNECT_TIMEOUT", 5, minimum=1, maximum=60)
OSC_READ_TIMEOUT = env_int("OSC_READ_TIMEOUT", 30, minimum=1, maximum=300)

# --- Import pipeline ----------------------------------------------------------------------
PORTAL_POLL_SECONDS = env_int("PORTAL_POLL_SECONDS", 5, minimum=1, maximum=3600)
# Extra hosts (host or host:port) allowed in pre-signed URLs besides OUTSCALE's OOS endpoints.
PORTAL_URL_HOSTS = env_list("PORTAL_URL_HOSTS")
# Extra hosts (host or host:port) a team may name as its API endpoint, besides
# api.<region>.outscale.com (OSC_ENDPOINT_API's own host is always admitted).
PORTAL_API_HOSTS = env_list("PORTAL_API_HOSTS")
# Webhooks may go to any public host; these (host:port) are admitted over plain http in a local
# run with PORTAL_ALLOW_HTTP_URLS (a receiver on this machine).
PORTAL_WEBHOOK_HOSTS = env_list("PORTAL_WEBHOOK_HOSTS")
# Relaxes the scheme to http:// for hosts listed exactly (host:port) in the lists above, for a
# local run with the sandbox. It admits no other host, address or port.
PORTAL_ALLOW_HTTP_URLS = env_bool("PORTAL_ALLOW_HTTP_URLS", False)
if PORTAL_ALLOW_HTTP_URLS and not DEBUG:
    raise ImproperlyConfigured(
        "PORTAL_ALLOW_HTTP_URLS is for a local run with the sandbox only and is refused when "
        "DEBUG=0: unset it (production reaches object stores, APIs and webhooks over https)."
    )


def _check_host_list(name: str, entries: list[str]) -> None:
    from importer.core.net.guard import normalised_entries

    try:
        normalised_entries(entries)
    except ValueError as error:
        raise ImproperlyConfigured(f"{name}: {error}") from None


for _name in ("PORTAL_URL_HOSTS", "PORTAL_API_HOSTS", "PORTAL_WEBHOOK_HOSTS"):
    _check_host_list(_name, globals()[_name])

# --- Celery -------------------------------------------------------------------------------
_broker = env_str("CELERY_BROKER_URL")
# Loggers quieter than the rest (LOGGING, below).
_QUIET_LOGGERS: dict[str, dict[str, str]] = {}
if _broker:
    CELERY_BROKER_URL = env_url("CELERY_BROKER_URL", "", schemes={"redis", "rediss"})
    # Redis redelivers an unacknowledged task after this; every time limit stays well under it.
    CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, Any] = {
        "visibility_timeout": 3600,
        "socket_connect_timeout": 3,
        "socket_timeout": 10,
    }
else:
    # The embedded default: a queue in files, so a local run needs no broker server.
    _queue_dir = VAR_DIR / "broker"
    for _sub in ("out", "processed", "control"):
        (_queue_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_URL = "filesystem://"
    # kombu warns at every start that this URL names no host, which it never needs.
    _QUIET_LOGGERS["kombu.connection"] = {"level": "ERROR"}
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_queue_dir / "out"),
        "data_folder_out": str(_queue_dir / "out"),
        "processed_folder": str(_queue_dir / "processed"),
        "control_folder": str(_queue_dir / "control"),
        "store_processed": False,
    }
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = 120
CELERY_TASK_TIME_LIMIT = 180
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_CONNECTION_TIMEOUT = 3
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
CELERY_BEAT_SCHEDULE: dict[str, dict[str, Any]] = {
    "worker-heartbeat": {"task": "importer.tasks.record_worker_heartbeat", "schedule": 30.0},
    # A poll that waited longer than one interval is stale: the next one is already due.
    "poll-imports": {
        "task": "importer.tasks.poll_imports",
        "schedule": float(PORTAL_POLL_SECONDS),
        "options": {"expires": float(PORTAL_POLL_SECONDS)},
    },
    "sweep-imports": {
        "task": "importer.tasks.sweep_imports",
        "schedule": 60.0,
        "options": {"expires": 60.0},
    },
    "poll-exports": {
        "task": "importer.export_tasks.poll_exports",
        "schedule": float(PORTAL_POLL_SECONDS),
        "options": {"expires": float(PORTAL_POLL_SECONDS)},
    },
    "sweep-exports": {
        "task": "importer.export_tasks.sweep_exports",
        "schedule": 60.0,
        "options": {"expires": 60.0},
    },
    "poll-derived": {
        "task": "importer.lifecycle.poll_derived",
        "schedule": float(PORTAL_POLL_SECONDS),
        "options": {"expires": float(PORTAL_POLL_SECONDS)},
    },
    "sweep-derived": {
        "task": "importer.lifecycle.sweep_derived",
        "schedule": 60.0,
        "options": {"expires": 60.0},
    },
    "sweep-bulk-items": {
        "task": "importer.bulk.sweep_items",
        "schedule": 60.0,
        "options": {"expires": 60.0},
    },
    "dispatch-notifications": {
        "task": "importer.notifications.dispatch_notifications",
        "schedule": float(PORTAL_POLL_SECONDS),
        "options": {"expires": float(PORTAL_POLL_SECONDS)},
    },
    "sweep-deliveries": {
        "task": "importer.notifications.sweep_deliveries",
        "schedule": 60.0,
        "options": {"expires": 60.0},
    },
}

# --- Cache and sessions -------------------------------------------------------------------
# One cache shared by every process: the web server's sessions, and each team's change version,
# which the workers bump and the progress poll compares (importer.core.changes). A cache per
# process (Django's local-memory one) would never see a worker's bump, so it is no choice here.
# Production: Redis (another database number than the broker's: flushing a cache must never
# empty the queue). A local run: files under var/cache, shared by its web server and worker.
PORTAL_CACHE_URL = env_str("PORTAL_CACHE_URL")
if PORTAL_CACHE_URL:
    PORTAL_CACHE_URL = env_url("PORTAL_CACHE_URL", "", schemes={"redis", "rediss"})
    CACHES: dict[str, dict[str, Any]] = {
        "default": {
            # Django's, with a Redis that does not answer taken for a miss (importer.core.cache).
            "BACKEND": "importer.core.cache.FailSoftRedisCache",
            "LOCATION": PORTAL_CACHE_URL,
            "KEY_PREFIX": "portal",
            # A cache that does not answer within this is an error, never a hung request.
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
        }
    }
elif DEBUG:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(VAR_DIR / "cache"),
            "OPTIONS": {"MAX_ENTRIES": 20000},
        }
    }
else:
    raise ImproperlyConfigured(
        "PORTAL_CACHE_URL must name a Redis server (redis://host:6379/1) when DEBUG is 0 or "
        "unset: sessions and the progress poll's change versions are shared by every process "
        "through it. It may be the broker's server, with another database number. For a local "
        "run set DEBUG=1"
    )
# Sessions are read from the cache (no query) and written through to the database: a cache
# that loses a key (evicted, restarted) costs one query, never a login. The "cache" engine
# would save that write, and log everyone out whenever Redis is flushed or evicts. Why the
# cached copy's life is capped: importer.core.sessions.
SESSION_ENGINE = "importer.core.sessions"

# --- Email (notifications) ----------------------------------------------------------------
# The console backend prints emails in a local run; production names its SMTP server.
EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25, minimum=1, maximum=65535)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10, minimum=1, maximum=120)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "snapshots-portal@localhost")

# "plain" for a person, "json" for a log pipeline (importer.core.logs: one object a line).
PORTAL_LOG_FORMAT = env_str("PORTAL_LOG_FORMAT", "plain").lower()
if PORTAL_LOG_FORMAT not in ("plain", "json"):
    raise ImproperlyConfigured(
        f"PORTAL_LOG_FORMAT must be plain or json, not {env_str('PORTAL_LOG_FORMAT')!r}"
    )
LOGGING: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "importer.core.logs.JsonFormatter"},
    },
    # Every record passes the redaction filter: no pre-signed URL signature reaches a log.
    "filters": {"redact": {"()": "importer.core.redaction.SignatureRedactingFilter"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": PORTAL_LOG_FORMAT,
            "filters": ["redact"],
        }
    },
    "root": {"handlers": ["console"], "level": env_str("PORTAL_LOG_LEVEL", "INFO").upper()},
    # django-axes logs every successful login at INFO; the audit log already records them.
    "loggers": {"axes": {"level": "WARNING"}, **_QUIET_LOGGERS},
}

STATIC_ROOT.mkdir(parents=True, exist_ok=True)
