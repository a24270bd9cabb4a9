"""Security: hosts only from allowlists, no secrets in logs, models only from configured paths, unprivileged
images, and an EventGate client that verifies TLS (a local HTTPS receiver with a certificate made here)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import yaml
from reliability_kit import (
    MODEL_OF,
    OUTLINK_MODEL,
    REVSCORING_ISVC,
    HttpsEventReceiver,
    is_ready,
    log_lines,
    metric_delta,
    metric_samples,
    predictor_spec,
    revision_create_event,
    revscoring_spec,
    start_processes,
)
from testkit.servers import REPO_ROOT, ServerProcess

from outlink_server.languages import wikipedias

KINDS = ("revscoring", "predictor", "transformer")
MARKER = "Zq7-SECRET-MARKER-4417"


def good(kind: str, enwiki: dict[str, Any]) -> dict[str, Any]:
    if kind == "revscoring":
        return {"rev_id": enwiki["special"]["good_rev_id"]}
    return {"lang": "en", "page_title": enwiki["special"]["redirect_target"]}


# Hosts and URLs ------------------------------------------------------------------------------------------


def test_outlink_hosts_come_only_from_the_allowlist(servers, farm, proxy):
    """Every MediaWiki call names an allowlisted wiki in Host and goes to the configured endpoint's API."""
    allowed = {f"{lang}.wikipedia.org" for lang in wikipedias().dbname_of}
    sent = []
    for dbname in ("enwiki", "frwiki", "jawiki", "arwiki"):
        wiki = farm.manifest[dbname]
        page = wiki["pages"][0]
        for kind in ("predictor", "transformer"):
            body = {"wiki_id": dbname, "page_title": page["title"], "threshold": 0.9}
            sent.append(servers[kind].predict(OUTLINK_MODEL, body).status_code)
    evil = [{"lang": "en.evil.example", "page_id": 1}, {"wiki_id": "evil.example", "page_id": 1},
            {"lang": "en", "page_title": "//evil.example/w/api.php"}, {"lang": "en", "page_title": "@evil"}]
    for body in evil:
        for kind in ("predictor", "transformer"):
            servers[kind].predict(OUTLINK_MODEL, body)
    assert 200 in sent
    assert proxy.hosts and set(proxy.hosts) <= allowed, set(proxy.hosts) - allowed
    assert set(proxy.paths) == {"/w/api.php"}


def test_revscoring_ignores_hosts_named_in_event_input(servers, farm, proxy, eventgate):
    """An event may carry any meta.uri: the server still asks only its own wiki. An event naming another
    wiki's domain or database is refused, having asked nothing of that host."""
    enwiki = farm.manifest["enwiki"]
    event = revision_create_event(enwiki, enwiki["special"]["good_rev_id"], uri="https://evil.example/wiki/Foo")
    response = servers["revscoring"].predict(REVSCORING_ISVC, {"event": event})
    assert response.status_code == 200, response.text
    assert set(proxy.hosts) == {"en.wikipedia.org"} and set(proxy.paths) == {"/w/api.php"}
    elsewhere = revision_create_event(enwiki, enwiki["special"]["good_rev_id"], domain="evil.example")
    refused = servers["revscoring"].predict(REVSCORING_ISVC, {"event": elsewhere})
    assert refused.status_code == 400 and "meta.domain" in refused.json()["error"], refused.text
    assert set(proxy.hosts) == {"en.wikipedia.org"}
    other = revision_create_event(enwiki, enwiki["special"]["good_rev_id"])
    other["database"] = "evilwiki"
    refused = servers["revscoring"].predict(REVSCORING_ISVC, {"event": other})
    assert refused.status_code == 400 and "evilwiki" in refused.json()["error"]


# What is logged ------------------------------------------------------------------------------------------


def _marked_requests(kind: str, enwiki: dict[str, Any]) -> list[dict[str, Any]]:
    """Requests carrying the marker in a field: valid ones, and ones refused for another reason."""
    marked = [{**good(kind, enwiki), "note": MARKER}]  # an unknown field: refused, and named, not echoed
    if kind == "revscoring":
        event = revision_create_event(enwiki, enwiki["special"]["good_rev_id"], uri=f"https://x/{MARKER}",
                                      request_id=MARKER)
        event["performer"] = {"user_text": MARKER, "user_groups": ["user"], "user_is_bot": False}
        event["comment"] = MARKER
        marked.append({"event": event})  # valid: scored, and its event sent to EventGate
    else:
        marked.append({**good(kind, enwiki), "debug": False, "threshold": 0.5})
    return marked


HEADERS = {"Authorization": f"Bearer {MARKER}", "Cookie": f"session={MARKER}", "X-Api-Key": MARKER,
           "X-Client-IP": MARKER, "User-Agent": f"curl {MARKER}"}


def test_secrets_and_payloads_are_not_logged(servers, enwiki, proxy):
    statuses = []
    for kind in KINDS:
        for body in _marked_requests(kind, enwiki):
            statuses.append(servers[kind].predict(MODEL_OF[kind], body, headers=HEADERS).status_code)
        # A failing request too: errors are logged with more detail than successes.
        proxy.inject("status", status=500, times=-1)
        failing = servers[kind].predict(MODEL_OF[kind], good(kind, enwiki), headers=HEADERS)
        statuses.append(failing.status_code)
        proxy.clear()
    assert 200 in statuses and 400 in statuses and 503 in statuses
    time.sleep(0.5)  # let the servers write their logs
    for kind in KINDS:
        leaked = [line for line in log_lines(servers[kind]) if MARKER in line]
        assert not leaked, f"{kind} logged the marker: {leaked[:3]}"


def _marked_bad_requests(kind: str, enwiki: dict[str, Any]) -> list[dict[str, Any]]:
    """Requests refused because of the marker itself, in fields whose value the 400 message quotes."""
    if kind == "revscoring":
        event = revision_create_event(enwiki, enwiki["special"]["good_rev_id"])
        return [{"rev_id": MARKER}, {"rev_id": 5, "extended_output": MARKER},
                {"event": {**event, "database": MARKER}}]
    return [
        {"lang": "en", "page_id": MARKER},
        {"lang": MARKER, "page_id": 1},
        {"wiki_id": MARKER, "page_id": 1},
        {"lang": "en", "page_title": f"No such page {MARKER}"},  # looked up, then "does not exist"
        {"lang": "en", "page_title": f"{MARKER}|Other"},
        {"lang": "en", "page_id": 1, "threshold": MARKER},
    ]


@pytest.mark.parametrize("kind", KINDS)
def test_refused_values_are_not_logged(servers, kind, enwiki):
    """A secret pasted into the wrong field: the 400 may quote it to the client, the log must not keep it."""
    for body in _marked_bad_requests(kind, enwiki):
        response = servers[kind].predict(MODEL_OF[kind], body)
        assert response.status_code == 400, response.text
    assert servers[kind].predict(MARKER, good(kind, enwiki)).status_code == 404  # a model name in the path
    time.sleep(0.3)
    leaked = [line for line in log_lines(servers[kind]) if MARKER in line]
    assert not leaked, f"{kind} logged a value a client sent: {leaked[:2]}"


# Images --------------------------------------------------------------------------------------------------


def test_production_images_run_as_an_unprivileged_user():
    config = yaml.safe_load((REPO_ROOT / "blubber.yaml").read_text())
    assert config.get("runs", {}).get("insecurely") is False
    assert config.get("runs", {}).get("uid", 900) != 0
    # The images: not the test variant, nor the build stages only other variants copy from.
    copied = {copy["from"] for variant in config["variants"].values() for copy in variant.get("copies", [])
              if isinstance(copy, dict) and "from" in copy}
    production = {name: variant for name, variant in config["variants"].items()
                  if name != "test" and name not in copied}
    assert {"editquality", "outlink", "outlink-transformer"} <= set(production)
    assert not {name for name in production if name.endswith("-build")}, production.keys()
    for name, variant in production.items():
        runs = variant.get("runs", {})
        assert runs.get("insecurely", False) is False, name
        assert runs.get("uid", 900) != 0, name
        assert variant.get("entrypoint"), name


# EventGate TLS -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def untrusting(proxy, model_paths, eventgate: HttpsEventReceiver) -> Iterator[dict[str, ServerProcess]]:
    """A revscoring server NOT given the CA bundle, and a spare predictor (both for destructive checks)."""
    revscoring = revscoring_spec("untrusting-revscoring", model_paths["revscoring"], proxy.url,
                                 EVENTGATE_URL=eventgate.url, EVENTGATE_CA_BUNDLE="", REQUESTS_CA_BUNDLE="")
    predictor = predictor_spec("spare-predictor", model_paths["outlink"], proxy.url)
    started = start_processes([revscoring, predictor])
    yield {"revscoring": started[0], "predictor": started[1]}
    for server in started:
        server.stop()


def _event_response(server: ServerProcess, enwiki: dict[str, Any], rev_key: str) -> tuple[int, dict]:
    rev_id = enwiki["special"][rev_key]
    response = server.predict(REVSCORING_ISVC, {"event": revision_create_event(enwiki, rev_id)})
    assert response.status_code == 200, response.text
    return rev_id, response.json()


def test_eventgate_with_the_ca_bundle_gets_the_event(servers, enwiki, eventgate):
    before = metric_samples(servers["revscoring"])
    rev_id, answer = _event_response(servers["revscoring"], enwiki, "newcomer_rev_id")
    event = eventgate.wait_for(rev_id)
    assert event is not None, "the event was not delivered over TLS with the configured CA bundle"
    score = answer["enwiki"]["scores"][str(rev_id)]["damaging"]["score"]
    assert event["scores"]["damaging"]["probability"] == score["probability"]
    after = metric_samples(servers["revscoring"])
    assert metric_delta(before, after, "eventgate_events_sent_total") == 1


def test_eventgate_with_an_untrusted_certificate_gets_nothing(untrusting, enwiki, eventgate):
    server = untrusting["revscoring"]
    before = metric_samples(server)
    rev_id, _ = _event_response(server, enwiki, "anon_rev_id")  # the prediction itself stands
    time.sleep(1.0)
    assert eventgate.events_for(rev_id) == [], "an unverified TLS peer received the event"
    after = metric_samples(server)
    for name, moved in (("eventgate_events_failed_total", 1), ("eventgate_events_sent_total", 0)):
        assert metric_delta(before, after, name) == moved, name
    failures = [line for line in log_lines(server) if "Could not send event" in line]
    assert failures and re.search(r"certificate|SSL", failures[-1], re.IGNORECASE), failures


# Models only from configured paths -----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["revscoring", "predictor"])
def test_models_cannot_be_loaded_or_unloaded_over_http(untrusting, kind):
    """KServe's model repository API must not load a model from a name a client picks, nor unload ours."""
    server = untrusting[kind]
    model = MODEL_OF[kind]
    for name in ("enwiki-goodfaith", "..%2F..%2Fetc%2Fpasswd", "passwd"):
        requests.post(f"{server.url}/v2/repository/models/{name}/load", timeout=30)
    listed = requests.get(f"{server.url}/v1/models", timeout=10).json()
    assert listed == {"models": [model]}, listed
    requests.post(f"{server.url}/v2/repository/models/{model}/unload", timeout=30)
    assert is_ready(server, model), "a client unloaded the model over HTTP"
