"""The local MediaWiki farm answers like Wikimedia's wikis for what the model servers read."""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from testkit.servers import free_port

from dev.mediawiki_farm import RunningFarm, running_farm, setup
from dev.mediawiki_farm.build import FarmPaths
from dev.mediawiki_farm.server import probe
from dev.seed_table import wikis

WIKIS = wikis()
SCRIPTS = {  # a character class of each non-Latin content language's script
    "ru": "\u0400-\u04ff", "uk": "\u0400-\u04ff", "sr": "\u0400-\u04ff", "ar": "\u0600-\u06ff",
    "fa": "\u0600-\u06ff", "he": "\u0590-\u05ff", "hi": "\u0900-\u097f", "bn": "\u0980-\u09ff",
    "ta": "\u0b80-\u0bff", "el": "\u0370-\u03ff", "hy": "\u0530-\u058f", "ja": "\u3040-\u30ff\u4e00-\u9fff",
    "zh": "\u4e00-\u9fff", "ko": "\uac00-\ud7af",
}
FIELDS = ("revid", "parentid", "user", "userid", "timestamp", "comment", "size", "sha1", "minor")
REVISION_PROPS = "ids|user|userid|timestamp|comment|content|flags|size|contentmodel|sha1"


def get(farm: RunningFarm, host: str, **params: Any) -> tuple[int, Any]:
    query = urllib.parse.urlencode({"format": "json", "formatversion": "2", **params})
    request = urllib.request.Request(f"{farm.api_url}?{query}", headers={"Host": host})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode("utf-8", "replace")


def api(farm: RunningFarm, dbname: str, **params: Any) -> dict[str, Any]:
    status, body = get(farm, WIKIS[dbname].domain, **params)
    assert status == 200, body
    assert "error" not in body, body["error"]
    return body


def revisions(farm: RunningFarm, dbname: str, rev_ids: list[int], **params: Any) -> dict[int, dict[str, Any]]:
    if "ids" not in params.get("rvprop", "ids").split("|"):
        params = {**params, "rvprop": "ids|" + params["rvprop"]}
    found = {}
    for start in range(0, len(rev_ids), 50):
        batch = "|".join(map(str, rev_ids[start:start + 50]))
        body = api(farm, dbname, action="query", prop="revisions", revids=batch, **params)
        for page in body["query"]["pages"]:
            for revision in page["revisions"]:
                found[revision["revid"]] = {**revision, "title": page["title"], "pageid": page["pageid"]}
    return found


def page_of(farm: RunningFarm, dbname: str, kind: str) -> dict[str, Any]:
    return next(page for page in farm.manifest[dbname]["pages"] if page["kind"] == kind)


@pytest.mark.parametrize("dbname", sorted(WIKIS))
def test_host_header_picks_the_wiki_and_its_language(farm: RunningFarm, dbname: str) -> None:
    general = api(farm, dbname, action="query", meta="siteinfo")["query"]["general"]
    assert general["wikiid"] == dbname
    assert general["lang"] == WIKIS[dbname].content_language
    assert general["server"] == f"//{WIKIS[dbname].domain}"
    assert farm.manifest[dbname]["host"] == WIKIS[dbname].domain


def test_unknown_host_gets_a_clear_error(farm: RunningFarm) -> None:
    status, body = get(farm, "xx.example.org", action="query", meta="siteinfo")
    assert status == 404
    assert "xx.example.org" in body
    assert "Stack trace" not in body and "#0 " not in body


def test_unknown_path_on_a_known_host_is_404(farm: RunningFarm) -> None:
    request = urllib.request.Request(f"{farm.url}/nothing/here.php", headers={"Host": "en.wikipedia.org"})
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(request, timeout=30)
    assert raised.value.code == 404


@pytest.mark.parametrize("dbname", ["ptwiki", "jawiki", "wikidatawiki", "translatewiki"])
def test_recentchanges_lists_every_seeded_revision(farm: RunningFarm, dbname: str) -> None:
    body = api(farm, dbname, action="query", list="recentchanges", rclimit="max", rcprop="ids|user|timestamp")
    listed = {change["revid"] for change in body["query"]["recentchanges"]}
    seeded = {revision["rev_id"] for revision in farm.manifest[dbname]["revisions"]}
    assert seeded <= listed


def test_every_manifest_revision_exists_with_the_manifest_page(farm: RunningFarm) -> None:
    for dbname, entry in farm.manifest.items():
        expected = {rev_id: page["page_id"] for page in entry["pages"] for rev_id in page["rev_ids"]}
        found = revisions(farm, dbname, sorted(expected), rvprop="ids")
        assert {rev_id: found[rev_id]["pageid"] for rev_id in expected} == expected, dbname


@pytest.mark.parametrize("dbname", ["enwiki", "fawiki", "wikidatawiki"])
def test_revisions_carry_every_field_revscoring_reads(farm: RunningFarm, dbname: str) -> None:
    article = page_of(farm, dbname, "article")
    found = revisions(farm, dbname, article["rev_ids"], rvprop=REVISION_PROPS, rvslots="main")
    ordered = [found[rev_id] for rev_id in article["rev_ids"]]
    for revision in ordered:
        assert set(FIELDS) <= set(revision)
        assert revision["slots"]["main"]["contentmodel"] in {"wikitext", "wikibase-item"}
    assert ordered[0]["parentid"] == 0
    for parent, child in zip(ordered, ordered[1:], strict=False):
        assert child["parentid"] == parent["revid"]
        assert parent["timestamp"] < child["timestamp"]


@pytest.mark.parametrize("dbname", sorted(WIKIS))
def test_articles_are_written_in_the_wiki_language(farm: RunningFarm, dbname: str) -> None:
    article = page_of(farm, dbname, "article")
    content = revisions(farm, dbname, article["rev_ids"][-1:], rvprop="content", rvslots="main")
    text = next(iter(content.values()))["slots"]["main"]["content"]
    lang = WIKIS[dbname].content_language
    if dbname == "wikidatawiki":
        assert json.loads(text)["labels"]["en"]["value"] == "River"
    elif lang in SCRIPTS:
        assert len(re.findall(f"[{SCRIPTS[lang]}]", text)) > 100
    else:
        assert len(re.findall(r"[A-Za-z]", text)) > 300


@pytest.mark.parametrize("dbname", ["ptwiki", "hewiki", "wikidatawiki"])
def test_hidden_revision_reports_texthidden(farm: RunningFarm, dbname: str) -> None:
    special = farm.manifest[dbname]["special"]
    found = revisions(farm, dbname, [special["hidden_rev_id"], special["good_rev_id"]],
                      rvprop=REVISION_PROPS, rvslots="main")
    assert found[special["hidden_rev_id"]]["slots"]["main"].get("texthidden") is True
    assert "content" not in found[special["hidden_rev_id"]]["slots"]["main"]
    assert "content" in found[special["good_rev_id"]]["slots"]["main"]


@pytest.mark.parametrize("dbname", ["enwiki", "ukwiki", "wikidatawiki"])
def test_special_edits_have_the_right_kind_of_editor(farm: RunningFarm, dbname: str) -> None:
    special = farm.manifest[dbname]["special"]
    ids = [special["good_rev_id"], special["anon_rev_id"], special["newcomer_rev_id"]]
    good, anon, newcomer = (revisions(farm, dbname, ids, rvprop="ids|user|userid|timestamp")[i] for i in ids)
    assert anon.get("anon") is True and anon["userid"] == 0
    body = api(farm, dbname, action="query", list="users", ususers=f"{good['user']}|{newcomer['user']}",
               usprop="groups|registration|editcount|emailable|gender")
    users = {user["name"]: user for user in body["query"]["users"]}
    veteran, fresh = users[good["user"]], users[newcomer["user"]]
    assert veteran["editcount"] > 10_000 and "autoconfirmed" in veteran["groups"]
    assert veteran["registration"] < "2010" and veteran["emailable"] is True
    assert "autoconfirmed" not in fresh["groups"] and fresh["editcount"] < 10
    assert fresh["registration"] < newcomer["timestamp"] < fresh["registration"][:11] + "23:59:59Z"
    contributions = api(farm, dbname, action="query", list="usercontribs", ucuser=newcomer["user"])
    assert newcomer["revid"] in {item["revid"] for item in contributions["query"]["usercontribs"]}


@pytest.mark.parametrize("dbname", ["enwiki", "svwiki", "wikidatawiki"])
def test_redirect_resolves_to_its_target(farm: RunningFarm, dbname: str) -> None:
    special = farm.manifest[dbname]["special"]
    body = api(farm, dbname, action="query", titles=special["redirect_title"], redirects="1")
    assert body["query"]["redirects"][0]["to"] == special["redirect_target"]


@pytest.mark.parametrize("dbname", ["enwiki", "zhwiki", "wikidatawiki"])
def test_large_page_is_at_least_500_kb(farm: RunningFarm, dbname: str) -> None:
    special = farm.manifest[dbname]["special"]
    found = revisions(farm, dbname, [special["large_rev_id"]], rvprop="ids|size")
    assert found[special["large_rev_id"]]["size"] >= 500_000
    assert found[special["large_rev_id"]]["title"] == special["large_page_title"]


@pytest.mark.parametrize("dbname", ["enwiki", "arwiki", "nowiki"])
def test_pages_carry_their_wikibase_item_page_prop(farm: RunningFarm, dbname: str) -> None:
    pages = [page for page in farm.manifest[dbname]["pages"] if page["qid"]]
    titles = [page["title"] for page in pages[:50]]
    body = api(farm, dbname, action="query", prop="pageprops", ppprop="wikibase_item",
               titles="|".join(titles))
    props = {page["title"]: page.get("pageprops", {}).get("wikibase_item") for page in body["query"]["pages"]}
    assert props == {page["title"]: page["qid"] for page in pages[:50]}


@pytest.mark.parametrize("dbname", ["enwiki", "kowiki"])
def test_many_links_page_needs_continuation(farm: RunningFarm, dbname: str) -> None:
    title = farm.manifest[dbname]["special"]["many_links_title"]
    links: list[str] = []
    cont: dict[str, str] = {}
    while True:
        body = api(farm, dbname, action="query", prop="links", titles=title, pllimit="max", **cont)
        links += [link["title"] for link in body["query"]["pages"][0].get("links", [])]
        if "continue" not in body:
            break
        cont = body["continue"]
        assert len(links) == 500
    assert len(links) >= 600
    existing = {page["title"] for page in farm.manifest[dbname]["pages"]}
    assert len(existing & set(links)) >= 20


def test_parse_lists_links_to_existing_articles(farm: RunningFarm) -> None:
    article = page_of(farm, "dewiki", "article")
    body = api(farm, "dewiki", action="parse", page=article["title"], prop="links")
    existing = [link["title"] for link in body["parse"]["links"] if link.get("exists")]
    assert len(existing) >= 20


def test_wikidata_items_have_the_wikibase_item_model(farm: RunningFarm) -> None:
    item = page_of(farm, "wikidatawiki", "article")
    body = api(farm, "wikidatawiki", action="query", prop="revisions", titles=item["title"],
               rvprop="content|contentmodel", rvslots="main")
    main = body["query"]["pages"][0]["revisions"][0]["slots"]["main"]
    assert main["contentmodel"] == "wikibase-item"
    entity = json.loads(main["content"])
    assert entity["id"] == item["title"] == item["qid"] and entity["type"] == "item"
    assert entity["claims"]["P31"][0]["mainsnak"]["datavalue"]["value"]["id"].startswith("Q")
    assert entity["sitelinks"]["enwiki"]["title"] == "River"
    assert {"labels", "descriptions", "aliases"} <= set(entity)


def test_serves_concurrent_requests(farm: RunningFarm) -> None:
    domains = [row.domain for row in WIKIS.values()][:8]
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(lambda host: get(farm, host, action="query", meta="siteinfo")[0], domains))
    assert statuses == [200] * len(domains)


def test_setup_does_nothing_when_already_built(farm: RunningFarm) -> None:
    manifest = FarmPaths(farm.state_dir).manifest
    before = manifest.stat().st_mtime_ns
    started = time.monotonic()
    assert setup(farm.state_dir) == manifest
    assert time.monotonic() - started < 30
    assert manifest.stat().st_mtime_ns == before


def test_reuses_a_running_farm_and_leaves_it_running(farm: RunningFarm) -> None:
    with running_farm(port=farm.port, state_dir=farm.state_dir, reuse=True) as again:
        assert again.process is None and again.manifest == farm.manifest
    assert probe(farm.url)


def test_server_is_stopped_when_the_block_exits(farm: RunningFarm) -> None:
    with running_farm(port=free_port(), state_dir=farm.state_dir) as other:
        assert probe(other.url, host="www.wikidata.org")
        process = other.process
    assert process is not None and process.poll() is not None
    assert not probe(other.url, timeout=1.0)
