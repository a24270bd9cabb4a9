"""Configuration: every environment variable is one row of `wikiserve.config.SETTINGS`, read and validated
once at start-up, and a bad value names the variable. The expectations here are the documented bounds
(README, docs/revscoring.md, docs/outlink.md), written out per variable, not read back from the table."""

from __future__ import annotations

import re

import pytest
from testkit.servers import REPO_ROOT

from wikiserve.config import (
    OUTLINK,
    REVSCORING,
    SETTINGS,
    MediaWikiSettings,
    ServerSettings,
    SettingsError,
    read_settings,
)

# Per variable: values a server must refuse. Every row of the table needs an entry (checked below), so a new
# setting cannot be added without saying what is bad for it; [] only where any string is valid.
BAD_VALUES: dict[str, list[str]] = {
    "HTTP_PORT": ["eighty", "0", "65536", "-1", "80.5"],
    "GRPC_PORT": ["grpc", "0", "70000"],
    "MAX_BODY_BYTES": ["0", "-1", "1MB", "1e6"],
    "REQUEST_READ_TIMEOUT_S": ["0", "-1", "ten", "nan", "3601"],
    "MAX_IN_FLIGHT": ["-1", "many", "1.5", "100001"],
    "EXTRACTION_TIMEOUT_S": ["0", "-2", "fifteen", "nan", "3601"],
    "SHUTDOWN_GRACE_S": ["-1", "soon", "nan"],
    "LOG_FORMAT": ["yaml", "JSONL"],
    "LOG_LEVEL": ["verbose", "TRACE", "10"],
    "WIKI_URL": ["mw.internal:8080", "ftp://mw.internal", "http://"],
    "WIKI_HOST": [],
    "MEDIAWIKI_TIMEOUT_S": ["0", "-5", "5s", "nan"],
    "MEDIAWIKI_ATTEMPTS": ["0", "-1", "three", "11", "2.5"],
    "MEDIAWIKI_BACKOFF_CAP_S": ["-0.5", "x"],
    "MEDIAWIKI_USER_AGENT": [],
    "EVENTGATE_URL": ["eventgate:4592/v1/events", "file:///etc/passwd"],
    "EVENTGATE_STREAM": [],
    "EVENTGATE_CA_BUNDLE": ["/nonexistent/ca.pem", "/"],
    "REQUESTS_CA_BUNDLE": [],
    "EVENTGATE_TIMEOUT_S": ["0", "-1", "fast"],
    "MODEL_PATH": [],
    "SCORE_CACHE_SIZE": ["-1", "many", "1.5"],
    "SCORE_CACHE_TTL_S": ["0", "-60", "a day"],
    "REDIS_URL": ["localhost:6379", "http://redis:6379"],
    "REDIS_TIMEOUT_S": ["0", "-1", "quick"],
    "MISSING_REVISION_TTL_S": ["-1", "soon"],
    "LIFTWING_URL": ["lw:30443", "ftp://lw"],
    "LIFTWING_HOST": [],
    "LIFTWING_TIMEOUT_S": ["0", "-2", "soon"],
    "INFERENCE_NAME": [],
    "EXTRACTION_WORKERS": ["-1", "two", "1.5", "257"],
    "HEAVY_REVISION_BYTES": ["0", "-100", "150KB"],
    "EXTRACTION_NICE": ["-1", "20", "low"],
    "HEAVY_EXTRACTION_NICE": ["-5", "40", "1.5"],
    "OUTLINK_LINKS_PER_CALL": ["0", "501", "all", "-3"],
    "PREDICTOR_TIMEOUT_S": ["0", "-10", "ten"],
    "MODEL_VERSION": [],
}

# Per variable: (raw, value read). Unset and empty both mean the default.
GOOD_VALUES: dict[str, tuple[str, object]] = {
    "HTTP_PORT": ("9000", 9000),
    "GRPC_PORT": ("8081", 8081),
    "MAX_BODY_BYTES": ("1", 1),
    "REQUEST_READ_TIMEOUT_S": ("2.5", 2.5),
    "MAX_IN_FLIGHT": ("0", 0),
    "EXTRACTION_TIMEOUT_S": ("0.5", 0.5),
    "SHUTDOWN_GRACE_S": ("0", 0.0),
    "LOG_FORMAT": ("text", "text"),
    "LOG_LEVEL": ("debug", "DEBUG"),
    "WIKI_URL": ("http://mw.internal:8080/", "http://mw.internal:8080/"),
    "WIKI_HOST": ("en.wikipedia.org", "en.wikipedia.org"),
    "MEDIAWIKI_TIMEOUT_S": ("2.5", 2.5),
    "MEDIAWIKI_ATTEMPTS": ("1", 1),
    "MEDIAWIKI_BACKOFF_CAP_S": ("0", 0.0),
    "MEDIAWIKI_USER_AGENT": ("tests", "tests"),
    "EVENTGATE_URL": ("https://eventgate.internal:4592/v1/events", "https://eventgate.internal:4592/v1/events"),
    "EVENTGATE_STREAM": ("x.y", "x.y"),
    "EVENTGATE_CA_BUNDLE": (__file__, __file__),
    "REQUESTS_CA_BUNDLE": ("/etc/ssl/certs/ca-certificates.crt", "/etc/ssl/certs/ca-certificates.crt"),
    "EVENTGATE_TIMEOUT_S": ("0.5", 0.5),
    "MODEL_PATH": ("/tmp/m.bin", "/tmp/m.bin"),
    "SCORE_CACHE_SIZE": ("0", 0),
    "SCORE_CACHE_TTL_S": ("60", 60.0),
    "REDIS_URL": ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
    "REDIS_TIMEOUT_S": ("0.5", 0.5),
    "MISSING_REVISION_TTL_S": ("0", 0.0),
    "LIFTWING_URL": ("https://lw:30443", "https://lw:30443"),
    "LIFTWING_HOST": ("{isvc}.example", "{isvc}.example"),
    "LIFTWING_TIMEOUT_S": ("4", 4.0),
    "INFERENCE_NAME": ("enwiki-damaging", "enwiki-damaging"),
    "EXTRACTION_WORKERS": ("0", 0),
    "HEAVY_REVISION_BYTES": ("1234", 1234),
    "EXTRACTION_NICE": ("0", 0),
    "HEAVY_EXTRACTION_NICE": ("19", 19),
    "OUTLINK_LINKS_PER_CALL": ("7", "7"),
    "PREDICTOR_TIMEOUT_S": ("0.25", 0.25),
    "MODEL_VERSION": ("0.4.0", "0.4.0"),
}

DOCUMENTED_DEFAULTS = {  # README's configuration table and the family docs
    "HTTP_PORT": 8080, "MAX_BODY_BYTES": 1048576, "SHUTDOWN_GRACE_S": 25.0, "LOG_FORMAT": "json",
    "LOG_LEVEL": "INFO", "MEDIAWIKI_TIMEOUT_S": 5.0, "MEDIAWIKI_ATTEMPTS": 3, "MEDIAWIKI_BACKOFF_CAP_S": 2.0,
    "EVENTGATE_STREAM": None, "MODEL_PATH": None, "GRPC_PORT": None,
    "HEAVY_REVISION_BYTES": 150000, "OUTLINK_LINKS_PER_CALL": "max", "PREDICTOR_TIMEOUT_S": 10.0,
    "EXTRACTION_WORKERS": None, "WIKI_URL": None, "EVENTGATE_URL": None,
}


def _family(name: str) -> str | None:
    return next(s.used_by for s in SETTINGS if s.name == name)


def test_every_setting_has_test_values_and_is_documented():
    names = [setting.name for setting in SETTINGS]
    assert len(names) == len(set(names)), "a variable is in the table twice"
    assert sorted(names) == sorted(BAD_VALUES) == sorted(GOOD_VALUES)
    docs = "".join(path.read_text() for path in [REPO_ROOT / "README.md", *(REPO_ROOT / "docs").glob("*.md")])
    undocumented = [name for name in names if f"`{name}`" not in docs]
    assert not undocumented, f"not in README.md or docs/: {undocumented}"


@pytest.mark.parametrize("name, value", [(n, v) for n, values in BAD_VALUES.items() for v in values])
def test_a_bad_value_is_refused_naming_the_variable(name, value):
    with pytest.raises(SettingsError, match=rf"^{name} must .*{re.escape(repr(value))}"):
        read_settings({name: value}, _family(name))


@pytest.mark.parametrize("name", sorted(GOOD_VALUES))
def test_a_good_value_is_read(name):
    raw, expected = GOOD_VALUES[name]
    assert read_settings({name: raw}, _family(name))[name] == expected


@pytest.mark.parametrize("name, default", sorted(DOCUMENTED_DEFAULTS.items()))
def test_unset_and_empty_mean_the_documented_default(name, default):
    assert read_settings({}, _family(name))[name] == default
    assert read_settings({name: ""}, _family(name))[name] == default


def test_every_bad_variable_is_named_at_once():
    with pytest.raises(SettingsError) as raised:
        read_settings({"LOG_LEVEL": "loud", "MAX_BODY_BYTES": "0", "EXTRACTION_NICE": "-2"}, REVSCORING)
    message = str(raised.value)
    assert all(name in message for name in ("LOG_LEVEL", "MAX_BODY_BYTES", "EXTRACTION_NICE"))


def test_a_server_checks_only_its_own_family_and_the_shared_core():
    outlink_only = {"PREDICTOR_TIMEOUT_S": "-1", "OUTLINK_LINKS_PER_CALL": "all"}
    revscoring_only = {"EXTRACTION_WORKERS": "many"}
    assert "PREDICTOR_TIMEOUT_S" not in read_settings(outlink_only, REVSCORING)
    assert "EXTRACTION_WORKERS" not in read_settings(revscoring_only, OUTLINK)
    with pytest.raises(SettingsError, match="PREDICTOR_TIMEOUT_S"):
        read_settings(outlink_only, OUTLINK)
    with pytest.raises(SettingsError, match="EXTRACTION_WORKERS"):
        read_settings(revscoring_only, REVSCORING)
    with pytest.raises(SettingsError, match="LOG_LEVEL"):  # the shared core's rows: every family
        read_settings({"LOG_LEVEL": "chatty"}, OUTLINK)


def test_defaults_and_environment_are_read_once_into_settings():
    settings = ServerSettings.from_env(
        {
            "WIKI_URL": "http://mw.internal:8080/",
            "WIKI_HOST": "en.wikipedia.org",
            "MEDIAWIKI_TIMEOUT_S": "2.5",
            "HTTP_PORT": "9000",
            "LOG_FORMAT": "text",
            "LOG_LEVEL": "warning",
            "EVENTGATE_TIMEOUT_S": "1.5",
        }
    )
    assert settings.http_port == 9000 and settings.mediawiki.timeout_s == 2.5
    assert settings.json_logs is False and settings.log_level == "WARNING"
    assert settings.eventgate.timeout_s == 1.5
    assert settings.mediawiki.endpoint_for("fr.wikipedia.org") == (
        "http://mw.internal:8080",
        "en.wikipedia.org",
    )
    assert ServerSettings.from_env({}) == ServerSettings()


def test_the_eventgate_ca_bundle_falls_back_to_requests_ca_bundle():
    assert ServerSettings.from_env({"REQUESTS_CA_BUNDLE": "/x.pem"}).eventgate.ca_bundle == "/x.pem"
    both = {"REQUESTS_CA_BUNDLE": "/x.pem", "EVENTGATE_CA_BUNDLE": __file__}
    assert ServerSettings.from_env(both).eventgate.ca_bundle == __file__


def test_without_wiki_url_the_public_domain_is_used():
    assert MediaWikiSettings().endpoint_for("fr.wikipedia.org") == ("https://fr.wikipedia.org", None)
    # One endpoint for many wikis (make run): no WIKI_HOST, each wiki's domain is its Host header.
    assert MediaWikiSettings(url="http://127.0.0.1:8180").endpoint_for("es.wikibooks.org") == (
        "http://127.0.0.1:8180",
        "es.wikibooks.org",
    )


@pytest.mark.parametrize("name, value", [("HTTP_PORT", "eighty"), ("MEDIAWIKI_TIMEOUT_S", "5s")])
def test_server_settings_refuse_a_bad_value_with_a_value_error(name, value):
    """ServerSettings.from_env's callers catch ValueError: SettingsError must stay one."""
    with pytest.raises(ValueError, match=name):
        ServerSettings.from_env({name: value})


def test_the_ores_images_lift_wing_endpoint():
    default = ServerSettings.from_env({}).liftwing
    assert (default.url, default.host, default.timeout_s) == (None, "{isvc}.{namespace}.wikimedia.org", 30.0)
    env = {"LIFTWING_URL": "https://lw:30443", "LIFTWING_HOST": "{isvc}.example", "LIFTWING_TIMEOUT_S": "4"}
    settings = ServerSettings.from_env(env).liftwing
    assert (settings.url, settings.host, settings.timeout_s) == ("https://lw:30443", "{isvc}.example", 4.0)
    with pytest.raises(ValueError, match="LIFTWING_TIMEOUT_S"):
        ServerSettings.from_env({"LIFTWING_TIMEOUT_S": "soon"})
