"""Input events checked against their Event Platform schema before the server reads anything from them.

The schemas are copies of `../shared/schemas/events/` in `event_schemas/` (the servers cannot read `../shared`
in production; tests/wikiserve/test_event_schema.py proves the copies are current). This checks the parts of
JSON Schema those schemas use: `type`, `required`, `properties`, `additionalProperties`, `items`, `enum`,
`minimum`/`maximum`, `maxLength` and the `date-time` format. The schemas leave most strings and arrays
unbounded, so strings without a `maxLength` get `MAX_STRING_CHARS` and arrays `MAX_ARRAY_ITEMS`.

Every message names the field by its path (`event.meta`) and never repeats the value: it goes to the client.
"""

from __future__ import annotations

import functools
import json
import math
import re
from datetime import datetime
from pathlib import Path
from typing import Any

from wikiserve.errors import InvalidRequest
from wikiserve.validation import json_type, shortened

SCHEMA_DIR = Path(__file__).with_name("event_schemas")
# $schema name and major version -> the schema file its events are checked against. revision/create 2.0.0
# is not in ../shared: its events are checked against 1.1.0, whose fields 2.0.0 kept.
SCHEMA_FILES = {
    ("mediawiki/revision/create", 1): "mediawiki.revision.create.1.1.0.json",
    ("mediawiki/revision/create", 2): "mediawiki.revision.create.1.1.0.json",
    ("mediawiki/page/change", 1): "mediawiki.page.change.1.0.0.json",
}
MAX_STRING_CHARS = 8192  # meta.uri's maxLength, the longest any of the schemas allows
MAX_ARRAY_ITEMS = 256  # user groups are the only arrays read; wikis have a few dozen at most
_DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})")
_TYPES = {"object": "an object", "array": "an array", "string": "a string", "integer": "an integer",
          "number": "a number", "boolean": "a boolean"}
_PYTHON_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool}


@functools.cache
def schema(schema_file: str) -> dict[str, Any]:
    return json.loads((SCHEMA_DIR / schema_file).read_text(encoding="utf-8"))


def check_event(event: dict[str, Any], name: str, major: int, path: str = "event") -> None:
    """Raises InvalidRequest naming the first field of `event` that its schema (`name` `major`.x) refuses."""
    check(event, schema(SCHEMA_FILES[(name, major)]), path)


def check(value: Any, rules: dict[str, Any], path: str) -> None:
    expected = rules.get("type")
    if expected is not None and not _has_type(value, expected):
        raise InvalidRequest(f"'{path}' must be {_TYPES.get(expected, expected)}, got {json_type(value)}.")
    if "enum" in rules and value not in rules["enum"]:
        allowed = ", ".join(repr(option) for option in rules["enum"])
        raise InvalidRequest(f"'{path}' must be one of {allowed}.")
    if isinstance(value, str):
        _check_string(value, rules, path)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        _check_number(value, rules, path)
    elif isinstance(value, dict):
        _check_object(value, rules, path)
    elif isinstance(value, list):
        _check_array(value, rules, path)


def _has_type(value: Any, expected: str) -> bool:
    if expected == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if expected == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return isinstance(value, _PYTHON_TYPES.get(expected, object))


def _check_string(value: str, rules: dict[str, Any], path: str) -> None:
    limit = rules.get("maxLength", MAX_STRING_CHARS)
    if len(value) > limit:
        raise InvalidRequest(f"'{path}' is longer than {limit} characters.")
    if rules.get("format") == "date-time" and not is_date_time(value):
        raise InvalidRequest(f"'{path}' must be an ISO 8601 date and time such as 2024-01-02T03:04:05Z.")


def is_date_time(value: str) -> bool:
    if not _DATE_TIME.fullmatch(value):
        return False
    try:
        datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    except ValueError:  # e.g. month 13
        return False
    return True


def _check_number(value: float, rules: dict[str, Any], path: str) -> None:
    minimum, maximum = rules.get("minimum", -math.inf), rules.get("maximum", math.inf)
    if not minimum <= value <= maximum:
        raise InvalidRequest(f"'{path}' must be between {minimum} and {maximum}.")


def _check_object(value: dict[str, Any], rules: dict[str, Any], path: str) -> None:
    for name in rules.get("required", ()):
        if name not in value:
            raise InvalidRequest(f"'{path}.{name}' is required.")
    properties = rules.get("properties", {})
    others = rules.get("additionalProperties", True)
    for key, item in value.items():
        if key in properties:
            check(item, properties[key], f"{path}.{key}")
        elif others is False:
            raise InvalidRequest(f"'{path}' has a field its schema does not allow: {shortened(key)}.")
        elif isinstance(others, dict):
            check(item, others, f"{path}.{shortened(key, quoted=False)}")


def _check_array(value: list[Any], rules: dict[str, Any], path: str) -> None:
    if len(value) > MAX_ARRAY_ITEMS:
        raise InvalidRequest(f"'{path}' has {len(value)} items; at most {MAX_ARRAY_ITEMS} are allowed.")
    items = rules.get("items")
    if isinstance(items, dict):
        for index, item in enumerate(value):
            check(item, items, f"{path}[{index}]")
