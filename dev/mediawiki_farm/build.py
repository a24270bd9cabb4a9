"""Builds the farm: one MediaWiki install copied per wiki, seeded by one PHP process per wiki."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dev.mediawiki_farm import plan as seed_plan
from dev.seed_table import REPO_ROOT, seed_table_path, wikis

PACKAGE_DIR = Path(__file__).resolve().parent
PHP_DIR = PACKAGE_DIR / "php"
DEFAULT_STATE_DIR = REPO_ROOT / ".state" / "farm"
DEFAULT_MW_DIR = Path("/usr/share/mediawiki")
TEMPLATE_DB = "template"
MANIFEST_FORMAT = 1  # bump when the manifest's shape changes without the seeded content changing
SITENAMES = {"wikipedia": "Wikipedia", "wikibooks": "Wikibooks", "wikiquote": "Wikiquote",
             "wikisource": "Wikisource", "wiktionary": "Wiktionary", "wikidata": "Wikidata"}


class FarmError(RuntimeError):
    """Setting up or running the farm failed."""


@dataclass(frozen=True)
class FarmPaths:
    """Where the farm keeps its state; everything below `state_dir` is generated."""

    state_dir: Path = DEFAULT_STATE_DIR
    mw_dir: Path = DEFAULT_MW_DIR

    @property
    def db_dir(self) -> Path:
        return self.state_dir / "db"

    @property
    def plans_dir(self) -> Path:
        return self.state_dir / "plans"

    @property
    def settings(self) -> Path:
        return self.state_dir / "LocalSettings.php"

    @property
    def router(self) -> Path:
        return self.state_dir / "router.php"

    @property
    def manifest(self) -> Path:
        return self.state_dir / "manifest.json"

    @property
    def stamp(self) -> Path:
        return self.state_dir / "stamp"


@dataclass(frozen=True)
class Wiki:
    dbname: str
    domain: str
    lang: str

    @property
    def sitename(self) -> str:
        if self.domain == "translatewiki.net":
            return "translatewiki.net"
        return SITENAMES[self.domain.split(".")[1]]


def farm_wikis() -> list[Wiki]:
    return [Wiki(row.dbname, row.domain, row.content_language) for row in wikis().values()]


def build_plans(farm: list[Wiki]) -> dict[str, seed_plan.Plan]:
    phrases = seed_plan.load_phrases()
    return {wiki.dbname: seed_plan.build_plan(wiki.dbname, wiki.lang, phrases) for wiki in farm}


def fixtures_hash(farm: list[Wiki], plans: dict[str, seed_plan.Plan]) -> str:
    """Changes whenever the seeded content or the PHP side changes (then setup rebuilds).

    It hashes the generated plans rather than the generator's source, so a refactoring that keeps the
    content does not wipe a farm that others may be serving.
    """
    digest = hashlib.sha256(f"format {MANIFEST_FORMAT}\n".encode())
    for path in sorted(PHP_DIR.glob("*.php")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    for wiki in farm:
        digest.update(json.dumps(vars(wiki)).encode())
        digest.update(json.dumps(plans[wiki.dbname].as_seed_input(), ensure_ascii=False).encode())
    return digest.hexdigest()


def is_built(paths: FarmPaths, stamp: str) -> bool:
    return paths.stamp.exists() and paths.manifest.exists() and paths.stamp.read_text().strip() == stamp


@contextmanager
def setup_lock(paths: FarmPaths) -> Iterator[None]:
    """Serialises concurrent setups (e.g. a test session and `make run` starting together)."""
    paths.state_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(paths.state_dir.with_name(paths.state_dir.name + ".lock"), "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def php_env(paths: FarmPaths) -> dict[str, str]:
    return {**os.environ, "MW_INSTALL_PATH": str(paths.mw_dir), "MW_CONFIG_FILE": str(paths.settings)}


def run_php(args: list[str], paths: FarmPaths, log: Path, env: dict[str, str] | None = None) -> None:
    with open(log, "ab") as handle:
        done = subprocess.run(["php", *args], cwd=paths.mw_dir, env=env or php_env(paths), stdout=handle,
                              stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise FarmError(f"php {args[0]} failed (exit {done.returncode}); end of {log}:\n{tail}")


def php_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def write_config(paths: FarmPaths, farm: list[Wiki]) -> None:
    """wikis.php (dbname -> domain, lang), LocalSettings.php and router.php shims for this state dir."""
    entries = "".join(f"\t{php_string(w.dbname)} => [ 'domain' => {php_string(w.domain)}, "
                      f"'lang' => {php_string(w.lang)}, 'sitename' => {php_string(w.sitename)} ],\n"
                      for w in farm)
    (paths.state_dir / "wikis.php").write_text(f"<?php\nreturn [\n{entries}];\n")
    secret = hashlib.sha256(str(paths.state_dir).encode()).hexdigest()
    # __DIR__, not an absolute path: the farm is built beside the state dir and then renamed into place.
    defines = (f"if ( !defined( 'FARM_STATE_DIR' ) ) {{\n"
               f"\tdefine( 'FARM_STATE_DIR', __DIR__ );\n}}\n"
               f"if ( !defined( 'FARM_SECRET_KEY' ) ) {{\n"
               f"\tdefine( 'FARM_SECRET_KEY', {php_string(secret)} );\n}}\n")
    paths.settings.write_text(f"<?php\n// Generated by dev/mediawiki_farm; do not edit.\n{defines}"
                              f"require {php_string(str(PHP_DIR / 'FarmSettings.php'))};\n")
    paths.router.write_text(f"<?php\n// Generated by dev/mediawiki_farm; do not edit.\n{defines}"
                            f"define( 'FARM_SETTINGS', __DIR__ . '/{paths.settings.name}' );\n"
                            f"define( 'MW_DIR', {php_string(str(paths.mw_dir))} );\n"
                            f"return require {php_string(str(PHP_DIR / 'router.php'))};\n")


def install_template(paths: FarmPaths) -> None:
    """maintenance/install.php once, into template.sqlite; its generated LocalSettings is discarded."""
    scratch = paths.state_dir / "install"
    scratch.mkdir(parents=True, exist_ok=True)
    env = {key: value for key, value in os.environ.items() if key != "MW_CONFIG_FILE"}
    run_php([str(paths.mw_dir / "maintenance" / "install.php"), "--dbtype=sqlite", f"--dbpath={paths.db_dir}",
             f"--dbname={TEMPLATE_DB}", "--pass=FarmAdmin-not-secret-2024", "--server=http://localhost",
             "--scriptpath=/w", f"--confpath={scratch}", "--lang=en", "Farm", "Admin"],
            paths, paths.state_dir / "install.log", env=env)
    shutil.rmtree(scratch)


def build_localisation(paths: FarmPaths, farm: list[Wiki]) -> None:
    """Localisation cache for every content language once, shared by all wikis (PHP array files)."""
    langs = sorted({wiki.lang for wiki in farm} | {"en"})
    run_php([str(paths.mw_dir / "maintenance" / "rebuildLocalisationCache.php"), "--lang=" + ",".join(langs),
             "--threads=2", f"--outdir={paths.state_dir / 'l10n'}", f"--wiki={TEMPLATE_DB}"],
            paths, paths.state_dir / "l10n.log")


def seed_wiki(paths: FarmPaths, wiki: Wiki, plan: seed_plan.Plan) -> dict[str, Any]:
    """Copies the template database and replays the wiki's plan; returns its manifest entry."""
    shutil.copyfile(paths.db_dir / f"{TEMPLATE_DB}.sqlite", paths.db_dir / f"{wiki.dbname}.sqlite")
    plan_file = paths.plans_dir / f"{wiki.dbname}.json"
    result_file = paths.plans_dir / f"{wiki.dbname}.result.json"
    plan_file.write_text(json.dumps(plan.as_seed_input(), ensure_ascii=False))
    seed_args = [f"--wiki={wiki.dbname}", f"--plan={plan_file}", f"--out={result_file}"]
    run_php([str(PHP_DIR / "seed.php"), *seed_args], paths, paths.plans_dir / f"{wiki.dbname}.log")
    result = json.loads(result_file.read_text())
    return manifest_entry(wiki, plan, result)


def manifest_entry(wiki: Wiki, plan: seed_plan.Plan, result: dict[str, Any]) -> dict[str, Any]:
    revs = result["revs"]
    pages = []
    for page in plan.pages:
        if page["kind"] == "redirect":
            continue
        first = revs[page["edits"][0]]
        pages.append({"title": first["title"], "page_id": first["page_id"], "kind": page["kind"],
                      "rev_ids": [revs[key]["rev_id"] for key in page["edits"]], "qid": page["qid"]})
    special: dict[str, Any] = {}
    for name, value in plan.special.items():
        special[name] = revs[value]["rev_id"] if name.endswith("_rev_id") else value
    revisions = [{"rev_id": revs[edit["key"]]["rev_id"], "page_id": revs[edit["key"]]["page_id"],
                  "title": edit["title"], "user": edit.get("user") or edit.get("ip"), "anon": "ip" in edit,
                  "timestamp": edit["timestamp"], "label": edit["label"],
                  "hidden": edit["key"] in plan.hidden}
                 for edit in plan.as_seed_input()["edits"]]
    return {"dbname": wiki.dbname, "host": wiki.domain, "lang": wiki.lang, "pages": pages, "special": special,
            "users": result["users"], "anon_ips": list(seed_plan.ANON_IPS), "revisions": revisions}


def setup(state_dir: Path | None = None, force: bool = False, jobs: int = 2,
          mw_dir: Path = DEFAULT_MW_DIR, quiet: bool = False) -> Path:
    """Builds the farm unless it is already built from the same fixtures; returns the manifest path."""
    paths = FarmPaths(Path(state_dir or DEFAULT_STATE_DIR).resolve(), mw_dir)
    farm = farm_wikis()
    plans = build_plans(farm)
    stamp = fixtures_hash(farm, plans)
    with setup_lock(paths):
        if force or not is_built(paths, stamp):
            build(paths, farm, plans, stamp, jobs, (lambda _: None) if quiet else print_progress)
    return paths.manifest


def print_progress(text: str) -> None:
    print(text, flush=True)


def build(final: FarmPaths, farm: list[Wiki], plans: dict[str, seed_plan.Plan], stamp: str, jobs: int,
          say: Callable[[str], None]) -> None:
    """Builds a complete farm beside the state directory, then swaps it in.

    A server still running on the old state keeps answering until the swap (the generated shims find
    their files relative to themselves), and an interrupted build never leaves a half-built farm.
    """
    paths = FarmPaths(final.state_dir.with_name(final.state_dir.name + ".building"), final.mw_dir)
    started = time.monotonic()
    if paths.state_dir.exists():
        shutil.rmtree(paths.state_dir)
    for directory in (paths.db_dir, paths.plans_dir, paths.state_dir / "cache", paths.state_dir / "l10n"):
        directory.mkdir(parents=True, exist_ok=True)
    say(f"farm: building {len(farm)} wikis in {paths.state_dir} (seed table {seed_table_path()})")
    write_config(paths, farm)
    install_template(paths)
    say(f"farm: template installed ({time.monotonic() - started:.1f}s)")
    build_localisation(paths, farm)
    say(f"farm: localisation cache built ({time.monotonic() - started:.1f}s)")

    def seed(wiki: Wiki) -> dict[str, Any]:
        began = time.monotonic()
        entry = seed_wiki(paths, wiki, plans[wiki.dbname])
        say(f"farm: {wiki.dbname:<14} {wiki.domain:<20} lang={wiki.lang:<3} "
            f"{len(entry['revisions'])} revisions ({time.monotonic() - began:.1f}s)")
        return entry

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        manifest = {entry["dbname"]: entry for entry in pool.map(seed, farm)}
    paths.manifest.write_text(json.dumps(manifest, ensure_ascii=False, indent=1))
    paths.stamp.write_text(stamp + "\n")
    swap_in(paths.state_dir, final.state_dir)
    say(f"farm: ready in {time.monotonic() - started:.1f}s; manifest {final.manifest}")


def swap_in(built: Path, state_dir: Path) -> None:
    old = state_dir.with_name(state_dir.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    if state_dir.exists():
        state_dir.rename(old)
    built.rename(state_dir)
    if old.exists():
        shutil.rmtree(old)


def reset(state_dir: Path | None = None, jobs: int = 2) -> Path:
    """Rebuilds from scratch; the old state is removed once the new one has been swapped in."""
    return setup(state_dir, force=True, jobs=jobs)


def load_manifest(state_dir: Path | None = None) -> dict[str, Any]:
    path = FarmPaths(Path(state_dir or DEFAULT_STATE_DIR).resolve()).manifest
    if not path.exists():
        raise FarmError(f"{path} does not exist: run `python -m dev.mediawiki_farm setup` first")
    return json.loads(path.read_text())

