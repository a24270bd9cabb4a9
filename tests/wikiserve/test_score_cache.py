"""The score cache: the in-process LRU, and a real Redis (Debian's redis-server) started here."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import orjson
import pytest
from prometheus_client import REGISTRY

from dev.redis_server import RedisProcess, free_port, running_redis
from wikiserve.config import ScoreCacheSettings, ServerSettings
from wikiserve.score_cache import MemoryScoreCache, RedisScoreCache, ScoreKey, build_score_cache

ENTRY = {
    "score": {"prediction": False, "probability": {"false": 0.943608517707491, "true": 0.056391482292509024}},
    "features": {"feature.revision.user.is_anon": False, "feature.wikitext.revision.chars": 1234, "r": 0.1},
}
KEY = ScoreKey("enwiki", "damaging", "0.5.1", 73, False)


def counter(name: str, backend: str) -> float:
    return REGISTRY.get_sample_value(name, {"backend": backend}) or 0.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_a_cached_entry_serializes_to_the_same_bytes_and_is_a_copy():
    cache = MemoryScoreCache(10, 60)
    await cache.set_many({KEY: ENTRY})
    found = (await cache.get_many([KEY]))[KEY]
    assert orjson.dumps(found) == orjson.dumps(ENTRY)
    found["score"]["prediction"] = True
    assert (await cache.get_many([KEY]))[KEY] == ENTRY


async def test_every_part_of_the_key_matters():
    cache = MemoryScoreCache(10, 60)
    await cache.set_many({KEY: ENTRY})
    others = [
        ScoreKey("enwiki", "damaging", "0.5.2", 73, False),  # another model version
        ScoreKey("enwiki", "goodfaith", "0.5.1", 73, False),
        ScoreKey("ptwiki", "damaging", "0.5.1", 73, False),
        ScoreKey("enwiki", "damaging", "0.5.1", 74, False),
        ScoreKey("enwiki", "damaging", "0.5.1", 73, True),  # with features
    ]
    assert await cache.get_many(others) == {}
    assert await cache.get_many([KEY]) == {KEY: ENTRY}


async def test_the_least_recently_used_entry_goes_first():
    cache = MemoryScoreCache(2, 60)
    keys = [ScoreKey("enwiki", "damaging", "1", rev_id, False) for rev_id in (1, 2, 3)]
    await cache.set_many({keys[0]: ENTRY, keys[1]: ENTRY})
    await cache.get_many([keys[0]])  # 1 is now the most recently used
    await cache.set_many({keys[2]: ENTRY})
    assert set(await cache.get_many(keys)) == {keys[0], keys[2]}


async def test_entries_expire_after_the_ttl():
    clock = Clock()
    cache = MemoryScoreCache(10, 30, clock=clock)
    await cache.set_many({KEY: ENTRY})
    clock.now += 29.9
    assert await cache.get_many([KEY]) == {KEY: ENTRY}
    clock.now += 0.2
    assert await cache.get_many([KEY]) == {}


async def test_hits_and_misses_are_counted():
    cache = MemoryScoreCache(10, 60)
    hits, misses = counter("score_cache_hits_total", "memory"), counter("score_cache_misses_total", "memory")
    await cache.set_many({KEY: ENTRY})
    await cache.get_many([KEY, ScoreKey("enwiki", "damaging", "0.5.1", 99, False)])
    assert counter("score_cache_hits_total", "memory") == hits + 1
    assert counter("score_cache_misses_total", "memory") == misses + 1


def test_settings_choose_the_backend():
    assert isinstance(build_score_cache(ScoreCacheSettings()), MemoryScoreCache)
    assert build_score_cache(ScoreCacheSettings(size=0)) is None
    settings = ServerSettings.from_env({"SCORE_CACHE_SIZE": "5", "SCORE_CACHE_TTL_S": "7.5"}).score_cache
    memory = build_score_cache(settings)
    assert isinstance(memory, MemoryScoreCache) and (memory.size, memory.ttl_s) == (5, 7.5)
    redis = build_score_cache(ServerSettings.from_env({"REDIS_URL": "redis://127.0.0.1:1/0"}).score_cache)
    assert isinstance(redis, RedisScoreCache)


def test_a_bad_cache_size_stops_start_up_naming_the_variable():
    with pytest.raises(ValueError, match="SCORE_CACHE_SIZE"):
        ServerSettings.from_env({"SCORE_CACHE_SIZE": "many"})


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisProcess]:
    with running_redis() as server:
        yield server


async def test_redis_is_shared_by_replicas_and_entries_expire(redis):
    writer = RedisScoreCache(redis.url, ttl_s=60, timeout_s=1)
    reader = RedisScoreCache(redis.url, ttl_s=60, timeout_s=1)  # another replica
    key = ScoreKey("enwiki", "damaging", "0.5.1", 1001, True)
    await writer.set_many({key: ENTRY})
    found = await reader.get_many([key, KEY])
    assert list(found) == [key] and orjson.dumps(found[key]) == orjson.dumps(ENTRY)
    ttl_ms = int(redis.command("PTTL", key.text()).lstrip(":"))
    assert 0 < ttl_ms <= 60_000
    await writer.close()
    await reader.close()


async def test_redis_down_means_no_cache_and_a_warning_never_an_error(caplog):
    port = free_port()  # nothing listens here
    cache = RedisScoreCache(f"redis://127.0.0.1:{port}/0", ttl_s=60, timeout_s=0.5)
    errors = counter("score_cache_errors_total", "redis")
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="wikiserve.score_cache"):
        assert await cache.get_many([KEY]) == {}
        await cache.set_many({KEY: ENTRY})  # within the back-off period: not even tried
    assert time.monotonic() - started < 2
    assert counter("score_cache_errors_total", "redis") == errors + 1
    assert [record.message for record in caplog.records] == ["Score cache unavailable: serving without it"]
    await cache.close()


async def test_redis_stopping_under_a_running_cache_degrades_then_recovers():
    with running_redis() as server:
        cache = RedisScoreCache(server.url, ttl_s=60, timeout_s=0.5, retry_after_s=0.2)
        await cache.set_many({KEY: ENTRY})
        assert await cache.get_many([KEY]) == {KEY: ENTRY}
        server.stop()
        errors = counter("score_cache_errors_total", "redis")
        assert await cache.get_many([KEY]) == {}
        assert counter("score_cache_errors_total", "redis") == errors + 1
        with running_redis(server.port):  # back on the same address, empty
            time.sleep(0.3)  # past the back-off period
            await cache.set_many({KEY: ENTRY})
            assert await cache.get_many([KEY]) == {KEY: ENTRY}
        await cache.close()
