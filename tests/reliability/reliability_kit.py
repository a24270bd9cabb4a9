"""Helpers for the reliability suite: a recording fault proxy, an HTTPS EventGate stand-in, metrics, servers.

Everything here talks to real processes over real sockets; nothing is mocked inside the servers.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import ssl
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests
from aiohttp import web
from testkit.events import revision_create_event  # noqa: F401 - re-exported for the reliability tests
from testkit.faulty_mediawiki import FaultyMediaWiki
from testkit.metrics import metric_delta, metric_samples, metric_sum  # noqa: F401 - re-exported
from testkit.servers import ServerProcess, free_port

REVSCORING_ISVC = "enwiki-damaging"
OUTLINK_MODEL = "outlink-topic-model"
MODEL_OF = {"revscoring": REVSCORING_ISVC, "predictor": OUTLINK_MODEL, "transformer": OUTLINK_MODEL}

# Small numbers so a fault costs seconds, not minutes; the bounds asserted below are derived from them.
MW_TIMEOUT_S = 1.0
MW_ATTEMPTS = 3
MW_BACKOFF_CAP_S = 0.5
MW_BACKOFF_BASE_S = 0.2  # wikiserve.config.MediaWikiSettings.backoff_base_s (not configurable)
FAST_FAILURE_ENV = {
    "MEDIAWIKI_TIMEOUT_S": str(MW_TIMEOUT_S),
    "MEDIAWIKI_ATTEMPTS": str(MW_ATTEMPTS),
    "MEDIAWIKI_BACKOFF_CAP_S": str(MW_BACKOFF_CAP_S),
}  # logging keeps its defaults (JSON, INFO): what is logged "by default" is under test


class RecordingProxy(FaultyMediaWiki):
    """The shared fault proxy, plus: arrival times and Host headers of every request, and refusing
    connections outright (the listening socket is closed, so connects fail with ECONNREFUSED)."""

    def __init__(self, upstream: str) -> None:
        super().__init__(upstream)
        self.arrivals: list[float] = []
        self.hosts: list[str] = []
        self.paths: list[str] = []
        self._refusing = False
        self._site: web.TCPSite | None = None

    async def _start(self) -> None:
        await super()._start()
        assert self._runner is not None
        self._site = next(iter(self._runner.sites))  # type: ignore[assignment]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if self._refusing:  # a connection kept alive from before: drop it, new ones are refused
            request.transport.close()  # type: ignore[union-attr]
            raise asyncio.CancelledError
        with self._lock:
            self.arrivals.append(time.monotonic())
            self.hosts.append(request.headers.get("Host", ""))
            self.paths.append(request.path)
        return await super()._handle(request)

    def clear(self) -> None:
        super().clear()
        with self._lock:
            self.arrivals.clear()
            self.hosts.clear()
            self.paths.clear()

    @contextmanager
    def refusing(self) -> Iterator[None]:
        asyncio.run_coroutine_threadsafe(self._close_listener(), self._loop).result(10)
        try:
            yield
        finally:
            asyncio.run_coroutine_threadsafe(self._reopen_listener(), self._loop).result(10)

    async def _close_listener(self) -> None:
        self._refusing = True
        assert self._site is not None
        await self._site.stop()

    async def _reopen_listener(self) -> None:
        assert self._runner is not None
        self._site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await self._site.start()
        self._refusing = False


@dataclass
class Certificate:
    cert_path: Path
    key_path: Path


def self_signed_certificate(directory: Path) -> Certificate:
    """A fresh self-signed certificate for 127.0.0.1 and localhost, generated here (never checked in)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "reliability-test EventGate")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "eventgate.pem", directory / "eventgate.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return Certificate(cert_path, key_path)


class HttpsEventReceiver:
    """EventGate stand-in over HTTPS with a self-signed certificate; records every accepted event."""

    def __init__(self, certificate: Certificate) -> None:
        self.events: list[dict[str, Any]] = []
        self.handshakes_failed = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.events.extend(json.loads(body))
                self.send_response(201)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        class TlsServer(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                receiver.handshakes_failed += 1  # the client refused our certificate

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(certificate.cert_path, certificate.key_path)
        self.server = TlsServer(("127.0.0.1", 0), Handler)
        # Handshake per connection, in the handler thread: a failing client cannot block the accept loop.
        self.server.socket = context.wrap_socket(
            self.server.socket, server_side=True, do_handshake_on_connect=False
        )
        self.url = f"https://127.0.0.1:{self.server.server_address[1]}/v1/events"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events_for(self, rev_id: int) -> list[dict[str, Any]]:
        return [event for event in list(self.events) if event.get("rev_id") == rev_id]

    def wait_for(self, rev_id: int, timeout_s: float = 10.0) -> dict[str, Any] | None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = self.events_for(rev_id)
            if found:
                return found[0]
            time.sleep(0.05)
        return None

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


ServerSpec = tuple[str, list[str], dict[str, str], list[str], int]  # name, -m args, env, models, port


def start_processes(specs: Sequence[ServerSpec], timeout_s: float = 180.0) -> list[ServerProcess]:
    """Starts every server at once, then waits for all of them: the slow imports overlap."""
    started: list[ServerProcess] = []
    try:
        for name, module_args, env, _models, port in specs:
            argv = [sys.executable, "-m", *module_args, f"--http_port={port}"]
            started.append(ServerProcess(name, argv, {**env, "HTTP_PORT": str(port)}, port))
        for server, (_, _, _, models, _) in zip(started, specs, strict=True):
            server.wait_ready(models, timeout_s)
    except Exception:
        for server in started:
            server.stop()
        raise
    return started


# The reliability tests ask the same revisions again and again, each time to see MediaWiki's fault: the
# score cache and the memory of missing revisions would answer them without MediaWiki (they have their own
# tests in tests/revscoring_server).
NO_MEMORY_ENV = {"SCORE_CACHE_SIZE": "0", "MISSING_REVISION_TTL_S": "0"}


def revscoring_spec(name: str, model_path: Path, wiki_url: str, **env: str) -> ServerSpec:
    full_env = {"INFERENCE_NAME": REVSCORING_ISVC, "MODEL_PATH": str(model_path), "WIKI_URL": wiki_url,
                **FAST_FAILURE_ENV, **NO_MEMORY_ENV, **env}
    return name, ["revscoring_server"], full_env, [REVSCORING_ISVC], free_port()


def predictor_spec(name: str, model_path: Path, wiki_url: str, **env: str) -> ServerSpec:
    full_env = {"MODEL_PATH": str(model_path), "WIKI_URL": wiki_url, "OUTLINK_LINKS_PER_CALL": "20",
                **FAST_FAILURE_ENV, **env}
    args = ["outlink_server.predictor", f"--model_name={OUTLINK_MODEL}"]
    return name, args, full_env, [OUTLINK_MODEL], free_port()


def transformer_spec(name: str, predictor_port: int, wiki_url: str, **env: str) -> ServerSpec:
    """Started the way KServe starts a transformer: `--predictor_host`, no model file."""
    args = ["outlink_server.transformer", f"--model_name={OUTLINK_MODEL}",
            f"--predictor_host=127.0.0.1:{predictor_port}"]
    full_env = {"WIKI_URL": wiki_url, "OUTLINK_LINKS_PER_CALL": "20", **FAST_FAILURE_ENV, **env}
    return name, args, full_env, [OUTLINK_MODEL], free_port()


def post_raw(
    server: ServerProcess, model: str, data: bytes | str, content_type: str | None = "application/json",
    headers: Mapping[str, str] | None = None, timeout_s: float = 60.0,
) -> requests.Response:
    all_headers = {**({"Content-Type": content_type} if content_type else {}), **(headers or {})}
    return requests.post(
        f"{server.url}/v1/models/{model}:predict", data=data, headers=all_headers, timeout=timeout_s
    )


def is_ready(server: ServerProcess, model: str) -> bool:
    response = requests.get(f"{server.url}/v1/models/{model}", timeout=10)
    return response.status_code == 200 and response.json().get("ready") is True


def log_lines(server: ServerProcess) -> list[str]:
    return server.log_path.read_text(errors="replace").splitlines()


def farm_api(farm_url: str, host: str, **params: Any) -> dict[str, Any]:
    """One Action API call straight to the farm (no proxy, no server code), formatversion 2."""
    response = requests.get(f"{farm_url}/w/api.php", headers={"Host": host}, timeout=60,
                            params={"format": "json", "formatversion": 2, **params})
    response.raise_for_status()
    return response.json()


def reference_revscoring_score(farm_url: str, model_path: Path, rev_id: int) -> dict[str, Any]:
    """The score revscoring itself gives: its own API extractor against the farm, the model's own `score`."""
    import mwapi
    from revscoring.extractors.api import Extractor

    from revscoring import Model

    http = requests.Session()
    http.headers["Host"] = "en.wikipedia.org"
    session = mwapi.Session(farm_url, user_agent="reliability tests", api_path="/w/api.php", session=http,
                            timeout=60)
    with open(model_path, "rb") as handle:
        model = Model.load(handle)
    return model.score(list(Extractor(session).extract(rev_id, model.features)))


def reference_outlink_scores(farm_url: str, model_path: Path, title: str) -> dict[str, float]:
    """Every topic's probability computed from the farm's links and fastText directly."""
    import fasttext

    params: dict[str, Any] = {"action": "query", "titles": title, "prop": "links", "plnamespace": 0,
                              "pllimit": "max", "redirects": 1, "continue": ""}
    linked: list[str] = []
    while True:
        doc = farm_api(farm_url, "en.wikipedia.org", **params)
        linked += [link["title"] for page in doc["query"]["pages"] for link in page.get("links", [])]
        if "continue" not in doc:
            break
        params.update(doc["continue"])
    qid_of = {}
    for start in range(0, len(linked), 50):
        doc = farm_api(farm_url, "en.wikipedia.org", action="query", prop="pageprops", ppprop="wikibase_item",
                       redirects=1, titles="|".join(linked[start:start + 50]))
        for page in doc["query"]["pages"]:
            if page.get("pageprops", {}).get("wikibase_item") and not page.get("missing"):
                qid_of[page["title"]] = page["pageprops"]["wikibase_item"]
    model = fasttext.load_model(str(model_path))
    labels, scores = model.predict(" ".join(qid_of[t] for t in sorted(qid_of)), k=-1, threshold=0.0)
    # fastText's predict returns p + 1e-5 (it ranks by log(p + 1e-5)); the service reports p.
    return {label.removeprefix("__label__"): min(1.0, max(0.0, float(score) - 1e-5))
            for label, score in zip(labels, scores, strict=True)}


def good(kind: str, enwiki: dict[str, Any]) -> dict[str, Any]:
    """A request every server kind answers with 200 (the baseline of every reliability test)."""
    if kind == "revscoring":
        return {"rev_id": enwiki["special"]["good_rev_id"]}
    return {"lang": "en", "page_title": enwiki["special"]["redirect_target"]}
