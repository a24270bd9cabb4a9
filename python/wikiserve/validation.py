"""Request-body checks shared by every model server.

Each check names the field and what was wrong with it, because the message goes straight to the client.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import Any

from wikiserve.errors import InvalidRequest

# The one bound on a revision (or page) id, on every route: the Event Platform schemas' maximum for
# integers (2**53 - 1, the largest integer a JSON number holds exactly in every client).
MAX_REV_ID = 2**53 - 1
# Revisions per request on every route (`rev_ids`, ORES's `revids`): ORES's limit, which its clients send.
MAX_REVISIONS = 50


def parse_body(payload: Any) -> dict[str, Any]:
    """The request body as a JSON object.

    KServe decodes JSON bodies itself, but hands over the raw bytes when the client sent another content type
    (`curl -d` sends application/x-www-form-urlencoded), so those are decoded here.
    """
    if isinstance(payload, (bytes, bytearray)):  # a str here is a JSON string KServe already decoded
        if not payload.strip():
            raise InvalidRequest('The request body is empty: send a JSON object such as {"rev_id": 12345}.')
        try:
            payload = json.loads(payload)
        except RecursionError:  # Python's decoder recurses per nesting level (orjson stops at 1024 itself)
            raise InvalidRequest("The request body is nested too deeply to be a request.") from None
        except (ValueError, UnicodeDecodeError) as error:
            problem = shortened(str(error), 200, quoted=False)
            raise InvalidRequest(f"The request body is not valid JSON: {problem}") from None
    if not isinstance(payload, dict):
        raise InvalidRequest(f"The request body must be a JSON object, not {json_type(payload)}.")
    return payload


def require_int(body: dict[str, Any], field: str, minimum: int = 1, maximum: int = MAX_REV_ID) -> int:
    if field not in body or body[field] is None:
        raise InvalidRequest(f"'{field}' is required.")
    return optional_int(body, field, minimum=minimum, maximum=maximum)  # type: ignore[return-value]


def optional_int(body: dict[str, Any], field: str, minimum: int = 1, maximum: int = MAX_REV_ID) -> int | None:
    value = body.get(field)
    if value is None:
        return None
    # bool is a subclass of int in Python, but `true` is not a revision id.
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequest(f"'{field}' must be an integer, got {json_type(value)} {_short(value)}.")
    if not minimum <= value <= maximum:
        raise InvalidRequest(f"'{field}' must be between {minimum} and {maximum}, got {value}.")
    return value


def optional_bool(body: dict[str, Any], field: str, default: bool = False) -> bool:
    value = body.get(field, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise InvalidRequest(
            f"'{field}' must be a boolean (true or false), got {json_type(value)} {_short(value)}."
        )
    return value


def optional_float(body: dict[str, Any], field: str, default: float, minimum: float, maximum: float) -> float:
    value = body.get(field, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidRequest(f"'{field}' must be a number, got {json_type(value)} {_short(value)}.")
    if not minimum <= value <= maximum:
        raise InvalidRequest(f"'{field}' must be between {minimum:g} and {maximum:g}, got {value}.")
    return float(value)


def optional_str(body: dict[str, Any], field: str, max_length: int = 512) -> str | None:
    value = body.get(field)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidRequest(f"'{field}' must be a string, got {json_type(value)} {_short(value)}.")
    if not value.strip():
        raise InvalidRequest(f"'{field}' must not be empty.")
    if len(value) > max_length:
        raise InvalidRequest(f"'{field}' is longer than {max_length} characters.")
    if any(ord(char) < 32 or ord(char) == 127 for char in value):
        raise InvalidRequest(f"'{field}' contains control characters.")
    return value


def reject_unknown_fields(body: dict[str, Any], allowed: Iterable[str]) -> None:
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        # Names are the client's and may be any length: each is shortened, and only the first few are named.
        names = ", ".join(shortened(name) for name in unknown[:5])
        more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        raise InvalidRequest(f"Unknown field(s) {names}{more}; allowed: {', '.join(sorted(allowed))}.")


def exactly_one_of(body: dict[str, Any], *fields: str) -> str:
    present = [field for field in fields if body.get(field) is not None]
    if len(present) != 1:
        names = [f"'{field}'" for field in fields]
        options = f"{', '.join(names[:-1])} or {names[-1]}"
        if len(fields) == 2:
            problem = "both were given" if present else "neither was given"
        else:
            problem = (
                f"{' and '.join(repr(field) for field in present)} were given"
                if present
                else "none was given"
            )
        raise InvalidRequest(f"Give exactly one of {options}; {problem}.")
    return present[0]


def require_rev_ids(body: dict[str, Any], maximum_count: int, field: str = "rev_ids") -> list[int]:
    """A JSON array of 0 to `maximum_count` revision ids (duplicates dropped, order kept)."""
    values = body.get(field)
    if not isinstance(values, list):
        raise InvalidRequest(
            f"'{field}' must be an array of revision ids, got {json_type(values)} {_short(values)}."
        )
    if len(values) > maximum_count:
        raise InvalidRequest(
            f"'{field}' has {len(values)} revision ids; at most {maximum_count} are allowed."
        )
    for index, value in enumerate(values):
        require_int({f"{field}[{index}]": value}, f"{field}[{index}]")
    return list(dict.fromkeys(values))


def json_type(value: Any) -> str:
    """The JSON type of `value`, with its article, for messages (`a string`, `an object`)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _short(value: Any) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False, default=str)
    except (RecursionError, ValueError):
        return "(nested too deeply to show)"
    return text if len(text) <= 40 else text[:37] + "..."


MAX_ECHOED_CHARS = 40  # how much of a client's string an error message repeats


def shortened(text: str, limit: int = MAX_ECHOED_CHARS, quoted: bool = True) -> str:
    """`text` (client input) for an error message: at most `limit` characters of it, marked when cut, in
    quotes (repr, so control characters show as escapes) unless `quoted` is false."""
    cut = text if len(text) <= limit else text[:limit] + "…"
    suffix = f" ({len(text)} characters)" if len(text) > limit else ""
    return (repr(cut) if quoted else cut) + suffix
