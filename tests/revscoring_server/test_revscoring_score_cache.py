"""The score cache in real servers: in-process by default, Redis (a real redis-server) shared by replicas.

MediaWiki calls are counted by the proxy in front of the farm: a cached answer costs none.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from ores_testing import edits, metric_value, ores_get
from testkit.faulty_mediawiki import FaultyMediaWiki
from testkit.servers import ServerProcess, start_server

from dev.redis_server import RedisProcess, free_port, running_redis

ISVCS = ("enwiki-damaging", "enwiki-goodfaith")


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisProcess]:
    with running_redis() as server:
        yield server


def start(name: str, proxy: FaultyMediaWiki, models_dir: Path, isvcs=ISVCS, **env: str) -> ServerProcess:
    env = {"WIKI_URL": proxy.url, "EXTRACTION_WORKERS": "1", **env}
    args = ["revscoring_server", f"--models_dir={models_dir}", *[f"--isvc={isvc}" for isvc in isvcs]]
    return start_server(name, args, env, list(isvcs), timeout_s=300)


@pytest.fixture
def servers() -> Iterator[list[ServerProcess]]:
    started: list[ServerProcess] = []
    yield started
    for server in started:
        assert server.stop() == 0, server.log_tail()


def ores_scores(server: ServerProcess, rev_ids: list[int], features: bool = False):
    params = {"models": "damaging|goodfaith", "revids": "|".join(map(str, rev_ids))}
    return ores_get(server, "/v3/scores/enwiki/", **(params | ({"features": ""} if features else {})))


def test_in_process_cache_answers_the_same_bytes_without_mediawiki(proxy, demo_models, farm, servers):
    server = start("cache-memory", proxy, demo_models)
    servers.append(server)
    rev_ids = edits(farm, "enwiki", 4)
    proxy.clear()
    cold = ores_scores(server, rev_ids)
    assert cold.status_code == 200 and len(proxy.requests) == 2  # the revisions; the parents with the users
    hits = metric_value(server, "score_cache_hits_total", backend="memory")
    proxy.clear()
    warm = ores_scores(server, rev_ids)
    assert warm.content == cold.content
    assert proxy.requests == []
    assert metric_value(server, "score_cache_hits_total", backend="memory") == hits + 2 * len(rev_ids)
    # The KServe batch reads the same cache; the features flag is part of the key.
    batch = server.predict("enwiki-damaging", {"rev_ids": rev_ids})
    assert batch.status_code == 200 and proxy.requests == []
    assert batch.json()["enwiki"]["scores"] == {
        rev: {"damaging": entry["damaging"]} for rev, entry in cold.json()["enwiki"]["scores"].items()
    }
    with_features = ores_scores(server, rev_ids[:1], features=True)
    assert "features" in with_features.json()["enwiki"]["scores"][str(rev_ids[0])]["damaging"]
    assert proxy.requests  # a miss: fetched and extracted
    # A single revision is served by the same scorer and cache: the second answer is the first's bytes.
    proxy.clear()
    single = [server.predict("enwiki-goodfaith", {"rev_id": rev_ids[-1]}) for _ in range(2)]
    assert single[0].status_code == 200 and single[0].content == single[1].content
    assert proxy.requests == []  # scored by the ORES request above


def test_errors_are_not_cached(proxy, demo_models, servers):
    # Without the brief memory of missing revisions (test_revscoring_ores.py), to see the cache alone.
    server = start("cache-errors", proxy, demo_models, isvcs=("enwiki-damaging",), MISSING_REVISION_TTL_S="0")
    servers.append(server)
    for _ in range(2):
        proxy.clear()
        body = ores_get(server, "/v3/scores/enwiki/987654321/damaging").json()
        assert body["enwiki"]["scores"]["987654321"]["damaging"]["error"]["type"] == "RevisionNotFound"
        assert len(proxy.requests) == 1  # asked again every time


def versioned_copy(demo_models: Path, root: Path, isvc: str, version: str) -> Path:
    """The demo model of `isvc` with another version string, in a models dir of its own."""
    from revscoring import Model

    with open(demo_models / isvc / "model.bin", "rb") as handle:
        model = Model.load(handle)
    model.version = version
    (root / isvc).mkdir(parents=True)
    with open(root / isvc / "model.bin", "wb") as handle:
        model.dump(handle)
    return root


def test_redis_is_shared_by_replicas_and_keyed_by_model_version(
    proxy, demo_models, farm, redis, servers, tmp_path
):
    first = start("cache-redis-1", proxy, demo_models, REDIS_URL=redis.url)
    second = start("cache-redis-2", proxy, demo_models, REDIS_URL=redis.url)
    servers.extend([first, second])
    rev_ids = edits(farm, "enwiki", 3)
    proxy.clear()
    cold = ores_scores(first, rev_ids)
    assert cold.status_code == 200 and proxy.requests
    proxy.clear()
    shared = ores_scores(second, rev_ids)  # another replica: served from Redis
    assert shared.content == cold.content and proxy.requests == []
    assert ores_scores(first, rev_ids).content == cold.content  # and again, byte for byte
    assert metric_value(second, "score_cache_hits_total", backend="redis") == 2 * len(rev_ids)

    # A new binary (another version) on the same Redis never gets the old version's scores.
    models_dir = versioned_copy(demo_models, tmp_path / "models", "enwiki-damaging", "0.5.1-demo-retrained")
    newer = start("cache-redis-new", proxy, models_dir, isvcs=("enwiki-damaging",), REDIS_URL=redis.url)
    servers.append(newer)
    proxy.clear()
    body = ores_get(newer, "/v3/scores/enwiki/", models="damaging", revids="|".join(map(str, rev_ids))).json()
    assert body["enwiki"]["models"]["damaging"]["version"] == "0.5.1-demo-retrained"
    assert metric_value(newer, "score_cache_hits_total", backend="redis") == 0
    assert metric_value(newer, "score_cache_misses_total", backend="redis") == len(rev_ids)
    fetched = {int(rev) for call in proxy.requests if call.get("revids") for rev in call["revids"].split("|")}
    assert set(rev_ids) <= fetched  # it fetched and scored every revision itself


def test_redis_down_degrades_to_no_cache_with_a_warning(proxy, demo_models, farm, servers):
    server = start("cache-redis-down", proxy, demo_models, REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    servers.append(server)
    rev_ids = edits(farm, "enwiki", 2)
    for _ in range(2):
        response = ores_scores(server, rev_ids)
        assert response.status_code == 200
        assert all("score" in entry["damaging"] for entry in response.json()["enwiki"]["scores"].values())
    assert metric_value(server, "score_cache_errors_total", backend="redis") >= 1
    assert "Score cache unavailable" in server.log_tail(200)
