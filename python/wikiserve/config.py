"""Server configuration, read once from the environment at start-up and passed to what needs it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

DEFAULT_USER_AGENT = (
    "WMF ML Team lift-wing model server (https://wikitech.wikimedia.org/wiki/Machine_Learning/LiftWing)"
)


@dataclass(frozen=True)
class MediaWikiSettings:
    """How to reach the MediaWiki Action API.

    Production sends every wiki's calls to one internal endpoint (`WIKI_URL`) and names the wiki in the
    `Host` header (`WIKI_HOST`); without `WIKI_URL` the wiki's public domain is used.
    """

    url: str | None = None
    host: str | None = None
    timeout_s: float = 5.0
    attempts: int = 3
    backoff_base_s: float = 0.2
    backoff_cap_s: float = 2.0
    user_agent: str = DEFAULT_USER_AGENT
    max_connections: int = 100

    def endpoint_for(self, domain: str) -> tuple[str, str | None]:
        """The base URL to call and the Host header to send for a wiki whose public domain is `domain`."""
        if self.url:
            return self.url.rstrip("/"), self.host or domain
        return f"https://{domain}", None


@dataclass(frozen=True)
class EventGateSettings:
    """`EVENTGATE_STREAM` names the stream of every event a server posts; unset, each kind of event goes to
    its own production stream (revision-score events, and the outlink model's topic predictions)."""

    url: str | None = None
    stream: str = "mediawiki.revision-score"
    prediction_stream: str = "mediawiki.page_outlink_topic_prediction_change.v1"
    ca_bundle: str | None = None  # None: the system's CA store; TLS is always verified
    timeout_s: float = 5.0


@dataclass(frozen=True)
class ServerSettings:
    http_port: int = 8080
    grpc_port: int | None = None  # KServe's V2 gRPC protocol is served only when a port is configured
    max_body_bytes: int = 1024 * 1024
    # Below Kubernetes' default 30 s termination grace period, so the drain ends before SIGKILL would.
    shutdown_grace_s: float = 25.0
    json_logs: bool = True
    log_level: str = "INFO"
    mediawiki: MediaWikiSettings = MediaWikiSettings()
    eventgate: EventGateSettings = EventGateSettings()

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ServerSettings:
        """Reads the environment variables the InferenceService sets; unset ones keep the defaults."""
        mediawiki = MediaWikiSettings(
            url=env.get("WIKI_URL") or None,
            host=env.get("WIKI_HOST") or None,
            timeout_s=_float(env, "MEDIAWIKI_TIMEOUT_S", MediaWikiSettings.timeout_s),
            attempts=_int(env, "MEDIAWIKI_ATTEMPTS", MediaWikiSettings.attempts),
            backoff_cap_s=_float(env, "MEDIAWIKI_BACKOFF_CAP_S", MediaWikiSettings.backoff_cap_s),
            user_agent=env.get("MEDIAWIKI_USER_AGENT", DEFAULT_USER_AGENT),
        )
        eventgate = EventGateSettings(
            url=env.get("EVENTGATE_URL") or None,
            stream=env.get("EVENTGATE_STREAM", EventGateSettings.stream),
            prediction_stream=env.get("EVENTGATE_STREAM") or EventGateSettings.prediction_stream,
            ca_bundle=env.get("EVENTGATE_CA_BUNDLE") or env.get("REQUESTS_CA_BUNDLE") or None,
            timeout_s=_float(env, "EVENTGATE_TIMEOUT_S", EventGateSettings.timeout_s),
        )
        return cls(
            http_port=_int(env, "HTTP_PORT", cls.http_port),
            grpc_port=_int(env, "GRPC_PORT", 0) or None,
            max_body_bytes=_int(env, "MAX_BODY_BYTES", cls.max_body_bytes),
            shutdown_grace_s=_float(env, "SHUTDOWN_GRACE_S", cls.shutdown_grace_s),
            json_logs=env.get("LOG_FORMAT", "json") != "text",
            log_level=env.get("LOG_LEVEL", cls.log_level).upper(),
            mediawiki=mediawiki,
            eventgate=eventgate,
        )


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    return _parse(env, name, default, int, "an integer")


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    return _parse(env, name, default, float, "a number")


def _parse(env: Mapping[str, str], name: str, default: T, parse: Callable[[str], T], kind: str) -> T:
    """A bad value stops start-up with a message naming the variable, not a bare ValueError."""
    if not env.get(name):
        return default
    try:
        return parse(env[name])
    except ValueError:
        raise ValueError(f"Environment variable {name} must be {kind}, got {env[name]!r}") from None
