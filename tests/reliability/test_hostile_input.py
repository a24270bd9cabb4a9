"""Input a hostile client sends (issue 18, section 2), over HTTP, against every server kind: each is a 4xx
naming the problem (never a 500), nothing the client sent is repeated whole, and no internal address is told.

Events are built by testkit.events from the farm's revisions and validated against their real schemas first,
then broken in one field: the schema (jsonschema) confirms each broken one is invalid.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest
import requests
from reliability_kit import MODEL_OF, good, log_lines, post_raw
from testkit.events import page_change_event, revision_create_event, validator

KINDS = ("revscoring", "predictor", "transformer")
MAX_MESSAGE = 1000  # no error message is longer, whatever the request held


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest, baseline: dict[str, Any]) -> str:
    return request.param


def event_for(kind: str, enwiki: dict[str, Any]) -> dict[str, Any]:
    """A valid input event of the kind's schema for a farm revision."""
    rev_id = enwiki["special"]["good_rev_id"]
    if kind == "revscoring":
        return revision_create_event(enwiki, rev_id)
    return page_change_event(enwiki, rev_id)


def _error(response: requests.Response, status: int) -> str:
    assert response.status_code == status, response.text[:2000]
    error = response.json()["error"]
    assert isinstance(error, str) and len(error) <= MAX_MESSAGE, error[:2000]
    assert "Traceback" not in error and "Internal error" not in error
    return error


# Events of the wrong shape -------------------------------------------------------------------------------

BROKEN_EVENTS = [  # (id, field path, value): as sent by clients seen in the wild
    ("meta-as-string", ("meta",), "mediawiki"),
    ("performer-as-string", ("performer",), "Alice"),
    ("performer-as-list", ("performer",), ["Alice"]),
    ("redirect-flag-as-string", None, "false"),  # the kind's page_is_redirect / page.is_redirect
    ("rev-id-2^53", None, 2**53),  # the kind's revision id: beyond the schemas' bound
]


def _break(kind: str, event: dict[str, Any], path: tuple[str, ...] | None, value: Any) -> str:
    """Sets the field at `path` (None: the kind's own field for the case) to `value`; the field's name."""
    if path is None:
        if kind == "revscoring":
            path = ("page_is_redirect",) if value == "false" else ("rev_id",)
        else:
            path = ("page", "is_redirect") if value == "false" else ("revision", "rev_id")
    target = event
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    return "event." + ".".join(path)


@pytest.mark.parametrize(("path", "value"), [case[1:] for case in BROKEN_EVENTS],
                         ids=[case[0] for case in BROKEN_EVENTS])
def test_events_of_the_wrong_shape_are_400_naming_the_field(servers, kind, enwiki, proxy, path, value):
    event = event_for(kind, enwiki)
    schema = "mediawiki.revision.create.1.1.0.json" if kind == "revscoring" else \
        "mediawiki.page.change.1.0.0.json"
    field = _break(kind, event, path, value)
    assert not validator(schema).is_valid(event)  # the reference refuses it too
    error = _error(servers[kind].predict(MODEL_OF[kind], {"event": event}), 400)
    assert f"'{field}'" in error, error
    assert proxy.requests == []  # refused before any MediaWiki call


def test_a_valid_event_is_still_scored(servers, kind, enwiki):
    response = servers[kind].predict(MODEL_OF[kind], {"event": event_for(kind, enwiki)})
    assert response.status_code == 200, response.text


# Malformed bodies --------------------------------------------------------------------------------------

@pytest.mark.parametrize("content_type", ["text/plain", "application/json", None])
def test_a_20000_deep_json_array_is_400(servers, kind, proxy, content_type):
    deep = "[" * 20_000 + "]" * 20_000
    with pytest.raises(RecursionError):
        json.loads(deep)  # the reference: Python's own decoder cannot read it
    error = _error(post_raw(servers[kind], MODEL_OF[kind], deep, content_type), 400)
    assert any(word in error.lower() for word in ("nested too deeply", "json", "request format")), error
    assert proxy.requests == []


# Nothing the client sent is repeated whole ---------------------------------------------------------------

def test_a_100_kb_unknown_field_name_is_not_repeated(servers, kind, enwiki, proxy):
    name = "field" + "x" * 100_000
    error = _error(servers[kind].predict(MODEL_OF[kind], {**good(kind, enwiki), name: 1}), 400)
    assert "Unknown field" in error and "fieldxxxx" in error and "(100005 characters)" in error
    assert proxy.requests == []


def test_a_5_kb_model_name_is_not_repeated(servers, kind, enwiki):
    name = "model-" + "m" * 5000
    error = _error(servers[kind].predict(name, good(kind, enwiki)), 404)
    assert "does not exist" in error and "model-mmm" in error


@pytest.mark.parametrize("request_id", ["r" * 10_000, "bad id with spaces", "<script>", "é" * 20])
def test_unsafe_request_ids_are_replaced_not_echoed_or_logged(servers, kind, enwiki, request_id):
    """A refused request is logged (with its request id): the id logged and echoed is a fresh UUID."""
    response = servers[kind].predict(MODEL_OF[kind], {**good(kind, enwiki), "note": 1},
                                     headers={"x-request-id": request_id.encode().decode("latin-1")})
    assert response.status_code == 400, response.text
    replaced = response.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", replaced)
    lines = [line for line in log_lines(servers[kind]) if replaced in line]
    assert lines, "the replacement id is logged"
    assert not [line for line in log_lines(servers[kind]) if request_id[:100] in line]


@pytest.mark.parametrize("request_id", ["b3a1f5c2-7d0e-4c89-9c1a-0f6e2d9b8a71",
                                        "80f198ee56343ba864fe8b2a57d3eff7", "req.42:retry_1", "x" * 128])
def test_safe_request_ids_are_kept(servers, kind, enwiki, request_id):
    response = servers[kind].predict(MODEL_OF[kind], good(kind, enwiki), headers={"x-request-id": request_id})
    assert response.status_code == 200 and response.headers["x-request-id"] == request_id


# No internal address -----------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["predictor", "transformer"])
def test_a_wiki_not_served_is_named_never_the_endpoint(servers, proxy, kind):
    """zuwiki is a Wikipedia the outlink model knows but the farm does not serve: MediaWiki fails, and the
    client is told which wiki failed, never the internal endpoint's URL or address."""
    response = servers[kind].predict(MODEL_OF[kind], {"lang": "zu", "page_title": "Ikhasi"})
    assert response.status_code >= 500, response.text  # MediaWiki failed us: not the client's fault
    error = response.json()["error"]
    assert "zu.wikipedia.org" in error, error
    address = proxy.url.split("://", 1)[1]
    assert "http://" not in error and address not in error and "127.0.0.1" not in error, error
    assert "/w/api.php" not in error


def test_event_ids_beyond_the_schema_bound_are_400(servers, kind, enwiki, proxy):
    event = event_for(kind, enwiki)
    page_path = ("page_id",) if kind == "revscoring" else ("page", "page_id")
    field = _break(kind, copy.deepcopy(event), page_path, 2**53)  # field name only
    broken = copy.deepcopy(event)
    _break(kind, broken, page_path, 10**40)
    error = _error(servers[kind].predict(MODEL_OF[kind], {"event": broken}), 400)
    assert f"'{field}'" in error, error
    assert proxy.requests == []
