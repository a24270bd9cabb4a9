import pytest

from wikiserve.errors import InvalidRequest
from wikiserve.validation import (
    exactly_one_of,
    optional_bool,
    optional_float,
    optional_str,
    parse_body,
    reject_unknown_fields,
    require_int,
    require_rev_ids,
)


@pytest.mark.parametrize("raw", [b'{"rev_id": 5}', bytearray(b'{"rev_id": 5}'), {"rev_id": 5}])
def test_parse_body_accepts_json_objects_in_any_encoding(raw):
    assert parse_body(raw) == {"rev_id": 5}


@pytest.mark.parametrize(
    "raw, message",
    [
        (b"", "empty"),
        (b"  ", "empty"),
        (b"{bad", "not valid JSON"),
        (b"[1, 2]", "not an array"),
        (b'"text"', "not a string"),
        (b"42", "not a number"),
        (b"null", "not null"),
        (b"\xff\xfe", "not valid JSON"),
    ],
)
def test_parse_body_rejects_non_objects_with_a_message(raw, message):
    with pytest.raises(InvalidRequest, match=message):
        parse_body(raw)


def test_a_json_string_decoded_by_kserve_is_not_decoded_again():
    with pytest.raises(InvalidRequest, match="not a string"):
        parse_body('{"rev_id": 5}')


@pytest.mark.parametrize("value", ["12", 1.5, True, False, None, [1], {"a": 1}])
def test_require_int_rejects_non_integers(value):
    with pytest.raises(InvalidRequest, match="rev_id"):
        require_int({"rev_id": value}, "rev_id")


@pytest.mark.parametrize("value", [0, -1, 2**63, 10**30])
def test_require_int_rejects_out_of_range(value):
    with pytest.raises(InvalidRequest, match="between"):
        require_int({"rev_id": value}, "rev_id")


def test_require_int_names_a_missing_field():
    with pytest.raises(InvalidRequest, match="'rev_id' is required"):
        require_int({}, "rev_id")
    assert require_int({"rev_id": 2**53 - 1}, "rev_id") == 2**53 - 1  # the schemas' largest integer


def test_optional_bool_and_float():
    assert optional_bool({}, "debug") is False
    assert optional_bool({"debug": True}, "debug") is True
    with pytest.raises(InvalidRequest, match="boolean"):
        optional_bool({"debug": "yes"}, "debug")
    assert optional_float({"threshold": 1}, "threshold", 0.5, 0, 1) == 1.0
    for bad in ("0.3", True, float("nan"), 2):
        with pytest.raises(InvalidRequest, match="threshold"):
            optional_float({"threshold": bad}, "threshold", 0.5, 0, 1)


def test_optional_str_rejects_control_characters_and_blank():
    assert optional_str({"t": "Ελλάδα"}, "t") == "Ελλάδα"
    for bad in ("a\x00b", "a\nb", "   ", 5):
        with pytest.raises(InvalidRequest, match="'t'"):
            optional_str({"t": bad}, "t")


def test_unknown_fields_and_exactly_one_of():
    reject_unknown_fields({"rev_id": 1}, {"rev_id", "extended_output"})
    with pytest.raises(InvalidRequest, match="'surprise'"):
        reject_unknown_fields({"rev_id": 1, "surprise": 2}, {"rev_id"})
    assert exactly_one_of({"page_id": 3}, "page_title", "page_id") == "page_id"
    with pytest.raises(InvalidRequest, match="both"):
        exactly_one_of({"page_id": 3, "page_title": "A"}, "page_title", "page_id")
    with pytest.raises(InvalidRequest, match="neither"):
        exactly_one_of({}, "page_title", "page_id")


def test_exactly_one_of_three_names_what_was_given():
    assert exactly_one_of({"rev_ids": [1]}, "rev_id", "rev_ids", "event") == "rev_ids"
    with pytest.raises(InvalidRequest, match="exactly one of 'rev_id', 'rev_ids' or 'event'; none was given"):
        exactly_one_of({}, "rev_id", "rev_ids", "event")
    with pytest.raises(InvalidRequest, match="'rev_id' and 'event' were given"):
        exactly_one_of({"rev_id": 1, "event": {}}, "rev_id", "rev_ids", "event")


def test_rev_ids_are_an_array_of_at_most_n_revision_ids():
    assert require_rev_ids({"rev_ids": [3, 1, 3]}, 50) == [3, 1]  # duplicates once, order kept
    assert require_rev_ids({"rev_ids": []}, 50) == []
    for body, message in [
        ({"rev_ids": 3}, "'rev_ids' must be an array"),
        ({"rev_ids": [1, 2, 3]}, "'rev_ids' has 3 revision ids; at most 2"),
        ({"rev_ids": [1, True]}, "'rev_ids\\[1\\]' must be an integer"),
        ({"rev_ids": [1, None]}, "'rev_ids\\[1\\]' is required"),
        ({"rev_ids": [0]}, "'rev_ids\\[0\\]' must be between 1"),
    ]:
        with pytest.raises(InvalidRequest, match=message):
            require_rev_ids(body, 2)


def test_a_body_nested_too_deeply_for_the_decoder_is_a_400():
    """json.loads (KServe hands over non-JSON content types undecoded) recurses once per level."""
    deep = b"[" * 20_000 + b"]" * 20_000
    with pytest.raises(RecursionError):
        __import__("json").loads(deep)  # the reference: Python's decoder gives up
    with pytest.raises(InvalidRequest, match="nested too deeply"):
        parse_body(deep)


def test_unknown_field_names_are_shortened_in_the_message():
    body = {"a" * 100_000: 1, **{f"extra{i}": i for i in range(7)}}
    with pytest.raises(InvalidRequest, match="Unknown field") as refused:
        reject_unknown_fields(body, ["rev_id"])
    assert len(refused.value.message) < 400
    assert "(100000 characters)" in refused.value.message and "and 3 more" in refused.value.message
