"""Helpers for the outlink topic model tests: reference answers and starting the servers as subprocesses.

Reference answers are computed independently of `outlink_server`: outlinks with a different query shape
(`prop=links` on the page, then `pageprops` of the linked titles) and scores straight from fastText.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

import requests
from testkit.servers import REPO_ROOT, SOURCE_PATHS, ServerProcess

TESTS_DIR = REPO_ROOT / "tests"

MODEL_NAME = "outlink-topic-model"
EVENT_STREAM = "mediawiki.page_outlink_topic_prediction_change.test"
LINKS_PER_CALL = "20"  # the servers page through links 20 at a time, so continuation is always exercised
ServerSpec = tuple[str, list[str], dict[str, str], int]  # name, `-m` module args, environment, port
NO_FASTTEXT_STUB = '''raise ImportError("fasttext is not installed in the outlink-transformer image")\n'''


class Reference:
    """Expected outlinks (from the farm's API) and expected scores (from the fastText model itself)."""

    def __init__(self, farm_url: str, model_path: Path) -> None:
        import fasttext

        self.api = f"{farm_url}/w/api.php"
        self.model = fasttext.load_model(str(model_path))

    def get(self, host: str, **params: Any) -> dict:
        params = {"format": "json", "formatversion": 2, **params}
        response = requests.get(self.api, params=params, headers={"Host": host}, timeout=30)
        response.raise_for_status()
        doc = response.json()
        assert "error" not in doc, doc
        return doc

    def linked_titles(self, host: str, title: str | None = None, page_id: int | None = None) -> list[str]:
        page = {"titles": title} if title is not None else {"pageids": page_id}
        params: dict[str, Any] = {"action": "query", "prop": "links", "plnamespace": 0, "pllimit": "max",
                                  "redirects": 1, "continue": "", **page}
        titles: list[str] = []
        while True:
            doc = self.get(host, **params)
            for entry in doc["query"]["pages"]:
                titles += [link["title"] for link in entry.get("links", [])]
            if "continue" not in doc:
                return titles
            params.update(doc["continue"])

    def revision_titles(self, host: str, revision_id: int) -> list[str]:
        links = self.get(host, action="parse", oldid=revision_id, prop="links")["parse"]["links"]
        return [link["title"] for link in links if link["ns"] == 0 and link["exists"]]

    def qids(self, host: str, titles: list[str]) -> list[str]:
        """Q-ids of the titles' pages (redirects followed), ordered by the linked page's title."""
        found: dict[str, str] = {}
        for start in range(0, len(titles), 50):
            doc = self.get(host, action="query", prop="pageprops", ppprop="wikibase_item", redirects=1,
                           titles="|".join(titles[start:start + 50]))
            for entry in doc["query"]["pages"]:
                qid = entry.get("pageprops", {}).get("wikibase_item")
                if qid and not entry.get("missing"):
                    found[entry["title"]] = qid
        return [found[title] for title in sorted(found)]

    def page_qids(self, host: str, title: str | None = None, page_id: int | None = None) -> list[str]:
        return self.qids(host, self.linked_titles(host, title, page_id))

    def scores(self, qids: list[str]) -> dict[str, float]:
        labels, probabilities = self.model.predict(" ".join(qids), k=-1, threshold=0.0)
        pairs = zip(labels, probabilities, strict=True)
        # fastText's predict returns p + 1e-5; the service reports p itself.
        return {label.removeprefix("__label__"): min(1.0, max(0.0, float(p) - 1e-5)) for label, p in pairs}


def server_env(wiki_url: str, model_path: Path, **extra: str) -> dict[str, str]:
    return {"WIKI_URL": wiki_url, "MODEL_PATH": str(model_path), "OUTLINK_LINKS_PER_CALL": LINKS_PER_CALL,
            "MEDIAWIKI_TIMEOUT_S": "10", "LOG_FORMAT": "json", **extra}


def without_fasttext(tmp: Path) -> dict[str, str]:
    """PYTHONPATH with a `fasttext` that cannot be imported in front: the transformer image has none."""
    (tmp / "fasttext.py").write_text(NO_FASTTEXT_STUB)
    return {"PYTHONPATH": os.pathsep.join([str(tmp), *(str(path) for path in SOURCE_PATHS)])}


def start_servers(specs: list[ServerSpec]) -> list[ServerProcess]:
    """Starts every (name, module args, env, port) server first, then waits for each: imports overlap."""
    servers: list[ServerProcess] = []
    try:
        for name, module_args, env, port in specs:
            argv = [sys.executable, "-m", *module_args, f"--http_port={port}"]
            servers.append(ServerProcess(name, argv, {**env, "HTTP_PORT": str(port)}, port))
        for server in servers:
            server.wait_ready([MODEL_NAME])
    except Exception:
        for server in servers:
            server.stop()
        raise
    return servers


def predictor_spec(wiki_url: str, model_path: Path, port: int, **env: str) -> ServerSpec:
    return ("outlink-predictor", ["outlink_server.predictor", f"--model_name={MODEL_NAME}"],
            server_env(wiki_url, model_path, **env), port)


def transformer_spec(wiki_url: str, predictor_host: str, no_fasttext_dir: Path, port: int,
                     *extra_args: str, **env: str) -> ServerSpec:
    """KServe's transformer arguments; no MODEL_PATH and no importable fasttext, as in its image."""
    args = ["outlink_server.transformer", f"--model_name={MODEL_NAME}", f"--predictor_host={predictor_host}",
            *extra_args]
    env = {key: value for key, value in server_env(wiki_url, Path("-"), **env).items() if key != "MODEL_PATH"}
    return "outlink-transformer", args, {**env, **without_fasttext(no_fasttext_dir)}, port


def predict(server: ServerProcess, body: object) -> requests.Response:
    return server.predict(MODEL_NAME, body, timeout_s=60)


def metric_total(server: ServerProcess, name: str, **labels: str) -> float:
    """Sum of a Prometheus counter/histogram-count sample on the server's /metrics over matching labels."""
    text = requests.get(f"{server.url}/metrics", timeout=10).text
    total = 0.0
    for line in text.splitlines():
        match = re.match(rf"{re.escape(name)}(?:{{(.*)}})? (\S+)$", line)
        if match and all(f'{key}="{value}"' in (match.group(1) or "") for key, value in labels.items()):
            total += float(match.group(2))
    return total
