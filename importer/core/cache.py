"""The shared cache, when it is Redis: a Redis that does not answer is a cache miss, not an error.

Everything the portal keeps in the cache can be had again without it: sessions from the database
(cached_db), change versions by reading the rows (importer.core.changes), API listings by listing
again. So when Redis is down (or slower than the socket timeout), reads miss and writes are
dropped, with a warning at most every WARN_EVERY_SECONDS: pages keep working, more slowly, as the
reliability suite's "Redis down" scenario asks. What a dropped write costs is bounded where it is
made: see importer.core.changes.TOKEN_SECONDS and importer.core.sessions.CACHED_SECONDS.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from django.core.cache.backends.redis import RedisCache, RedisCacheClient
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

WARN_EVERY_SECONDS = 30.0
_last_warning = 0.0


def _unanswered(operation: str) -> None:
    global _last_warning
    now = time.monotonic()
    if now - _last_warning >= WARN_EVERY_SECONDS:
        _last_warning = now
        logger.warning("The cache (Redis) did not answer a %s: treated as a miss", operation)


class _FailSoftClient(RedisCacheClient):
    # Django's client's own, unknown to the type stubs.
    _client: Any  # redis.Redis
    _get_connection_pool: Any

    def get_client(self, key: Any = None, *, write: bool = False) -> Any:
        # Django makes a new redis.Redis around the pool at every call, and building one costs
        # redis-py about 0.25 ms (its table of response callbacks): the price of an unchanged
        # poll. A Redis object over a pool is safe to share between threads, so one per pool.
        pool = self._get_connection_pool(write)
        clients: dict[int, Any] = self.__dict__.setdefault("_clients", {})
        client = clients.get(id(pool))
        if client is None:
            client = clients[id(pool)] = self._client(connection_pool=pool)
        return client

    def get(self, key: Any, default: Any) -> Any:
        return _soft("read", default, super().get, key, default)

    def get_many(self, keys: Any) -> dict[Any, Any]:
        return dict(_soft("read", {}, super().get_many, keys))

    def has_key(self, key: Any) -> bool:
        return bool(_soft("read", False, super().has_key, key))

    def add(self, key: Any, value: Any, timeout: Any) -> bool:
        return bool(_soft("write", False, super().add, key, value, timeout))

    def set(self, key: Any, value: Any, timeout: Any) -> None:
        _soft("write", None, super().set, key, value, timeout)

    def set_many(self, data: Any, timeout: Any) -> None:
        _soft("write", None, super().set_many, data, timeout)

    def touch(self, key: Any, timeout: Any) -> bool:
        return bool(_soft("write", False, super().touch, key, timeout))

    def delete(self, key: Any) -> bool:
        return bool(_soft("write", False, super().delete, key))

    def delete_many(self, keys: Any) -> None:
        _soft("write", None, super().delete_many, keys)


def _soft(operation: str, missed: Any, call: Callable[..., Any], *args: Any) -> Any:
    """`call(*args)`, or `missed` (with a warning) when Redis does not answer."""
    try:
        return call(*args)
    except RedisError:
        _unanswered(operation)
        return missed


class FailSoftRedisCache(RedisCache):
    """Django's Redis cache, whose reads miss and writes drop while Redis does not answer."""

    def __init__(self, server: str, params: dict[str, Any]) -> None:
        super().__init__(server, params)
        self._class = _FailSoftClient
