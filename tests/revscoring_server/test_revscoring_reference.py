"""Every revscoring row's values against the independent reference (reference_scoring.py), by every road.

The roads: `{"rev_id"}`, `{"rev_ids"}` batches, events, and ORES's API asked for ALL of a wiki's models at
once with `features` (where models share extraction work, and where namesake features of two packages once
leaked from one model to the other). The server has no score cache, so each answer is computed afresh.

For each of the 110 services and a spread of its wiki's farm revisions (an edit with a parent by an
experienced user, an anonymous edit, a new account's edit, the large revision, the first revision of a
page), the server's probabilities and the base features of `extended_output` must equal what revscoring's
own `api.Extractor` over a live `mwapi.Session` gives with the same binary (models/<isvc>/model.bin), and
for a revision whose text is hidden both must refuse.

The work is shared: one server process serves all services (`revscoring_all`), the server's answers are
asked for concurrently, and the reference extracts each (wiki, revision) once for all of that wiki's models,
in a process pool.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from testkit.events import page_change_event, revision_create_event
from testkit.reference_scoring import ReferenceJob, entry_problems, run_all

from dev.seed_table import revscoring_rows

ROWS = revscoring_rows()
SPREAD = {  # what each revision is, for failure messages
    "good_rev_id": "an edit with a parent, by an experienced user",
    "anon_rev_id": "an anonymous edit",
    "newcomer_rev_id": "an edit by a new account",
    "large_rev_id": "the large revision (the heavy lane)",
    "page_creation": "the first revision of a page (no parent)",
}
HIDDEN = "hidden_rev_id"
# The large revision (500 KB) costs about 20 s of reference extraction per wiki and several seconds per
# service on the server: 46 wikis would take the suite past its 15 minutes on 2 cores. It is compared on the
# wikis that cover every model type and both content models (wikitext, wikibase-item): all services of
# these; the other wikis' services are compared on the other four kinds and the hidden revision.
LARGE_ON = ("enwiki", "wikidatawiki")
# Demo topic models that give every farm revision the same probabilities (the stand-in word vectors of these
# languages barely cover the farm's words): for them only the features are a real comparison. Listed, so a
# model becoming constant (or one of these being fixed) is noticed.
CONSTANT_DEMO_MODELS = {
    f"{wiki}-{kind}"
    for wiki in ("arwiki", "huwiki", "hywiki", "kowiki", "srwiki", "viwiki")
    for kind in ("articletopic", "drafttopic")
}


def spread(wiki: dict[str, Any]) -> dict[str, int]:
    """The wiki's revisions of each kind in SPREAD (every wiki of the farm has all of them; the large one is
    used on LARGE_ON only)."""
    revisions = {key: wiki["special"][key] for key in SPREAD if key in wiki["special"]}
    article = next(page for page in wiki["pages"] if page["kind"] == "article")
    revisions["page_creation"] = article["rev_ids"][0]
    missing = set(SPREAD) - set(revisions)
    assert not missing, f"the farm's {wiki['dbname']} lacks {missing}: the spread is incomplete"
    if wiki["dbname"] not in LARGE_ON:
        del revisions["large_rev_id"]
    return revisions


@pytest.fixture(scope="module")
def revisions(farm) -> dict[str, dict[str, int]]:
    """dbname -> {kind: rev_id}, the hidden revision included."""
    by_wiki = {}
    for dbname in {row.dbname for row in ROWS}:
        wiki = farm.manifest[dbname]
        by_wiki[dbname] = {**spread(wiki), HIDDEN: wiki["special"][HIDDEN]}
    return by_wiki


@pytest.fixture(scope="module")
def reference(farm, demo_models: Path, revisions) -> dict[tuple[int, str], dict[str, Any]]:
    jobs = []
    for dbname, by_kind in sorted(revisions.items()):
        models = tuple((row.isvc, str(demo_models / row.isvc / "model.bin")) for row in ROWS
                       if row.dbname == dbname)
        host = farm.manifest[dbname]["host"]
        jobs += [ReferenceJob(farm.url, host, rev_id, models) for rev_id in by_kind.values()]
    # The large revisions first: the longest jobs should not be the last ones left for one core.
    large = {by_kind["large_rev_id"] for by_kind in revisions.values() if "large_rev_id" in by_kind}
    jobs.sort(key=lambda job: job.rev_id not in large)
    return run_all(jobs)


@pytest.fixture(scope="module")
def served(revscoring_all, revisions) -> dict[tuple[int, str], requests.Response]:
    """The server's answer, with extended output, for every (revision, service)."""
    asks = [(rev_id, row.isvc) for row in ROWS for rev_id in revisions[row.dbname].values()]

    def ask(key: tuple[int, str]) -> requests.Response:
        rev_id, isvc = key
        return revscoring_all.predict(isvc, {"rev_id": rev_id, "extended_output": True}, timeout_s=120)

    with ThreadPoolExecutor(4) as pool:
        return dict(zip(asks, pool.map(ask, asks), strict=True))


@pytest.fixture(scope="module")
def served_ores(revscoring_all, revisions) -> dict[str, requests.Response]:
    """ORES's answer for each wiki: every model of the wiki, every revision of its spread, with features."""
    def ask(dbname: str) -> requests.Response:
        models = "|".join(row.model_type for row in ROWS if row.dbname == dbname)
        revids = "|".join(str(rev_id) for rev_id in revisions[dbname].values())
        return requests.get(f"{revscoring_all.url}/v3/scores/{dbname}/", timeout=300,
                            params={"models": models, "revids": revids, "features": ""})

    wikis = sorted(revisions)
    with ThreadPoolExecutor(2) as pool:
        return dict(zip(wikis, pool.map(ask, wikis), strict=True))


@pytest.fixture(scope="module")
def served_batches(revscoring_all, revisions) -> dict[str, requests.Response]:
    """Each service's `rev_ids` batch of its wiki's spread, with extended output."""
    def ask(row: Any) -> requests.Response:
        body = {"rev_ids": list(revisions[row.dbname].values()), "extended_output": True}
        return revscoring_all.predict(row.isvc, body, timeout_s=300)

    with ThreadPoolExecutor(2) as pool:
        return dict(zip((row.isvc for row in ROWS), pool.map(ask, ROWS), strict=True))


@pytest.fixture(scope="module")
def served_events(revscoring_all, farm, revisions) -> dict[str, requests.Response]:
    """Each service's answer to an event naming its wiki's ordinary edit (revision-create 1.x, 2.x and
    page-change, in turn)."""
    def ask(numbered: tuple[int, Any]) -> requests.Response:
        number, row = numbered
        wiki, rev_id = farm.manifest[row.dbname], revisions[row.dbname]["good_rev_id"]
        event = (revision_create_event(wiki, rev_id, 1), revision_create_event(wiki, rev_id, 2),
                 page_change_event(wiki, rev_id))[number % 3]
        return revscoring_all.predict(row.isvc, {"event": event, "extended_output": True}, timeout_s=300)

    with ThreadPoolExecutor(2) as pool:
        return dict(zip((row.isvc for row in ROWS), pool.map(ask, enumerate(ROWS)), strict=True))


@pytest.mark.parametrize("row", ROWS, ids=lambda row: row.isvc)
def test_scores_and_base_features_equal_revscorings_own(row, revisions, reference, served):
    problems = []
    for kind, rev_id in revisions[row.dbname].items():
        if kind == HIDDEN:
            continue
        label = f"{kind} {rev_id} ({SPREAD[kind]})"
        response = served[(rev_id, row.isvc)]
        assert response.status_code == 200, f"{label}: {response.text}"
        entry = response.json()[row.dbname]["scores"][str(rev_id)][row.model_type]
        problems += entry_problems(reference[(rev_id, row.isvc)], entry, label)
    assert not problems, "\n".join(problems[:20])
    # The comparison is not vacuous: the base features differ from revision to revision. (The probabilities
    # of some demo topic models do not: see CONSTANT_DEMO_MODELS.)
    answers = [reference[(rev_id, row.isvc)]
               for kind, rev_id in revisions[row.dbname].items() if kind != HIDDEN]
    assert len({repr(sorted(answer["features"].items())) for answer in answers}) > 1, row.isvc
    constant = len({repr(sorted(answer["probability"].items(), key=str)) for answer in answers}) == 1
    assert constant == (row.isvc in CONSTANT_DEMO_MODELS), f"{row.isvc}: constant probabilities: {constant}"


def document_problems(row: Any, response: requests.Response, revisions: dict, reference: dict,
                      road: str) -> list[str]:
    """How a served ORES-shaped document (every revision of the row's spread) differs from the reference;
    the hidden revision must be refused by both."""
    assert response.status_code == 200, response.text
    scores = response.json()[row.dbname]["scores"]
    problems = []
    for kind, rev_id in revisions[row.dbname].items():
        entry, expected = scores[str(rev_id)][row.model_type], reference[(rev_id, row.isvc)]
        if kind == HIDDEN:
            assert entry["error"]["type"] == expected["error"] == "TextDeleted", entry
            continue
        problems += entry_problems(expected, entry, f"{road} {kind} {rev_id}")
    return problems


@pytest.mark.parametrize("row", ROWS, ids=lambda row: row.isvc)
def test_ores_with_every_model_of_the_wiki_equals_revscorings_own_per_model(row, revisions, reference,
                                                                            served_ores):
    problems = document_problems(row, served_ores[row.dbname], revisions, reference, "ORES")
    assert not problems, "\n".join(problems[:20])


@pytest.mark.parametrize("row", ROWS, ids=lambda row: row.isvc)
def test_a_rev_ids_batch_equals_revscorings_own(row, revisions, reference, served_batches):
    problems = document_problems(row, served_batches[row.isvc], revisions, reference, "rev_ids")
    assert not problems, "\n".join(problems[:20])


@pytest.mark.parametrize("row", ROWS, ids=lambda row: row.isvc)
def test_an_event_equals_revscorings_own(row, revisions, reference, served_events):
    rev_id = revisions[row.dbname]["good_rev_id"]
    response = served_events[row.isvc]
    assert response.status_code == 200, response.text
    entry = response.json()[row.dbname]["scores"][str(rev_id)][row.model_type]
    problems = entry_problems(reference[(rev_id, row.isvc)], entry, f"event {rev_id}")
    assert not problems, "\n".join(problems[:20])


@pytest.mark.parametrize("row", ROWS, ids=lambda row: row.isvc)
def test_both_refuse_a_hidden_revision(row, revisions, reference, served):
    rev_id = revisions[row.dbname][HIDDEN]
    expected, response = reference[(rev_id, row.isvc)], served[(rev_id, row.isvc)]
    assert expected.get("error") == "TextDeleted", expected  # revscoring refuses the hidden text
    assert response.status_code == 400, response.text
    assert f"revision {rev_id}" in response.json()["error"] and "hidden" in response.json()["error"]
