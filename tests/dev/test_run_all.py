"""`make run`'s server (`python -m dev.run_all`): every row of the seed table from one process, as a newcomer
would use it: rev ids taken from each wiki's recent changes on the farm, bodies sent like `curl -d`."""

import json

import pytest
import requests
from testkit.servers import free_port, start_server

from dev.seed_table import OUTLINK_ISVC, load_rows

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def grpc_port():
    return free_port()


@pytest.fixture(scope="module")
def run_all(farm, demo_models, grpc_port, event_receiver):
    rows = load_rows()
    env = {"WIKI_URL": farm.url, "MODELS_DIR": str(demo_models), "EXTRACTION_WORKERS": "1",
           "GRPC_PORT": str(grpc_port), "EVENTGATE_URL": event_receiver.url}
    server = start_server("run-all", ["dev.run_all"], env, [row.isvc for row in rows], timeout_s=300)
    yield server, rows
    assert server.stop() == 0


def recent_edit(farm, domain: str) -> int:
    """The newest seeded edit of the wiki, as `list=recentchanges` reports it."""
    response = requests.get(
        f"{farm.url}/w/api.php",
        params={
            "action": "query",
            "list": "recentchanges",
            "rctype": "edit",
            "rcnamespace": "0",
            "rclimit": "50",
            "format": "json",
            "formatversion": "2",
        },
        headers={"Host": domain},
        timeout=30,
    )
    changes = response.json()["query"]["recentchanges"]
    hidden = {rev["rev_id"] for rev in farm_revisions(farm, domain) if rev.get("hidden")}
    return next(change["revid"] for change in changes if change["revid"] not in hidden)


def farm_revisions(farm, domain: str) -> list[dict]:
    wiki = next(entry for entry in farm.manifest.values() if entry["host"] == domain)
    return wiki.get("revisions", [])


def test_every_row_answers_curl_style_requests(farm, run_all):
    server, rows = run_all
    assert len(requests.get(f"{server.url}/v1/models", timeout=10).json()["models"]) == len(rows) == 111
    title = farm.manifest["enwiki"]["special"]["many_links_title"]
    for row in rows:
        rev_id = None if row.isvc == OUTLINK_ISVC else recent_edit(farm, row.domain)
        body = json.dumps(
            {"lang": "en", "page_title": title, "debug": True} if rev_id is None else {"rev_id": rev_id}
        )
        # curl -d sends application/x-www-form-urlencoded; the servers must still read the JSON.
        response = requests.post(
            f"{server.url}/v1/models/{row.isvc}:predict",
            data=body,
            timeout=120,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert response.status_code == 200, (row.isvc, response.text)
        answer = response.json()
        if row.isvc == OUTLINK_ISVC:
            assert answer["prediction"]["results"], answer
        else:
            score = answer[row.dbname]["scores"][str(rev_id)][row.model_type]["score"]
            assert all(0.0 <= p <= 1.0 for p in score["probability"].values()), (row.isvc, score)


def test_the_outlink_model_answers_events_and_both_v2_protocols(farm, run_all, grpc_port, event_receiver):
    import grpc
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
    from kserve.protocol.grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub

    server, _ = run_all
    enwiki = farm.manifest["enwiki"]
    request = json.dumps({"lang": "en", "page_title": enwiki["special"]["many_links_title"]})
    v1 = requests.post(f"{server.url}/v1/models/{OUTLINK_ISVC}:predict", data=request, timeout=120)
    assert v1.status_code == 200 and v1.json()["prediction"]["results"], v1.text
    rest = requests.post(f"{server.url}/v2/models/{OUTLINK_ISVC}/infer", timeout=120, json={
        "inputs": [{"name": "request", "shape": [1], "datatype": "BYTES", "data": [request]}]})
    assert rest.status_code == 200, rest.text
    assert json.loads(rest.json()["outputs"][0]["data"][0]) == v1.json()
    contents = pb.InferTensorContents(bytes_contents=[request.encode()])
    tensor = pb.ModelInferRequest.InferInputTensor(name="request", datatype="BYTES", shape=[1],
                                                   contents=contents)
    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        answer = GRPCInferenceServiceStub(channel).ModelInfer(
            pb.ModelInferRequest(model_name=OUTLINK_ISVC, inputs=[tensor]), timeout=120)
    assert json.loads(answer.outputs[0].contents.bytes_contents[0]) == v1.json()

    page = next(p for p in enwiki["pages"] if p["title"] == enwiki["special"]["redirect_target"])
    event = {"$schema": "/mediawiki/page/change/1.0.0", "wiki_id": "enwiki", "dt": "2024-01-02T03:04:05Z",
             "meta": {"stream": "mediawiki.page_change.v1", "domain": "en.wikipedia.org"},
             "page_change_kind": "edit", "changelog_kind": "update",
             "page": {"page_id": page["page_id"], "page_title": page["title"], "namespace_id": 0},
             "revision": {"rev_id": page["rev_ids"][-1], "rev_dt": "2024-01-02T03:04:05Z"},
             "performer": {"user_text": "Farm Veteran"}}
    before = len(event_receiver.events)  # other tests sent events for the same page
    response = requests.post(f"{server.url}/v1/models/{OUTLINK_ISVC}:predict", json={"event": event},
                             timeout=120)
    assert response.status_code == 200, response.text
    sent = event_receiver.wait_until(lambda e: "predicted_classification" in e and e.get("revision", {}).get(
        "rev_id") == page["rev_ids"][-1], "the outlink topic event", since=before)
    # make run names no stream: the outlink model's own production stream
    assert sent["meta"]["stream"] == "mediawiki.page_outlink_topic_prediction_change.v1"


def test_ores_api_serves_every_wiki_of_the_table(farm, run_all):
    """ORES's v3 API beside the KServe routes: every wiki is a context with its models, and one request
    scores a revision with all of them."""
    server, rows = run_all
    expected: dict[str, set[str]] = {}
    for row in rows:
        if row.isvc != OUTLINK_ISVC:
            expected.setdefault(row.dbname, set()).add(row.model_type)
    contexts = requests.get(f"{server.url}/v3/scores/", timeout=60).json()
    assert {context: set(doc["models"]) for context, doc in contexts.items()} == expected
    for dbname, models in expected.items():
        domain = next(row.domain for row in rows if row.dbname == dbname)
        rev_id = recent_edit(farm, domain)
        response = requests.get(f"{server.url}/v3/scores/{dbname}/{rev_id}/", timeout=120)
        assert response.status_code == 200, (dbname, response.text)
        entries = response.json()[dbname]["scores"][str(rev_id)]
        assert set(entries) == models
        errors = {model: entry["error"]["type"] for model, entry in entries.items() if "error" in entry}
        # Wikidata's newest edit may be to a page only some of its models read (items vs properties)
        only_content_model = set(errors.values()) == {"UnexpectedContentType"}
        assert not errors or (dbname == "wikidatawiki" and only_content_model), (dbname, errors)
