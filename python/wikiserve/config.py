"""Server configuration: every environment variable of both model families, in one table, read and validated
once at start-up into explicit settings objects.

`SETTINGS` is the table (name, type, default, bounds, meaning, which servers read it). `read_settings` checks
every row a server uses and refuses the start with one message naming each bad variable; the entrypoints turn
that into exit code `EXIT_BAD_CONFIG` before anything is loaded. Adding a setting is adding a row (and
reading it where it is used: `values["NAME"]`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

EXIT_BAD_CONFIG = 2  # the documented exit code of a start-up refused for its configuration

DEFAULT_USER_AGENT = (
    "WMF ML Team lift-wing model server (https://wikitech.wikimedia.org/wiki/Machine_Learning/LiftWing)"
)
DEFAULT_MODEL_PATH = "/mnt/models/model.bin"  # where KServe's storage initializer puts the model
# Each kind of event's production stream, used when EVENTGATE_STREAM does not name one for both.
REVISION_SCORE_STREAM = "mediawiki.revision-score"
PREDICTION_STREAM = "mediawiki.page_outlink_topic_prediction_change.v1"

# Which servers read a row. A server validates only its own rows: an outlink-only variable left in a
# revscoring pod's environment must not stop it.
SERVER = "server"  # every model server (the shared core)
REVSCORING = "revscoring"
OUTLINK = "outlink"
FAMILIES = (REVSCORING, OUTLINK)

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class SettingsError(ValueError):
    """One or more environment variables have values the servers cannot run with."""


@dataclass(frozen=True)
class Setting:
    """One environment variable. `kind` is int, float or str; unset or empty means `default`.

    Bounds: `minimum`/`maximum` inclusive, `above` exclusive (timeouts must be > 0). `choices` lists the
    accepted strings (compared in upper case when `upper`). `check` is a last test for what bounds cannot say;
    it returns a problem ("must be ...") or None.
    """

    name: str
    kind: type
    default: Any
    meaning: str
    used_by: str = SERVER
    minimum: float | None = None
    maximum: float | None = None
    above: float | None = None
    choices: tuple[str, ...] = ()
    upper: bool = False
    check: Callable[[Any], str | None] | None = None

    def parse(self, raw: str) -> Any:
        """The value of `raw`, or SettingsError naming this variable and what it must be."""
        value = self._convert(raw.strip())
        problem = self._problem(value)
        if problem:
            raise SettingsError(f"{self.name} {problem}, got {raw!r} ({self.meaning})")
        return value

    def _convert(self, raw: str) -> Any:
        if self.kind is str:
            return raw.upper() if self.upper else raw
        try:
            return self.kind(raw)
        except ValueError:
            kind = "an integer" if self.kind is int else "a number"
            raise SettingsError(f"{self.name} must be {kind}, got {raw!r} ({self.meaning})") from None

    def _problem(self, value: Any) -> str | None:
        if self.choices and value not in self.choices:
            return f"must be one of {', '.join(self.choices)}"
        if self.kind is float and value != value:  # NaN passes every comparison below
            return "must be a number"
        if self.above is not None and not value > self.above:
            return f"must be greater than {self.above:g}"
        if self.minimum is not None and value < self.minimum:
            return f"must be at least {self.minimum:g}"
        if self.maximum is not None and value > self.maximum:
            return f"must be at most {self.maximum:g}"
        return self.check(value) if self.check else None


def _http_url(value: str) -> str | None:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return "must be an http:// or https:// URL"
    return None


def _redis_url(value: str) -> str | None:
    if urlsplit(value).scheme not in ("redis", "rediss", "unix"):
        return "must be a redis://, rediss:// or unix:// URL"
    return None


def _links_per_call(value: str) -> str | None:
    if value == "max" or (value.isdigit() and 1 <= int(value) <= 500):
        return None
    return "must be 'max' or 1..500"


def _existing_file(value: str) -> str | None:
    return None if Path(value).is_file() else "must be an existing file"


SETTINGS: tuple[Setting, ...] = (
    # The shared core: every server.
    Setting("HTTP_PORT", int, 8080, "listening port; --http_port overrides", minimum=1, maximum=65535),
    Setting("GRPC_PORT", int, None, "KServe's V2 gRPC port; unset: no gRPC", minimum=1, maximum=65535),
    Setting("MAX_BODY_BYTES", int, 1024 * 1024, "request body limit in bytes, 413 above it", minimum=1),
    # Slow clients (slowloris): a connection must send a request's headers, and then its body, each within
    # this many seconds, or it is dropped (headers: 408 and closed; body: 408).
    Setting("REQUEST_READ_TIMEOUT_S", float, 10.0, "seconds for a request's headers, and for its body",
            above=0, maximum=3600),
    # Below Kubernetes' default 30 s termination grace period, so the drain ends before SIGKILL would.
    Setting("SHUTDOWN_GRACE_S", float, 25.0, "SIGTERM drain period in seconds", minimum=0),
    Setting("LOG_FORMAT", str, "json", "log format", choices=("json", "text")),
    Setting("LOG_LEVEL", str, "INFO", "log level", choices=LOG_LEVELS, upper=True),
    Setting("WIKI_URL", str, None, "MediaWiki endpoint for every wiki", check=_http_url),
    Setting("WIKI_HOST", str, None, "Host header sent to WIKI_URL"),
    Setting("MEDIAWIKI_TIMEOUT_S", float, 5.0, "per-attempt MediaWiki timeout in seconds", above=0),
    Setting("MEDIAWIKI_ATTEMPTS", int, 3, "attempts per MediaWiki call", minimum=1, maximum=10),
    Setting("MEDIAWIKI_BACKOFF_CAP_S", float, 2.0, "longest wait between MediaWiki attempts", minimum=0),
    Setting("MEDIAWIKI_USER_AGENT", str, DEFAULT_USER_AGENT, "User-Agent of MediaWiki calls"),
    Setting("EVENTGATE_URL", str, None, "EventGate endpoint; unset: no events", check=_http_url),
    Setting("EVENTGATE_STREAM", str, None, "stream of every event sent; unset: each kind's own stream"),
    Setting("EVENTGATE_CA_BUNDLE", str, None, "CA bundle for EventGate's TLS", check=_existing_file),
    Setting("REQUESTS_CA_BUNDLE", str, None, "CA bundle when EVENTGATE_CA_BUNDLE is unset"),
    Setting("EVENTGATE_TIMEOUT_S", float, 5.0, "EventGate call timeout in seconds", above=0),
    Setting("MODEL_PATH", str, None, "the model binary; unset: the one model file in /mnt/models"),
    # The score cache (wikiserve.score_cache) and the ores image's way to the model servers.
    Setting("SCORE_CACHE_SIZE", int, 10_000, "entries of the in-process score cache; 0: no cache", minimum=0),
    Setting("SCORE_CACHE_TTL_S", float, 86_400.0, "seconds a cached score is kept", above=0),
    Setting("REDIS_URL", str, None, "Redis shared by replicas as the score cache; unset: in-process",
            check=_redis_url),
    Setting("REDIS_TIMEOUT_S", float, 0.25, "per Redis call; past it a request is served uncached", above=0),
    # A revision MediaWiki does not have is remembered this long, so clients retrying it do not reach
    # MediaWiki each time; short, because a revision can become visible again (undeletion, replica lag).
    Setting("MISSING_REVISION_TTL_S", float, 30.0, "seconds a missing revision is remembered; 0: off",
            used_by=REVSCORING, minimum=0),
    Setting("LIFTWING_URL", str, None, "ores image: the endpoint of every model server", check=_http_url),
    Setting("LIFTWING_HOST", str, "{isvc}.{namespace}.wikimedia.org",
            "ores image: Host header template of a model server ({isvc}, {namespace})"),
    Setting("LIFTWING_TIMEOUT_S", float, 30.0, "ores image: timeout of a call to a model server", above=0),
    # Revscoring.
    Setting("INFERENCE_NAME", str, None, "the service, <dbname>-<model type>", used_by=REVSCORING),
    Setting("EXTRACTION_WORKERS", int, None, "extraction worker processes; unset: usable cores, 0: a thread",
            used_by=REVSCORING, minimum=0, maximum=256),
    Setting("HEAVY_REVISION_BYTES", int, 150_000, "characters from which a job takes the low-priority lane",
            used_by=REVSCORING, minimum=1),
    # os.nice() increments: negative ones need privileges the pods do not have; 19 is the lowest priority.
    Setting("EXTRACTION_NICE", int, 3, "nice increment of the ordinary workers", used_by=REVSCORING,
            minimum=0, maximum=19),
    Setting("HEAVY_EXTRACTION_NICE", int, 10, "nice increment of the heavy-lane workers", used_by=REVSCORING,
            minimum=0, maximum=19),
    # Admission control (wikiserve.admission): past the bound, a 503 with Retry-After before any MediaWiki
    # call. Unset: 8 per ordinary worker (why 8: revscoring_server/workers.py, IN_FLIGHT_PER_WORKER).
    Setting("MAX_IN_FLIGHT", int, None, "revisions in flight per process, 503 past it; unset: 8 per "
            "extraction worker, 0: no limit", used_by=REVSCORING, minimum=0, maximum=100_000),
    # ORES stopped a revision's extraction after 15 s (its TimeoutError).
    Setting("EXTRACTION_TIMEOUT_S", float, 15.0, "seconds one revision's extraction may take",
            used_by=REVSCORING, above=0, maximum=3600),
    # Outlink.
    Setting("OUTLINK_LINKS_PER_CALL", str, "max", "links per MediaWiki call", used_by=OUTLINK,
            check=_links_per_call),
    Setting("PREDICTOR_TIMEOUT_S", float, 10.0, "transformer: timeout of the call to the predictor",
            used_by=OUTLINK, above=0),
    Setting("MODEL_VERSION", str, None, "the model version named in outlink prediction events",
            used_by=OUTLINK),
)
SETTINGS_BY_NAME = {setting.name: setting for setting in SETTINGS}


def default(name: str) -> Any:
    """The table's default of a setting: the settings objects below take their defaults from here alone."""
    return SETTINGS_BY_NAME[name].default


def settings_for(family: str | None) -> list[Setting]:
    """The rows a server of `family` reads (the shared core's and its own); None: every row."""
    return [s for s in SETTINGS if family is None or s.used_by in (SERVER, family)]


def read_settings(env: Mapping[str, str], family: str | None = None) -> dict[str, Any]:
    """Every setting of `family` by name, from `env` or its default. Raises SettingsError naming every bad
    variable at once, so one failed start shows all of them."""
    values: dict[str, Any] = {}
    problems: list[str] = []
    for setting in settings_for(family):
        raw = env.get(setting.name)
        if raw is None or not raw.strip():
            values[setting.name] = setting.default
            continue
        try:
            values[setting.name] = setting.parse(raw)
        except SettingsError as error:
            problems.append(str(error))
    if problems:
        raise SettingsError("; ".join(problems))
    return values


def read_settings_or_exit(env: Mapping[str, str], family: str | None) -> dict[str, Any]:
    """For entrypoints: the settings, or the process ends with EXIT_BAD_CONFIG and the message on stderr
    (before logging is configured: the log settings themselves may be the bad ones)."""
    try:
        return read_settings(env, family)
    except SettingsError as error:
        print(f"Cannot start: invalid configuration: {error}", file=sys.stderr, flush=True)
        raise SystemExit(EXIT_BAD_CONFIG) from None


def settings_table(names: Iterable[str] | None = None) -> list[tuple[str, str, str]]:
    """(name, default, meaning) rows, for documentation and its test."""
    rows = [SETTINGS_BY_NAME[name] for name in names] if names is not None else list(SETTINGS)
    return [(s.name, "" if s.default is None else str(s.default), s.meaning) for s in rows]


@dataclass(frozen=True)
class MediaWikiSettings:
    """How to reach the MediaWiki Action API.

    Production sends every wiki's calls to one internal endpoint (`WIKI_URL`) and names the wiki in the
    `Host` header (`WIKI_HOST`); without `WIKI_URL` the wiki's public domain is used.
    """

    url: str | None = default("WIKI_URL")
    host: str | None = default("WIKI_HOST")
    timeout_s: float = default("MEDIAWIKI_TIMEOUT_S")
    attempts: int = default("MEDIAWIKI_ATTEMPTS")
    backoff_base_s: float = 0.2  # not configurable: the first retry's wait, doubled each time up to the cap
    backoff_cap_s: float = default("MEDIAWIKI_BACKOFF_CAP_S")
    user_agent: str = default("MEDIAWIKI_USER_AGENT")
    max_connections: int = 100

    def endpoint_for(self, domain: str) -> tuple[str, str | None]:
        """The base URL to call and the Host header to send for a wiki whose public domain is `domain`."""
        if self.url:
            return self.url.rstrip("/"), self.host or domain
        return f"https://{domain}", None

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> MediaWikiSettings:
        return cls(
            url=values["WIKI_URL"],
            host=values["WIKI_HOST"],
            timeout_s=values["MEDIAWIKI_TIMEOUT_S"],
            attempts=values["MEDIAWIKI_ATTEMPTS"],
            backoff_cap_s=values["MEDIAWIKI_BACKOFF_CAP_S"],
            user_agent=values["MEDIAWIKI_USER_AGENT"],
        )


@dataclass(frozen=True)
class EventGateSettings:
    """`EVENTGATE_STREAM` names the stream of every event a server posts; unset, each kind of event goes to
    its own production stream (revision-score events, and the outlink model's topic predictions)."""

    url: str | None = default("EVENTGATE_URL")
    stream: str = REVISION_SCORE_STREAM
    prediction_stream: str = PREDICTION_STREAM
    ca_bundle: str | None = default("EVENTGATE_CA_BUNDLE")  # None: the system's CA store; TLS always verified
    timeout_s: float = default("EVENTGATE_TIMEOUT_S")

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> EventGateSettings:
        return cls(
            url=values["EVENTGATE_URL"],
            stream=values["EVENTGATE_STREAM"] or cls.stream,
            prediction_stream=values["EVENTGATE_STREAM"] or cls.prediction_stream,
            ca_bundle=values["EVENTGATE_CA_BUNDLE"] or values["REQUESTS_CA_BUNDLE"],
            timeout_s=values["EVENTGATE_TIMEOUT_S"],
        )


@dataclass(frozen=True)
class ScoreCacheSettings:
    """The score cache (wikiserve.score_cache): an in-process LRU, or Redis shared by replicas."""

    size: int = default("SCORE_CACHE_SIZE")  # entries of the in-process LRU; 0: no cache (ignored with Redis)
    ttl_s: float = default("SCORE_CACHE_TTL_S")
    redis_url: str | None = default("REDIS_URL")
    redis_timeout_s: float = default("REDIS_TIMEOUT_S")  # per Redis call; past it, served without the cache

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> ScoreCacheSettings:
        return cls(
            size=values["SCORE_CACHE_SIZE"],
            ttl_s=values["SCORE_CACHE_TTL_S"],
            redis_url=values["REDIS_URL"],
            redis_timeout_s=values["REDIS_TIMEOUT_S"],
        )


@dataclass(frozen=True)
class LiftWingSettings:
    """Where the `ores` image finds the model servers: one endpoint for all of them (`LIFTWING_URL`); the
    `Host` header (`LIFTWING_HOST`, a template of `{isvc}` and `{namespace}`) picks the InferenceService."""

    url: str | None = default("LIFTWING_URL")
    host: str = default("LIFTWING_HOST")
    timeout_s: float = default("LIFTWING_TIMEOUT_S")
    max_connections: int = 100

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> LiftWingSettings:
        return cls(
            url=values["LIFTWING_URL"], host=values["LIFTWING_HOST"], timeout_s=values["LIFTWING_TIMEOUT_S"]
        )


@dataclass(frozen=True)
class ServerSettings:
    http_port: int = default("HTTP_PORT")
    grpc_port: int | None = default("GRPC_PORT")  # KServe's V2 gRPC is served only when a port is configured
    max_body_bytes: int = default("MAX_BODY_BYTES")
    read_timeout_s: float = default("REQUEST_READ_TIMEOUT_S")
    shutdown_grace_s: float = default("SHUTDOWN_GRACE_S")
    json_logs: bool = default("LOG_FORMAT") == "json"
    log_level: str = default("LOG_LEVEL")
    mediawiki: MediaWikiSettings = MediaWikiSettings()
    eventgate: EventGateSettings = EventGateSettings()
    score_cache: ScoreCacheSettings = ScoreCacheSettings()
    liftwing: LiftWingSettings = LiftWingSettings()

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ServerSettings:
        """Reads and validates the shared core's environment variables; unset ones keep the defaults.
        Raises SettingsError (a ValueError) naming each bad variable."""
        return cls.from_values(read_settings(env, SERVER))

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> ServerSettings:
        """From `read_settings`' result (any family's: it holds the shared core's rows)."""
        return cls(
            http_port=values["HTTP_PORT"],
            grpc_port=values["GRPC_PORT"],
            max_body_bytes=values["MAX_BODY_BYTES"],
            read_timeout_s=values["REQUEST_READ_TIMEOUT_S"],
            shutdown_grace_s=values["SHUTDOWN_GRACE_S"],
            json_logs=values["LOG_FORMAT"] != "text",
            log_level=values["LOG_LEVEL"],
            mediawiki=MediaWikiSettings.from_values(values),
            eventgate=EventGateSettings.from_values(values),
            score_cache=ScoreCacheSettings.from_values(values),
            liftwing=LiftWingSettings.from_values(values),
        )
