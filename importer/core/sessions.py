"""Sessions read from the shared cache and written through to the database (Django's cached_db),
with the cached copy's life capped.

Why cached_db and not the cache alone: a session in the cache only is lost whenever Redis is
flushed, restarted without persistence or evicts under memory pressure, logging everyone out; with
cached_db that costs one query. The price is a database write at each session change (a login, a
team chosen), which is rare. Why the cap: a logout while the cache does not answer deletes the
session from the database but cannot delete the cached copy (importer.core.cache drops the write);
that copy would otherwise outlive the logout for the session's whole length (8 hours). Capped, it
goes within CACHED_SECONDS, and an active session costs one query per CACHED_SECONDS.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib.auth import SESSION_KEY
from django.contrib.sessions.backends.cached_db import SessionStore as CachedDbStore
from django.contrib.sessions.models import Session
from django.http import HttpRequest

CACHED_SECONDS = 300


class SessionStore(CachedDbStore):
    # cached_db's own, which the type stubs do not name.
    _cache: Any
    _session: dict[str, Any]
    _get_session_from_db: Callable[[], Session | None]

    def load(self) -> dict[str, Any]:
        data = self._cache.get(self.cache_key)
        if data is not None:
            return dict(data)
        stored = self._get_session_from_db()
        if stored is None:
            return {}
        data = self.decode(stored.session_data)
        self._cache.set(self.cache_key, data, self._cached_seconds(stored.expire_date))
        return dict(data)

    def save(self, must_create: bool = False) -> None:
        # The database's copy first, as cached_db does; then the cache's, capped.
        super(CachedDbStore, self).save(must_create)
        self._cache.set(self.cache_key, self._session, self._cached_seconds())

    def _cached_seconds(self, expiry: Any = None) -> int:
        return min(
            self.get_expiry_age(expiry=expiry) if expiry else self.get_expiry_age(), CACHED_SECONDS
        )


def cached_copy_key(request: HttpRequest) -> str | None:
    """The cache key of the request's session's cached copy, for a caller that reads it in the
    same round trip as other keys (the unchanged poll); None without a plausible session cookie
    (Django's session keys are 32 lowercase letters and digits)."""
    key = request.COOKIES.get(settings.SESSION_COOKIE_NAME, "")
    if not (8 <= len(key) <= 64 and key.isalnum()):
        return None
    return f"{SessionStore.cache_key_prefix}{key}"


def is_signed_in(cached_copy: Any) -> bool:
    """Whether a session's cached copy (as `cached_copy_key` finds it) belongs to a signed-in
    user: a logout deletes it, an expired one is gone from the cache with its expiry."""
    return isinstance(cached_copy, dict) and SESSION_KEY in cached_copy
