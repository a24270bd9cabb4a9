"""Too much work is refused early (issue 18 §3), through real revscoring servers and the farm.

Admission: a server with MAX_IN_FLIGHT=3 and MediaWiki slowed by the fault proxy, so that three requests
stay in flight; what comes next is refused with 503 + Retry-After on every route, and the proxy proves no
MediaWiki call was made for it. The heavy lane's own bound, with the farm's 500 KB revision. The extraction
deadline: a server whose EXTRACTION_TIMEOUT_S (0.3 s) is below the time the 500 KB revision takes (~1 s).
"""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from testkit.events import revision_create_event
from testkit.faulty_mediawiki import FaultyMediaWiki
from testkit.servers import ServerProcess, start_server

ISVC = "enwiki-damaging"
LIMIT = 3


def _env(demo_models: Path, wiki_url: str, **extra: str) -> dict[str, str]:
    return {
        "INFERENCE_NAME": ISVC,
        "MODEL_PATH": str(demo_models / ISVC / "model.bin"),
        "WIKI_URL": wiki_url,
        "EXTRACTION_WORKERS": "1",
        "SCORE_CACHE_SIZE": "0",  # every request does its work
        "MISSING_REVISION_TTL_S": "0",
        **extra,
    }


@pytest.fixture(scope="module")
def bounded(proxy: FaultyMediaWiki, demo_models: Path) -> Iterator[ServerProcess]:
    env = _env(demo_models, proxy.url, MAX_IN_FLIGHT=str(LIMIT))
    server = start_server("revscoring-bounded", ["revscoring_server"], env, [ISVC])
    yield server
    assert server.stop() == 0, server.log_tail()


@pytest.fixture(scope="module")
def hurried(farm: Any, demo_models: Path) -> Iterator[ServerProcess]:
    env = _env(demo_models, farm.url, EXTRACTION_TIMEOUT_S="0.3")
    server = start_server("revscoring-deadline", ["revscoring_server"], env, [ISVC])
    yield server
    assert server.stop() == 0, server.log_tail()


def _special(farm: Any, name: str) -> int:
    return farm.manifest["enwiki"]["special"][name]


def _wait_for(condition: Any, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


def _assert_refused(response: requests.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers.get("Retry-After") == "1"
    assert "Traceback" not in response.text


def _asked_mediawiki_about(proxy: FaultyMediaWiki, rev_ids: set[int]) -> bool:
    """Whether any call the proxy saw names one of `rev_ids` (revids=a|b|c)."""
    named = {part for request in list(proxy.requests) for part in request.get("revids", "").split("|")}
    return bool(named & {str(rev) for rev in rev_ids})


def test_past_the_bound_every_route_is_refused_before_any_mediawiki_call(bounded, proxy, farm):
    good = _special(farm, "good_rev_id")
    # The refused requests ask for other revisions than the held ones: the proxy shows none reached it.
    others = [rev for page in farm.manifest["enwiki"]["pages"] for rev in page["rev_ids"] if rev != good][:2]
    proxy.clear()
    proxy.inject("delay", times=-1, delay_s=3.0)  # the admitted requests wait on MediaWiki, holding the bound
    with ThreadPoolExecutor(LIMIT) as pool:
        held = [pool.submit(bounded.predict, ISVC, {"rev_id": good}) for _ in range(LIMIT - 1)]
        _wait_for(lambda: len(proxy.requests) >= LIMIT - 1)  # two are in flight, at MediaWiki
        # One revision of the bound is free: a batch of two does not fit (the model's own accounting).
        too_big = bounded.predict(ISVC, {"rev_ids": others})
        held.append(pool.submit(bounded.predict, ISVC, {"rev_id": good}))
        _wait_for(lambda: len(proxy.requests) >= LIMIT)  # all three are in flight: the bound is full
        # Refused as soon as the headers are read; the connection stays usable (the body is discarded).
        kept = http.client.HTTPConnection("127.0.0.1", bounded.port, timeout=30)
        body = json.dumps({"rev_id": others[0]})
        kept.request("POST", f"/v1/models/{ISVC}:predict", body, {"Content-Type": "application/json"})
        on_kept = kept.getresponse()
        on_kept_body, connection = json.loads(on_kept.read()), kept.sock
        single = bounded.predict(ISVC, {"rev_id": others[0]})
        batch = bounded.predict(ISVC, {"rev_ids": [others[0]]})
        event = bounded.predict(ISVC, {"event": revision_create_event(farm.manifest["enwiki"], others[0])})
        ores = requests.get(
            f"{bounded.url}/v3/scores/enwiki/", params={"models": "damaging", "revids": others[0]}, timeout=30
        )
        # Health and metrics are never refused.
        ready = requests.get(f"{bounded.url}/v1/models/{ISVC}", timeout=30)
        live = requests.get(f"{bounded.url}/", timeout=30)
        scraped = requests.get(f"{bounded.url}/metrics", timeout=30)
        asked = _asked_mediawiki_about(proxy, set(others))
        proxy.clear()
        answers = [future.result() for future in held]
    assert not asked  # nothing refused reached MediaWiki
    assert on_kept.status == 503 and on_kept.getheader("Retry-After") == "1", on_kept_body
    assert f"limit of {LIMIT} revisions in flight" in on_kept_body["error"]
    kept.request("POST", f"/v1/models/{ISVC}:predict", body, {"Content-Type": "application/json"})
    again = kept.getresponse()
    scored = json.loads(again.read())["enwiki"]["scores"][str(others[0])]["damaging"]
    assert again.status == 200 and "score" in scored
    assert kept.sock is connection  # the same connection answered both
    kept.close()
    for refused in (too_big, single, batch, event):
        _assert_refused(refused)
        assert f"limit of {LIMIT} revisions in flight" in refused.json()["error"]
    _assert_refused(ores)
    assert ores.json()["error"]["code"] == "overloaded"
    assert ready.status_code == 200 and live.status_code == 200 and scraped.status_code == 200
    assert 'requests_refused_total{limit="revisions"} 6.0' in scraped.text
    assert all(answer.status_code == 200 for answer in answers), [a.text for a in answers]
    assert bounded.predict(ISVC, {"rev_id": others[0]}).status_code == 200  # the bound is given back
    assert _asked_mediawiki_about(proxy, {others[0]})  # (the proxy does see revision ids when asked)


def test_a_batch_larger_than_the_bound_is_served_when_alone(bounded, proxy, farm):
    proxy.clear()
    rev_ids = [rev for page in farm.manifest["enwiki"]["pages"] for rev in page["rev_ids"]][: LIMIT + 2]
    response = bounded.predict(ISVC, {"rev_ids": rev_ids})
    assert response.status_code == 200, response.text
    assert sorted(response.json()["enwiki"]["scores"]) == sorted(str(rev) for rev in set(rev_ids))


def test_a_flood_of_heavy_revisions_is_refused_past_the_heavy_lane_bound(bounded, proxy, farm):
    proxy.clear()
    large = _special(farm, "large_rev_id")
    with ThreadPoolExecutor(LIMIT) as pool:  # one heavy worker: two heavy revisions in flight at most
        futures = [pool.submit(bounded.predict, ISVC, {"rev_id": large}, timeout_s=120) for _ in range(LIMIT)]
        answers = [future.result() for future in futures]
    statuses = sorted(answer.status_code for answer in answers)
    assert statuses == [200, 200, 503], [answer.text for answer in answers]
    refused = next(answer for answer in answers if answer.status_code == 503)
    assert refused.headers.get("Retry-After") == "1"
    assert "heavy revisions in flight" in refused.json()["error"]


def test_a_revision_known_heavy_is_refused_unfetched_while_the_heavy_lane_is_full(bounded, proxy, farm):
    large = _special(farm, "large_rev_id")
    assert bounded.predict(ISVC, {"rev_id": large}, timeout_s=120).status_code == 200  # now known heavy
    proxy.clear()
    with ThreadPoolExecutor(2) as pool:  # the heavy lane's bound: two (one heavy worker)
        held = [pool.submit(bounded.predict, ISVC, {"rev_id": large}, timeout_s=120) for _ in range(2)]
        _wait_for(lambda: len(proxy.requests) >= 2 * 2)  # both fetched (revision, parent): now extracting
        time.sleep(0.3)  # their answers were parsed; tokenizing two 500 KB revisions on one worker takes >1 s
        calls = len(proxy.requests)
        refused = bounded.predict(ISVC, {"rev_id": large})
        fetched = len(proxy.requests) - calls
        answers = [future.result() for future in held]
    assert all(answer.status_code == 200 for answer in answers), [a.text for a in answers]
    _assert_refused(refused)
    assert "heavy revisions in flight" in refused.json()["error"]
    assert fetched == 0  # refused without asking MediaWiki again


def test_an_extraction_past_its_deadline_is_a_timeout_and_the_next_request_is_served(hurried, farm):
    large, good = _special(farm, "large_rev_id"), _special(farm, "good_rev_id")
    single = hurried.predict(ISVC, {"rev_id": large}, timeout_s=120)
    assert single.status_code == 504, single.text
    assert single.json()["error"] == "Feature extraction took longer than 0.3 s and was stopped."
    batch = hurried.predict(ISVC, {"rev_ids": [large, good]}, timeout_s=120)
    assert batch.status_code == 200, batch.text
    scores = batch.json()["enwiki"]["scores"]
    assert scores[str(large)][ISVC.split("-")[1]]["error"]["type"] == "TimeoutError"
    assert "score" in scores[str(good)][ISVC.split("-")[1]]
    ores = requests.get(
        f"{hurried.url}/v3/scores/enwiki/", params={"models": "damaging", "revids": large}, timeout=120
    )
    assert ores.json()["enwiki"]["scores"][str(large)]["damaging"]["error"]["type"] == "TimeoutError"
    after = hurried.predict(ISVC, {"rev_id": good})
    assert after.status_code == 200 and "score" in after.json()["enwiki"]["scores"][str(good)]["damaging"]
    metrics = requests.get(f"{hurried.url}/metrics", timeout=30).text
    assert 'feature_extraction_timeouts_total{how="interrupted"} 3.0' in metrics
