import pytest

from wikiserve.config import MediaWikiSettings, ServerSettings


def test_defaults_and_environment_are_read_once_into_settings():
    settings = ServerSettings.from_env(
        {
            "WIKI_URL": "http://mw.internal:8080/",
            "WIKI_HOST": "en.wikipedia.org",
            "MEDIAWIKI_TIMEOUT_S": "2.5",
            "HTTP_PORT": "9000",
        }
    )
    assert settings.http_port == 9000 and settings.mediawiki.timeout_s == 2.5
    assert settings.mediawiki.endpoint_for("fr.wikipedia.org") == (
        "http://mw.internal:8080",
        "en.wikipedia.org",
    )
    assert ServerSettings.from_env({}).max_body_bytes == 1024 * 1024


def test_without_wiki_url_the_public_domain_is_used():
    assert MediaWikiSettings().endpoint_for("fr.wikipedia.org") == ("https://fr.wikipedia.org", None)
    # One endpoint for many wikis (make run): no WIKI_HOST, each wiki's domain is its Host header.
    assert MediaWikiSettings(url="http://127.0.0.1:8180").endpoint_for("es.wikibooks.org") == (
        "http://127.0.0.1:8180",
        "es.wikibooks.org",
    )


@pytest.mark.parametrize("name, value", [("HTTP_PORT", "eighty"), ("MEDIAWIKI_TIMEOUT_S", "5s")])
def test_a_bad_value_names_the_variable(name, value):
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
