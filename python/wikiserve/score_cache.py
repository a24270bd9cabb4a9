"""The score cache: a score of (wiki, model, model version, revision, features flag) never changes.

Two backends behind one interface. By default an in-process LRU (size and TTL from the settings); with
`REDIS_URL`, Redis, shared by every replica. Entries are stored as JSON text, so what a hit returns is a
fresh copy that serializes to exactly the bytes the original did. The model version is part of the key:
a new binary never serves its predecessor's scores. Redis failing is never an error for the client: the
request is served without the cache, a warning is logged (at most once per back-off period) and
`score_cache_errors_total` counts it; Redis is not tried again until the back-off period is over.
"""

from __future__ import annotations

import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from wikiserve import metrics
from wikiserve.config import ScoreCacheSettings

logger = logging.getLogger(__name__)

Entry = dict[str, Any]


@dataclass(frozen=True)
class ScoreKey:
    context: str  # the wiki's dbname
    model: str
    version: str
    rev_id: int
    features: bool

    def text(self) -> str:
        return f"score:v1:{self.context}:{self.model}:{self.version}:{self.rev_id}:{int(self.features)}"


class ScoreCache(Protocol):
    backend: str

    async def get_many(self, keys: Sequence[ScoreKey]) -> dict[ScoreKey, Entry]: ...

    async def set_many(self, entries: Mapping[ScoreKey, Entry]) -> None: ...

    async def close(self) -> None: ...


def _count(backend: str, keys: Sequence[ScoreKey], found: Mapping[ScoreKey, Entry]) -> None:
    metrics.SCORE_CACHE_HITS.labels(backend=backend).inc(len(found))
    metrics.SCORE_CACHE_MISSES.labels(backend=backend).inc(len(keys) - len(found))


class MemoryScoreCache:
    """A least-recently-used map of at most `size` entries, each dropped `ttl_s` after it was stored."""

    backend = "memory"

    def __init__(self, size: int, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.size = size
        self.ttl_s = ttl_s
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, str]] = OrderedDict()

    async def get_many(self, keys: Sequence[ScoreKey]) -> dict[ScoreKey, Entry]:
        now = self._clock()
        found = {}
        for key in keys:
            text = key.text()
            stored = self._entries.get(text)
            if stored is None:
                continue
            expires, value = stored
            if expires <= now:
                del self._entries[text]
                continue
            self._entries.move_to_end(text)
            found[key] = json.loads(value)
        _count(self.backend, keys, found)
        return found

    async def set_many(self, entries: Mapping[ScoreKey, Entry]) -> None:
        expires = self._clock() + self.ttl_s
        for key, entry in entries.items():
            text = key.text()
            self._entries[text] = (expires, json.dumps(entry))
            self._entries.move_to_end(text)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    async def close(self) -> None:
        self._entries.clear()


class RedisScoreCache:
    """Redis at `url` (SET with an expiry, MGET); any Redis failure means "no cache" for a while."""

    backend = "redis"

    def __init__(self, url: str, ttl_s: float, timeout_s: float, retry_after_s: float = 5.0) -> None:
        import redis.asyncio  # only images that may use Redis need the client

        self.ttl_s = ttl_s
        self.retry_after_s = retry_after_s
        self._client = redis.asyncio.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, retry_on_timeout=False
        )
        self._redis_error: type[Exception] = redis.RedisError
        self._down_until = 0.0

    async def get_many(self, keys: Sequence[ScoreKey]) -> dict[ScoreKey, Entry]:
        if not keys or self._is_down():
            return {}
        try:
            values = await self._client.mget([key.text() for key in keys])
        except (self._redis_error, OSError) as error:
            self._failed("read", error)
            return {}
        found = {key: json.loads(value) for key, value in zip(keys, values, strict=True) if value is not None}
        _count(self.backend, keys, found)
        return found

    async def set_many(self, entries: Mapping[ScoreKey, Entry]) -> None:
        if not entries or self._is_down():
            return
        try:
            async with self._client.pipeline(transaction=False) as pipeline:
                for key, entry in entries.items():
                    pipeline.set(key.text(), json.dumps(entry), px=int(self.ttl_s * 1000))
                await pipeline.execute()
        except (self._redis_error, OSError) as error:
            self._failed("write", error)

    async def close(self) -> None:
        await self._client.aclose()

    def _is_down(self) -> bool:
        return time.monotonic() < self._down_until

    def _failed(self, operation: str, error: Exception) -> None:
        metrics.SCORE_CACHE_ERRORS.labels(backend=self.backend).inc()
        self._down_until = time.monotonic() + self.retry_after_s
        logger.warning(
            "Score cache unavailable: serving without it",
            extra={
                "operation": operation,
                "error": f"{type(error).__name__}: {error}",
                "retry_in_s": self.retry_after_s,
            },
        )


def build_score_cache(settings: ScoreCacheSettings) -> ScoreCache | None:
    """Redis when a URL is set, else the in-process LRU; None when the size is 0 (no cache)."""
    if settings.redis_url:
        return RedisScoreCache(settings.redis_url, settings.ttl_s, settings.redis_timeout_s)
    if settings.size <= 0:
        return None
    return MemoryScoreCache(settings.size, settings.ttl_s)
