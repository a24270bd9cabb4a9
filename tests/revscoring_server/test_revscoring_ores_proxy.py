"""The `ores` image's server (`python -m revscoring_server.ores`) in front of real model servers.

Upstream is the real revscoring server with all 110 services (`revscoring_all`), reached through a
recording forwarder that stands in for Lift Wing's ingress (one endpoint, the Host header picks the service).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
import requests
from ores_testing import edits, ores_get
from testkit.ores_client import ensure_client_venv, ores_client_score
from testkit.recording_proxy import Override, RecordingProxy
from testkit.reference_scoring import ReferenceJob, entry_problems, run_all
from testkit.servers import REPO_ROOT, ServerProcess, free_port

from dev.seed_table import revscoring_rows
from revscoring_server.services import load_services


@pytest.fixture(scope="module")
def ingress(revscoring_all) -> Iterator[RecordingProxy]:
    proxy = RecordingProxy(revscoring_all.url).start()
    yield proxy
    proxy.stop()


@pytest.fixture(scope="module")
def ores_proxy(ingress) -> Iterator[ServerProcess]:
    port = free_port()
    env = {"LIFTWING_URL": ingress.url, "LIFTWING_TIMEOUT_S": "3", "HTTP_PORT": str(port)}
    server = ServerProcess(
        "ores-proxy", [sys.executable, "-m", "revscoring_server.ores", f"--http_port={port}"], env, port
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            if requests.get(f"{server.url}/", timeout=2).status_code == 200:
                break
        except requests.RequestException:
            pass
        if server.process.poll() is not None or time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"ores proxy did not start:\n{server.log_tail()}")
        time.sleep(0.2)
    yield server
    assert server.stop() == 0, server.log_tail()


@pytest.fixture(autouse=True)
def clean_ingress(ingress) -> Iterator[None]:
    ingress.clear()
    yield
    ingress.clear()


@pytest.mark.parametrize("dbname", ["enwiki", "ptwiki"])
def test_every_model_of_a_wiki_through_the_proxy_is_revscorings_own_per_model(
    ores_proxy, farm, demo_models, dbname
):
    """ptwiki: articlequality and draftquality define different features under the same names."""
    rows = [row for row in revscoring_rows() if row.dbname == dbname]
    rev_ids = edits(farm, dbname, 4)
    params = {"models": "|".join(row.model_type for row in rows), "features": ""}
    proxied = ores_get(
        ores_proxy, f"/v3/scores/{dbname}/", revids="|".join(map(str, [*rev_ids, 987654321])), **params
    )
    assert proxied.status_code == 200, proxied.text
    scores = proxied.json()[dbname]["scores"]
    assert {entry["error"]["type"] for entry in scores["987654321"].values()} == {"RevisionNotFound"}
    models = tuple((row.isvc, str(demo_models / row.isvc / "model.bin")) for row in rows)
    host = farm.manifest[dbname]["host"]
    reference = run_all([ReferenceJob(farm.url, host, rev_id, models) for rev_id in rev_ids])
    problems = []
    for rev_id in rev_ids:
        for row in rows:
            expected, entry = reference[(rev_id, row.isvc)], scores[str(rev_id)][row.model_type]
            if "error" in expected:  # e.g. an edit whose parent's text is hidden: both refuse
                assert entry["error"]["type"] == expected["error"], (rev_id, row.isvc, entry)
                continue
            problems += entry_problems(expected, entry, f"{row.isvc} {rev_id}")
    assert not problems, "\n".join(problems[:20])


def test_one_call_per_model_with_the_whole_batch_concurrently_and_the_services_host(
    ores_proxy, ingress, farm
):
    rev_ids = edits(farm, "enwiki", 5)
    for path in ("/v1/models/enwiki-damaging:predict", "/v1/models/enwiki-goodfaith:predict"):
        ingress.overrides[path] = Override(delay_s=0.5)  # long enough to see whether the calls overlap
    response = ores_get(
        ores_proxy, "/v3/scores/enwiki/", models="damaging|goodfaith", revids="|".join(map(str, rev_ids))
    )
    assert response.status_code == 200
    services = load_services()
    by_path = {call.path: call for call in ingress.calls}
    assert len(ingress.calls) == 2 and len(by_path) == 2
    for isvc in ("enwiki-damaging", "enwiki-goodfaith"):
        call = by_path[f"/v1/models/{isvc}:predict"]
        assert call.host == f"{isvc}.{services[isvc].namespace}.wikimedia.org"
        assert call.body == {"rev_ids": rev_ids, "extended_output": False}
    first, second = ingress.calls
    assert second.started < first.ended  # concurrent, not one after the other


def test_every_context_and_version_as_the_model_servers_report_them(ores_proxy, revscoring_all, ingress):
    slow = ("enwiki-damaging", "frwiki-goodfaith", "wikidatawiki-itemquality")
    for isvc in slow:  # long enough to see whether the calls of different wikis overlap
        ingress.overrides[f"/v1/models/{isvc}:predict"] = Override(delay_s=0.5)
    proxied = ores_get(ores_proxy, "/v3/scores/").json()
    calls = [call for call in ingress.calls if call.path in {f"/v1/models/{isvc}:predict" for isvc in slow}]
    assert len(calls) == 3 and max(c.started for c in calls) < min(c.ended for c in calls)  # concurrently
    assert proxied == ores_get(revscoring_all, "/v3/scores/").json()
    assert len(proxied) == len({service.dbname for service in load_services().values()})
    assert all(model["version"] for context in proxied.values() for model in context["models"].values())
    assert len(ingress.calls) == len(load_services())  # one call per service, no revision fetched


def test_versions_are_asked_with_an_empty_batch(ores_proxy, ingress):
    assert ores_get(ores_proxy, "/v3/scores/wikidatawiki/").status_code == 200
    assert sorted(call.path for call in ingress.calls) == sorted(
        f"/v1/models/{s.isvc}:predict" for s in load_services().values() if s.dbname == "wikidatawiki"
    )
    assert all(call.body == {"rev_ids": [], "extended_output": False} for call in ingress.calls)


@pytest.mark.parametrize(
    ("override", "error_type"),
    [(Override(status=503), "UpstreamError"), (Override(delay_s=5), "TimeoutError")],
)
def test_a_failing_model_service_fails_only_its_model(ores_proxy, ingress, farm, override, error_type):
    rev_ids = edits(farm, "enwiki", 2)
    ingress.overrides["/v1/models/enwiki-goodfaith:predict"] = override
    started = time.monotonic()
    body = ores_get(
        ores_proxy, "/v3/scores/enwiki/", models="damaging|goodfaith", revids="|".join(map(str, rev_ids))
    ).json()
    assert time.monotonic() - started < 4.5  # LIFTWING_TIMEOUT_S is 3
    for rev_id in rev_ids:
        entries = body["enwiki"]["scores"][str(rev_id)]
        assert "score" in entries["damaging"]
        assert entries["goodfaith"]["error"]["type"] == error_type
        assert "enwiki-goodfaith" in entries["goodfaith"]["error"]["message"]
    assert body["enwiki"]["models"]["goodfaith"] == {"version": None}


def test_request_errors_are_answered_without_calling_any_service(ores_proxy, ingress):
    assert ores_get(ores_proxy, "/v3/scores/xxwiki/", revids="1").status_code == 404
    response = ores_get(ores_proxy, "/v3/scores/enwiki/", models="itemquality", revids="1")
    assert response.status_code == 400 and "'itemquality'" in response.json()["error"]["message"]
    assert ingress.calls == []


def test_the_real_ores_client_works_through_the_proxy(ores_proxy, revscoring_all, farm):
    python = ensure_client_venv()
    rev_ids = edits(farm, "enwiki", 10)
    answers = ores_client_score(python, ores_proxy.url, "enwiki", ["damaging", "goodfaith"], rev_ids)
    direct = ores_get(
        revscoring_all, "/v3/scores/enwiki/", models="damaging|goodfaith", revids="|".join(map(str, rev_ids))
    )
    assert answers == [direct.json()["enwiki"]["scores"][str(rev_id)] for rev_id in rev_ids]


def test_without_liftwing_url_it_refuses_to_start():
    done = subprocess.run(
        [sys.executable, "-m", "revscoring_server.ores"],
        env={
            "PATH": "/usr/bin:/bin",
            "PYTHONPATH": str(REPO_ROOT / "python") + ":" + str(REPO_ROOT / "revscoring"),
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "LIFTWING_URL" in done.stdout + done.stderr
