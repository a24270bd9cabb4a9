"""Builds each wiki's seed plan (users, edits, page props, hidden revisions) from the phrase table.

The plan is pure data: `seed.php` replays it through MediaWiki in one PHP process per wiki. Everything
is derived from the dbname (seeded random generator), so the same fixtures always give the same plan.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

FIXTURES_DIR = Path(__file__).resolve().parent / "fixtures"
PHRASES_FILE = FIXTURES_DIR / "phrases.json"

N_ARTICLES = 6  # articles with a full history (good, vandal, revert, newcomer edits)
STUBS_PER_NOUN = 4  # 10 nouns x 4 = 40 small linked pages
MANY_LINKS = 600  # outlinks of the many-links page (> one API page at pllimit=max=500)
LARGE_BYTES = 520_000  # the large page's last revision, in UTF-8 bytes of wikitext
STUB_QID_BASE = 100
WIKIDATA = "wikidatawiki"
SITE_OF_LANG = {"nb": "no"}  # Wikipedia's site code where it differs from the content language

VETERAN = "Farm Veteran"  # long-standing editor: old registration, many edits, extra groups
EDITOR = "Farm Editor"  # ordinary registered editor
NEWCOMER = "Farm Newcomer"  # brand-new account: registered minutes before its first edit
# IPv6 in the normalised form MediaWiki stores and reports.
ANON_IPS = ("203.0.113.7", "198.51.100.23", "2001:DB8:0:0:0:0:0:1D")

NEWCOMER_REGISTRATION = "20240601100000"
USERS = [
    {"name": VETERAN, "registration": "20090314101500", "groups": ["rollbacker", "autopatrolled"],
     "extra_edits": 24_000, "email": "veteran@farm.invalid", "gender": "female"},
    {"name": EDITOR, "registration": "20140602083000", "groups": [], "extra_edits": 1_500,
     "email": None, "gender": "male"},
    {"name": NEWCOMER, "registration": NEWCOMER_REGISTRATION, "groups": [], "extra_edits": None,
     "email": None, "gender": None},
]


def load_phrases(path: Path = PHRASES_FILE) -> dict[str, dict[str, Any]]:
    with open(path, encoding="utf-8") as handle:
        data = json.load(handle)
    return {lang: value for lang, value in data.items() if not lang.startswith("_")}


def ts(moment: datetime) -> str:
    return moment.strftime("%Y%m%d%H%M%S")


def at(text: str) -> datetime:
    return datetime.strptime(text, "%Y%m%d%H%M%S").replace(tzinfo=UTC)


def article_qid(index: int) -> str:
    return f"Q{index + 1}"


def stub_qid(noun_index: int, number: int) -> str:
    return f"Q{STUB_QID_BASE + noun_index * 10 + number}"


@dataclass
class Plan:
    """What seed.php replays, plus the bookkeeping the manifest needs."""

    dbname: str
    lang: str
    edits: list[dict[str, Any]] = field(default_factory=list)
    page_props: dict[str, dict[str, str]] = field(default_factory=dict)  # page key -> props
    hidden: list[str] = field(default_factory=list)  # edit keys
    pages: list[dict[str, Any]] = field(default_factory=list)  # {"key", "title", "kind", "qid", "edits"}
    special: dict[str, str] = field(default_factory=dict)  # manifest key -> edit key or title

    def add_page(self, key: str, title: str, kind: str, qid: str | None) -> dict[str, Any]:
        page = {"key": key, "title": title, "kind": kind, "qid": qid, "edits": []}
        self.pages.append(page)
        if qid and self.dbname != WIKIDATA:
            self.page_props[f"{key}/0"] = {"wikibase_item": qid}
        return page

    def edit(self, page: dict[str, Any], when: datetime, who: str, text: str, summary: str,
             label: str = "ordinary", minor: bool = False, model: str | None = None) -> str:
        key = f"{page['key']}/{len(page['edits'])}"
        edit: dict[str, Any] = {"key": key, "title": page["title"], "text": text, "summary": summary,
                                "timestamp": ts(when), "minor": minor, "label": label}
        edit["ip" if who in ANON_IPS else "user"] = who
        if model:
            edit["model"] = model
        self.edits.append(edit)
        page["edits"].append(key)
        return key

    def as_seed_input(self) -> dict[str, Any]:
        users = []
        edit_counts = {user["name"]: 0 for user in USERS}
        for edit in self.edits:
            if "user" in edit:
                edit_counts[edit["user"]] += 1
        for user in USERS:
            spec = {key: user[key] for key in ("name", "registration", "groups", "email", "gender")}
            if user["extra_edits"] is not None:
                spec["editcount"] = user["extra_edits"] + edit_counts[user["name"]]
            users.append(spec)
        edits = sorted(self.edits, key=lambda edit: edit["timestamp"])
        return {"users": users, "edits": edits, "page_props": self.page_props, "hidden": self.hidden}


def build_plan(dbname: str, lang: str, phrases: dict[str, dict[str, Any]]) -> Plan:
    """The seed plan of one wiki; Wikidata gets items instead of wikitext articles."""
    plan = Plan(dbname, lang)
    rng = random.Random(dbname)
    if dbname == WIKIDATA:
        _wikidata_plan(plan, rng, phrases)
    else:
        _wikitext_plan(plan, rng, phrases[lang])
    return plan


def _newcomer_time(index: int) -> datetime:
    """The brand-new account edits minutes after registering (after every vandalism/revert of May)."""
    return at(NEWCOMER_REGISTRATION) + timedelta(minutes=20 + 25 * index)


# --- wikitext wikis ---------------------------------------------------------------------------------


def _link(title: str) -> str:
    return f"[[{title}]]"


def _paragraph(words: dict[str, Any], title: str, rng: random.Random, links: list[str]) -> str:
    """The body sentences in random order; the first `len(links)` of them are followed by a link."""
    sentences = [sentence.replace("{title}", title) for sentence in words["sentences"][1:]]
    rng.shuffle(sentences)
    parts = [f"{sentence} {_link(links[i])}." if i < len(links) else sentence
             for i, sentence in enumerate(sentences)]
    return " ".join(parts).replace("..", ".")


def _article_versions(words: dict[str, Any], title: str, stubs: list[str], rng: random.Random,
                      ) -> tuple[str, str]:
    """First version (short, 8 links) and the veteran's expansion (24+ links, a section, a category)."""
    history, see_also = words["headings"]
    intro = words["sentences"][0].replace("{title}", f"'''{title}'''")
    first_links = stubs[:8]
    first = "\n\n".join([
        f"{intro} {_paragraph(words, title, rng, first_links[:3])}",
        f"== {see_also} ==\n" + "\n".join(f"* {_link(link)}" for link in first_links),
    ])
    more = stubs[8:26]
    expansion = "\n\n".join(_paragraph(words, title, rng, more[i:i + 4]) for i in range(0, len(more), 4))
    second = "\n\n".join([
        f"{intro} {_paragraph(words, title, rng, first_links[:3])}",
        f"== {history} ==\n{expansion}",
        f"== {see_also} ==\n" + "\n".join(f"* {_link(link)}" for link in first_links),
        f"[[Category:{title}]]",
    ])
    return first, second


def _vandalise(words: dict[str, Any], text: str, kind: str) -> str:
    noise = words["noise"]
    if kind == "blank":
        return noise.upper()
    if kind == "caps":
        head, _, tail = text.partition("\n\n")
        return f"{head.upper()} {noise.upper()}!!!!\n\n{tail}"
    middle = len(text) // 2
    return f"{text[:middle]} {noise} {noise} {noise} {text[middle:]}"


def _wikitext_plan(plan: Plan, rng: random.Random, words: dict[str, Any]) -> None:
    nouns = words["nouns"]
    expand, copyedit = words["summaries"]
    stub_titles = []
    start = datetime(2012, 3, 1, tzinfo=UTC)
    for noun_index, noun in enumerate(nouns):
        for number in range(1, STUBS_PER_NOUN + 1):
            title = f"{noun} {number}"
            stub_titles.append(title)
            page = plan.add_page(f"stub{noun_index}_{number}", title, "stub", stub_qid(noun_index, number))
            neighbour = f"{nouns[(noun_index + 1) % len(nouns)]} {number}"
            intro = words["sentences"][0].replace("{title}", f"'''{title}'''")
            text = f"{intro} {words['sentences'][number % 4 + 1]} {_link(neighbour)}."
            when = start + timedelta(days=rng.randint(0, 1500), minutes=rng.randint(0, 1439))
            plan.edit(page, when, rng.choice([VETERAN, EDITOR]), text, expand)
    vandal_kinds = ["insert", "caps", "blank"]
    for index in range(N_ARTICLES):
        title = nouns[index]
        page = plan.add_page(f"article{index}", title, "article", article_qid(index))
        links = rng.sample(stub_titles, len(stub_titles))
        first, second = _article_versions(words, title, links, rng)
        when = datetime(2016, 1, 10, tzinfo=UTC) + timedelta(days=rng.randint(0, 700))
        plan.edit(page, when, EDITOR, first, expand)
        when += timedelta(days=rng.randint(30, 400), hours=rng.randint(0, 23))
        good = plan.edit(page, when, VETERAN, second, expand, label="good")
        when = datetime(2024, 5, 7, 14, 30, tzinfo=UTC) + timedelta(hours=index * 3)
        ip = ANON_IPS[index % len(ANON_IPS)]
        vandal = plan.edit(page, when, ip, _vandalise(words, second, vandal_kinds[index % 3]), "",
                           label="vandalism")
        when += timedelta(minutes=rng.randint(2, 30))
        plan.edit(page, when, VETERAN, second, f"{copyedit} (rv {ip})", label="revert")
        when += timedelta(days=rng.randint(1, 20))
        if index % 2 == 1:
            when = _newcomer_time(index)
            extra = f"{second}\n\n{words['sentences'][3].replace('{title}', title)} {_link(links[30])}."
            newcomer = plan.edit(page, when, NEWCOMER, extra, "", label="newcomer")
            plan.special.setdefault("newcomer_rev_id", newcomer)
        else:
            piped = second.replace(_link(links[0]), f"[[{links[0]}|{links[0]}]]", 1)
            plan.edit(page, when, EDITOR, piped, copyedit, minor=True)
        if index == 0:
            plan.special["good_rev_id"] = good
            plan.special["anon_rev_id"] = vandal
        if index == 2:
            plan.hidden.append(vandal)
            plan.special["hidden_rev_id"] = vandal
    _wikitext_specials(plan, rng, words, stub_titles)


def _wikitext_specials(plan: Plan, rng: random.Random, words: dict[str, Any], stub_titles: list[str]) -> None:
    nouns = words["nouns"]
    expand, _ = words["summaries"]
    intro = words["sentences"][0]
    # Many links: every existing page plus red links, > 500 so prop=links needs continuation.
    title = nouns[6]
    page = plan.add_page("links", title, "many_links", article_qid(6))
    existing = stub_titles + nouns[:N_ARTICLES]
    red = [f"{nouns[i % len(nouns)]} {STUBS_PER_NOUN + 1 + i}" for i in range(MANY_LINKS - len(existing))]
    when = datetime(2019, 8, 1, 9, 0, tzinfo=UTC)
    plan.edit(page, when, EDITOR, f"{intro.replace('{title}', title)}\n" +
              "\n".join(f"* {_link(link)}" for link in existing[:20]), expand)
    text = f"{intro.replace('{title}', title)}\n" + "\n".join(f"* {_link(link)}" for link in existing + red)
    plan.edit(page, when + timedelta(days=40), VETERAN, text, expand)
    plan.special["many_links_title"] = title
    # Large page: one ordinary revision, then >= 500 KB of wikitext.
    title = nouns[7]
    page = plan.add_page("large", title, "large", article_qid(7))
    short, _ = _article_versions(words, title, stub_titles, rng)
    when = datetime(2020, 2, 3, 12, 0, tzinfo=UTC)
    plan.edit(page, when, EDITOR, short, expand)
    history = words["headings"][0]
    blocks, size, number = [short], len(short.encode()), 0
    while size < LARGE_BYTES:
        number += 1
        block = f"== {history} {number} ==\n" + _paragraph(words, title, rng, rng.sample(stub_titles, 3))
        blocks.append(block)
        size += len(block.encode()) + 2
    large = plan.edit(page, when + timedelta(days=90), VETERAN, "\n\n".join(blocks), expand)
    plan.special["large_page_title"] = title
    plan.special["large_rev_id"] = large
    # Redirect to the first article.
    title = nouns[8]
    page = plan.add_page("redirect", title, "redirect", None)
    plan.edit(page, datetime(2018, 6, 5, 7, 0, tzinfo=UTC), EDITOR, f"#REDIRECT {_link(nouns[0])}", "")
    plan.special["redirect_title"] = title
    plan.special["redirect_target"] = nouns[0]


# --- Wikidata ---------------------------------------------------------------------------------------


def _snak_item(prop: str, qid: str) -> dict[str, Any]:
    return {"snaktype": "value", "property": prop, "datatype": "wikibase-item",
            "datavalue": {"type": "wikibase-entityid",
                          "value": {"entity-type": "item", "numeric-id": int(qid[1:]), "id": qid}}}


def _claim(item: str, prop: str, qid: str, number: int) -> dict[str, Any]:
    return {"mainsnak": _snak_item(prop, qid), "type": "statement", "rank": "normal",
            "id": f"{item}${number:08d}-farm-0000-0000-000000000000"}


def _item(qid: str, labels: dict[str, str], description: str, claims: list[tuple[str, str]],
          sitelinks: dict[str, str], aliases: dict[str, list[str]] | None = None) -> dict[str, Any]:
    by_prop: dict[str, list[dict[str, Any]]] = {}
    for number, (prop, value) in enumerate(claims):
        by_prop.setdefault(prop, []).append(_claim(qid, prop, value, number))
    return {
        "type": "item", "id": qid,
        "labels": {lang: {"language": lang, "value": value} for lang, value in labels.items()},
        "descriptions": {"en": {"language": "en", "value": description}},
        "aliases": {lang: [{"language": lang, "value": value} for value in values]
                    for lang, values in (aliases or {}).items()},
        "claims": by_prop,
        "sitelinks": {site: {"site": site, "title": title, "badges": []}
                      for site, title in sitelinks.items()},
    }


def _dump(item: dict[str, Any]) -> str:
    return json.dumps(item, ensure_ascii=False, separators=(",", ":"))


def _wikidata_plan(plan: Plan, rng: random.Random, phrases: dict[str, dict[str, Any]]) -> None:
    english = phrases["en"]
    classes = ["Q4022", "Q8502", "Q515", "Q23397", "Q4421", "Q23413", "Q12280", "Q7075", "Q23442", "Q39816"]

    def labels(noun_index: int, suffix: str = "") -> dict[str, str]:
        return {lang: f"{words['nouns'][noun_index]}{suffix}" for lang, words in phrases.items()}

    def sitelinks(noun_index: int, suffix: str = "") -> dict[str, str]:
        return {f"{SITE_OF_LANG.get(lang, lang)}wiki": f"{words['nouns'][noun_index]}{suffix}"
                for lang, words in phrases.items()}

    start = datetime(2013, 1, 5, tzinfo=UTC)
    for noun_index in range(len(english["nouns"])):
        for number in range(1, STUBS_PER_NOUN + 1):
            qid = stub_qid(noun_index, number)
            page = plan.add_page(f"stub{noun_index}_{number}", qid, "stub", qid)
            item = _item(qid, labels(noun_index, f" {number}"), english["sentences"][1],
                         [("P31", classes[noun_index])], sitelinks(noun_index, f" {number}"))
            when = start + timedelta(days=rng.randint(0, 1500), minutes=rng.randint(0, 1439))
            plan.edit(page, when, rng.choice([VETERAN, EDITOR]), _dump(item), "/* wbeditentity-create */",
                      model="wikibase-item")
    for index in range(N_ARTICLES + 2):
        _wikidata_item_history(plan, rng, phrases, index, classes, labels(index), sitelinks(index))
    _wikidata_specials(plan, english)


def _wikidata_item_history(plan: Plan, rng: random.Random, phrases: dict[str, dict[str, Any]], index: int,
                           classes: list[str], labels: dict[str, str], links: dict[str, str]) -> None:
    english = phrases["en"]
    qid = article_qid(index)
    kind = "large" if index == N_ARTICLES + 1 else "article"
    page = plan.add_page(f"article{index}", qid, kind, qid)
    first = _item(qid, {"en": labels["en"]}, english["sentences"][1], [("P31", classes[index])],
                  {"enwiki": links["enwiki"]})
    when = datetime(2014, 4, 1, tzinfo=UTC) + timedelta(days=rng.randint(0, 700))
    plan.edit(page, when, EDITOR, _dump(first), "/* wbeditentity-create */", model="wikibase-item")
    stubs = [stub_qid(index % 10, number) for number in range(1, STUBS_PER_NOUN + 1)]
    claims = [("P31", classes[index])] + [("P361", stub) for stub in stubs] + [("P17", "Q" + str(index + 30))]
    second = _item(qid, labels, english["sentences"][1], claims, links,
                   aliases={"en": [f"{labels['en']} ({english['headings'][0]})"]})
    when += timedelta(days=rng.randint(30, 300))
    summary = "/* wbeditentity-update */ labels, claims, sitelinks"
    good = plan.edit(page, when, VETERAN, _dump(second), summary, label="good", model="wikibase-item")
    if kind == "large":
        big_aliases = {lang: [f"{words['nouns'][index]} {english['headings'][0]} {n}" for n in range(250)]
                       for lang, words in phrases.items()}
        big_claims = claims + [("P1343", f"Q{5000 + n}") for n in range(1200)]
        large = _item(qid, labels, english["sentences"][1], big_claims, links, aliases=big_aliases)
        plan.special["large_page_title"] = qid
        plan.special["large_rev_id"] = plan.edit(page, when + timedelta(days=9), VETERAN, _dump(large),
                                                 "/* wbeditentity-update */", model="wikibase-item")
        return
    vandalised = json.loads(_dump(second))
    vandalised["labels"]["en"]["value"] = english["noise"].upper()
    vandalised["descriptions"]["en"]["value"] = english["noise"]
    ip = ANON_IPS[index % len(ANON_IPS)]
    when = datetime(2024, 5, 7, 14, 30, tzinfo=UTC) + timedelta(hours=index * 3)
    vandal = plan.edit(page, when, ip, _dump(vandalised), "/* wbsetlabel-set:1|en */", label="vandalism",
                       model="wikibase-item")
    when += timedelta(minutes=rng.randint(2, 30))
    plan.edit(page, when, VETERAN, _dump(second), f"Undid revision by [[Special:Contributions/{ip}|{ip}]]",
              label="revert", model="wikibase-item")
    when += timedelta(days=rng.randint(1, 20))
    third = json.loads(_dump(second))
    if index % 2 == 1:
        when = _newcomer_time(index)
        third["aliases"].setdefault("en", []).append({"language": "en", "value": f"{labels['en']} {index}"})
        newcomer = plan.edit(page, when, NEWCOMER, _dump(third), "/* wbsetaliases-add:1|en */",
                             label="newcomer", model="wikibase-item")
        plan.special.setdefault("newcomer_rev_id", newcomer)
    else:
        third["descriptions"]["en"]["value"] = english["sentences"][2]
        plan.edit(page, when, EDITOR, _dump(third), "/* wbsetdescription-set:1|en */", model="wikibase-item")
    if index == 0:
        plan.special["good_rev_id"] = good
        plan.special["anon_rev_id"] = vandal
    if index == 2:
        plan.hidden.append(vandal)
        plan.special["hidden_rev_id"] = vandal


def _wikidata_specials(plan: Plan, english: dict[str, Any]) -> None:
    # A wikitext list in the main namespace (non-Q titles stay wikitext) links every item, plus red links.
    items = [page["title"] for page in plan.pages]
    red = [f"Q{9000 + n}" for n in range(MANY_LINKS - len(items))]
    page = plan.add_page("links", "Farm item list", "many_links", None)
    plan.edit(page, datetime(2019, 8, 1, 9, 0, tzinfo=UTC), EDITOR,
              "\n".join(f"* {_link(title)}" for title in items + red), english["summaries"][0])
    plan.special["many_links_title"] = "Farm item list"
    page = plan.add_page("redirect", "Farm redirect", "redirect", None)
    plan.edit(page, datetime(2018, 6, 5, 7, 0, tzinfo=UTC), EDITOR, f"#REDIRECT {_link('Q1')}", "")
    plan.special["redirect_title"] = "Farm redirect"
    plan.special["redirect_target"] = "Q1"
