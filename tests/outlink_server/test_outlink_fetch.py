"""Fetching outlinks in-process against the farm: continuation at the API's real page size, the 1000-link
cap (stopping early), and title batches for a revision's links, counting the API calls made."""

from __future__ import annotations

from typing import Any

import pytest

from outlink_server import outlinks
from outlink_server.languages import wikipedias
from outlink_server.outlinks import fetch_outlinks
from outlink_server.request import parse_request
from outlink_server.settings import OutlinkSettings
from wikiserve.config import MediaWikiSettings
from wikiserve.mediawiki import MediaWikiClient, MediaWikiPool

EN = "en.wikipedia.org"


class CountingClient(MediaWikiClient):
    """The core's client, recording the parameters of every call."""

    def __init__(self, pool: MediaWikiPool, domain: str) -> None:
        super().__init__(pool, domain)
        self.calls: list[dict[str, Any]] = []

    async def get(self, **params: Any) -> dict:
        self.calls.append(params)
        return await super().get(**params)


@pytest.fixture
async def client(farm):
    pool = MediaWikiPool(MediaWikiSettings(url=farm.url))
    yield CountingClient(pool, EN)
    await pool.close()


def _request(**body):
    return parse_request({"lang": "en", **body}, wikipedias())


async def test_continuation_at_the_apis_own_page_size(client, reference, enwiki):
    title = enwiki["special"]["many_links_title"]
    assert len(reference.linked_titles(EN, title)) > 500  # more than one page at gpllimit=max
    qids = await fetch_outlinks(client, _request(page_title=title), OutlinkSettings())
    assert qids == reference.page_qids(EN, title)
    assert len(client.calls) >= 2
    assert all(call["gpllimit"] == "max" for call in client.calls)
    assert "gplcontinue" in client.calls[-1]


async def test_at_most_max_outlinks_and_stops_early(client, reference, enwiki):
    title = enwiki["special"]["many_links_title"]
    settings = OutlinkSettings(links_per_call="10", max_outlinks=5)
    qids = await fetch_outlinks(client, _request(page_title=title), settings)
    assert qids == reference.page_qids(EN, title)[:5]
    assert len(client.calls) < len(reference.linked_titles(EN, title)) / 10  # did not read every link


async def test_revision_links_are_looked_up_in_batches(client, reference, enwiki, monkeypatch):
    title = enwiki["special"]["many_links_title"]
    revision = next(page for page in enwiki["pages"] if page["title"] == title)["rev_ids"][-1]
    titles = reference.revision_titles(EN, revision)
    monkeypatch.setattr(outlinks, "TITLES_PER_CALL", 10)
    qids = await fetch_outlinks(client, _request(page_title=title, revision_id=revision), OutlinkSettings())
    assert qids == reference.qids(EN, titles)
    lookups = [call for call in client.calls if call.get("action") == "query"]
    assert [call["action"] for call in client.calls].count("parse") == 1
    assert len(lookups) == -(-len(titles) // 10)
    assert all(len(call["titles"].split("|")) <= 10 for call in lookups)
