"""Serializers: plain JSON identical with and without orjson, tagged JSON round trips."""

from __future__ import annotations

import collections
import enum
import json
import subprocess
import sys
import uuid
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from markupsafe import Markup

from coatcheck import _json
from coatcheck.codec import DEFAULT_SERIALIZER, JSONSerializer, serializer_for
from coatcheck.errors import ConfigurationError
from coatcheck.tagged import Tag, TaggedSerializer

orjson = pytest.importorskip("orjson")  # both paths are compared; orjson is in the dev extra


class Color(enum.IntEnum):
    RED = 1


class Flavour(enum.StrEnum):
    SWEET = "sweet"


class Plain(enum.Enum):
    A = 1


Point = collections.namedtuple("Point", "x y")

JSON_CORPUS: list[Any] = [
    {},
    {"user": "42", "cart": [1, 2, 3], "flag": True, "none": None},
    {"nested": {"deep": [{"a": [1, [2, [3]]]}]}},
    (1, 2, "three"),
    Point(1, 2),
    {"ints": [0, -1, 2**63 - 1, -(2**63), 2**64 - 1, 2**64, -(2**63) - 1, 10**40]},
    {"floats": [0.0, -0.0, 1.0, 0.1, 1e16, 1e-7, 2.5e-5, 0.000999, 1e-3, 5e-324, 1.7976931348623157e308]},
    {"text": ["", "é😀", "\x00\x1f\x7f", "\u2028\u2029", '"\\/', "\b\f\n\r\t", "</script>"]},
    {" t": [1], " di": {" b": "x"}},
    {"enums": [Color.RED, Flavour.SWEET]},
    collections.OrderedDict([("b", 1), ("a", 2)]),
    "just a string",
    12345678901234567890123,
    [[[[[[[[[[1]]]]]]]]]],
]

NOT_JSON: list[Any] = [
    datetime(2024, 1, 2, 3, 4, 5),
    uuid.UUID(int=5),
    b"bytes",
    Decimal("1.5"),
    {1, 2},
    Plain.A,
    {"k": object()},
    {1: "int key"},
    {None: "none key"},
    {(1, 2): "tuple key"},
]

NOT_FINITE: list[Any] = [float("nan"), {"x": float("inf")}, [float("-inf")]]


def _outcome(dumps: Any, value: Any) -> tuple[str, Any]:
    try:
        return ("ok", dumps(value))
    except (TypeError, ValueError) as exc:
        return (type(exc).__name__, None)


@pytest.mark.parametrize("value", JSON_CORPUS + NOT_JSON + NOT_FINITE, ids=repr)
def test_orjson_and_stdlib_give_the_same_bytes_or_the_same_error(value: Any) -> None:
    assert _outcome(_json.dumps_orjson, value) == _outcome(_json.dumps_stdlib, value)


@pytest.mark.parametrize(
    "value",
    [
        0,
        -1,
        2**63 - 1,
        2**63,
        -(2**64),
        10**30,
        True,
        False,
        None,
        "",
        "bench",
        "é✓",
        "\ud800",
        1.5,
        1e-7,
        [1, "a"],
        {"a": [None]},
        float("nan"),
    ],
    ids=repr,
)
def test_a_plain_value_takes_orjson_directly_with_the_same_bytes_or_error(value: Any) -> None:
    """`dumps_orjson` hands a str, int, bool or None to orjson without `check`; what orjson
    refuses (ints past 64 bits, lone surrogates) goes to the stdlib, as for anything else."""
    assert _outcome(_json.dumps_orjson, value) == _outcome(_json.dumps_stdlib, value)


@pytest.mark.parametrize("value", JSON_CORPUS, ids=repr)
def test_orjson_and_stdlib_parse_the_same_values(value: Any) -> None:
    blob = _json.dumps_stdlib(value)
    parsed = _json.loads_orjson(blob)
    assert parsed == _json.loads_stdlib(blob)
    assert [type(x) for x in _leaves(parsed)] == [type(x) for x in _leaves(_json.loads_stdlib(blob))]


def _leaves(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [leaf for item in value.values() for leaf in _leaves(item)]
    if isinstance(value, list):
        return [leaf for item in value for leaf in _leaves(item)]
    return [value]


@pytest.mark.parametrize("value", NOT_JSON, ids=repr)
def test_plain_json_refuses_non_json_types_with_type_error(value: Any) -> None:
    with pytest.raises(TypeError):
        DEFAULT_SERIALIZER.dumps(value)


@pytest.mark.parametrize("value", NOT_FINITE, ids=repr)
def test_nan_and_infinity_are_refused_not_written_as_null(value: Any) -> None:
    with pytest.raises(ValueError, match="Out of range float"):
        DEFAULT_SERIALIZER.dumps(value)


def test_cycles_and_absurd_nesting_are_a_value_error() -> None:
    loop: list[Any] = []
    loop.append(loop)
    for serializer in (JSONSerializer(), TaggedSerializer()):
        with pytest.raises(ValueError, match="nested deeper"):
            serializer.dumps(loop)


def test_deeply_nested_input_is_a_value_error_when_parsing() -> None:
    hostile = b"[" * 100_000 + b"]" * 100_000
    for loads in (_json.loads_stdlib, _json.loads_orjson, TaggedSerializer().loads):
        with pytest.raises(ValueError):
            loads(hostile)


def test_text_and_bytes_parse_alike_on_both_paths() -> None:
    blob = _json.dumps_stdlib({"a": ["é", 10**30, 1.5e-7]})
    for loads in (_json.loads_stdlib, _json.loads_orjson, TaggedSerializer().loads):
        assert loads(blob.decode()) == loads(blob) == loads(memoryview(blob)) == {"a": ["é", 10**30, 1.5e-7]}


def test_nan_literals_are_refused_when_parsing() -> None:
    for loads in (_json.loads_stdlib, _json.loads_orjson):
        with pytest.raises(ValueError):
            loads(b'{"x": NaN}')


# Evaluated in both interpreters: values only the tagged serializer can write.
TAGGED_SAMPLE = """[
    (1, (2.5e-5, 10**30)), b"\\x00\\xff", Markup("<b>"), uuid.UUID(int=42),
    datetime(2024, 2, 29, 1, 2, 3, 4), datetime(2024, 2, 29, tzinfo=timezone(timedelta(hours=-5))),
    date(2024, 1, 1), time(23, 59), Decimal("1.10"), {" t": [1e-7]},
]"""

_HIDE_ORJSON = """
import sys, json, uuid
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from markupsafe import Markup
sys.modules["orjson"] = None
from coatcheck import _json
from coatcheck.codec import DEFAULT_SERIALIZER, serializer_for
assert _json.orjson is None
values = json.loads(sys.stdin.read())
out = [DEFAULT_SERIALIZER.dumps(v).hex() for v in values]
out += [serializer_for("tagged").dumps(v).hex() for v in values + eval(sys.argv[1])]
print(json.dumps(out))
"""


def test_an_interpreter_without_orjson_writes_the_same_bytes() -> None:
    values = [v for v in JSON_CORPUS if isinstance(v, dict | list | str | int)]
    tagged = serializer_for("tagged")
    src = str(Path(__file__).resolve().parents[1] / "src")
    result = subprocess.run(
        [sys.executable, "-c", _HIDE_ORJSON, TAGGED_SAMPLE],
        input=json.dumps(values),
        capture_output=True,
        text=True,
        env={"PYTHONPATH": src},
        check=True,
    )
    hidden = [bytes.fromhex(h) for h in json.loads(result.stdout)]
    # Round-trip through stdlib json so both sides see the same (list-only) values.
    values = json.loads(json.dumps(values))
    sample = eval(TAGGED_SAMPLE)
    here = [DEFAULT_SERIALIZER.dumps(v) for v in values] + [tagged.dumps(v) for v in values + sample]
    assert _json.orjson is not None
    assert len(hidden) == 2 * len(values) + len(sample) and len(sample) == 10
    assert hidden == here


# Tagged JSON ------------------------------------------------------------------------------

PARIS = timezone(timedelta(hours=2))

TAGGED_CORPUS: list[Any] = [
    # The kinds of values Flask's own test_json_tag round-trips:
    {" t": (1, 2, 3)},
    {" t__": b"a"},
    {" di": " di"},
    {"x": (1, 2, 3), "y": 4},
    (1, 2, 3),
    [(1, 2, 3)],
    b"\xff",
    Markup("<html>"),
    uuid.UUID("6f1c2a34-5b6d-4e7f-8a9b-0c1d2e3f4a5b"),
    datetime(2024, 6, 1, 12, 0, tzinfo=UTC),
    # and what Flask cannot keep exactly:
    (),
    (1, 2, (3, "four")),
    b"\x00\xffbytes",
    b"",
    Markup("<b>bold</b>"),
    uuid.UUID("12345678-1234-5678-1234-567812345678"),
    datetime(2024, 2, 29, 23, 59, 59, 123456),
    datetime(2024, 2, 29, 23, 59, 59, 123456, tzinfo=UTC),
    datetime(2024, 2, 29, 23, 59, 59, tzinfo=PARIS),
    date(2024, 2, 29),
    time(12, 30, 1, 5),
    time(12, 30, tzinfo=PARIS),
    Decimal("1.10"),
    Decimal("-0"),
    Decimal("NaN"),
    {" t": "a tag-like key"},
    {" di": {" t": 1}},
    {" t__": 1},
    {" unknown": [1]},
    {"a": {" b": b"x"}, "b": [(1,), {" u": "y"}]},
    [[(b"x", [Markup("<i>")])]],
    {"when": {"start": datetime(2020, 1, 1), "slots": [time(9), time(17)]}},
    {"text": "é😀", "f": 1e-7, "big": 10**30},
]


@pytest.mark.parametrize("value", TAGGED_CORPUS, ids=repr)
def test_tagged_round_trips_values_and_their_types(value: Any) -> None:
    serializer = TaggedSerializer()
    back = serializer.loads(serializer.dumps(value))
    if isinstance(value, Decimal) and value.is_nan():
        assert isinstance(back, Decimal) and back.is_nan()
        return
    assert back == value
    assert _types(back) == _types(value)


def _types(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _types(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return (type(value), [_types(item) for item in value])
    if isinstance(value, datetime | time):
        return (type(value), value.utcoffset())
    return type(value)


@pytest.mark.parametrize("value", TAGGED_CORPUS, ids=repr)
def test_tagged_bytes_are_the_same_with_and_without_orjson(value: Any) -> None:
    serializer = TaggedSerializer()
    tree = serializer.dumps(value)
    assert tree == _json.dumps_stdlib(_json.loads_stdlib(tree))


def test_tagged_output_is_deterministic_for_equal_values() -> None:
    serializer = TaggedSerializer()
    first = {"a": (1, b"x"), "when": datetime(2024, 1, 1, tzinfo=UTC), "id": uuid.UUID(int=1)}
    second = {"a": (1, b"x"), "when": datetime(2024, 1, 1, tzinfo=UTC), "id": uuid.UUID(int=1)}
    assert serializer.dumps(first) == serializer.dumps(second)
    assert serializer.dumps(first) == TaggedSerializer().dumps(second)


def test_tagged_reads_flasks_own_tagged_json() -> None:
    flask_tag = pytest.importorskip("flask.json.tag")
    from flask import Flask

    value = {
        "t": (1, 2),
        "b": b"\x00bin",
        "m": Markup("<b>x</b>"),
        "u": uuid.UUID(int=7),
        "d": datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC),
        "di": {" t": "looks like a tag"},
        "nested": [{"x": (b"y",)}],
    }
    with Flask(__name__).app_context():
        written = flask_tag.TaggedJSONSerializer().dumps(value)
    assert TaggedSerializer().loads(written.encode()) == value


def test_flask_reads_what_the_tagged_serializer_writes_for_its_own_types() -> None:
    flask_tag = pytest.importorskip("flask.json.tag")
    from flask import Flask

    value = {"t": (1, (2,)), "b": b"\x00", "m": Markup("<i>"), "u": uuid.UUID(int=9), " di": {" t": 1}}
    with Flask(__name__).app_context():
        assert flask_tag.TaggedJSONSerializer().loads(TaggedSerializer().dumps(value).decode()) == value


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4)
        | st.tuples(children, children)
        | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_property_orjson_and_stdlib_agree_on_any_json_value(value: Any) -> None:
    assert _outcome(_json.dumps_orjson, value) == _outcome(_json.dumps_stdlib, value)
    kind, blob = _outcome(_json.dumps_stdlib, value)
    if kind == "ok":
        assert _json.loads_orjson(blob) == _json.loads_stdlib(blob)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_property_tagged_round_trips_any_finite_value(value: Any) -> None:
    serializer = TaggedSerializer()
    try:
        blob = serializer.dumps(value)
    except ValueError:  # NaN/infinity: refused, as in plain JSON
        return
    assert serializer.loads(blob) == value
    assert blob == _json.dumps_stdlib(_json.loads_stdlib(blob))


class Money:
    def __init__(self, amount: Decimal, currency: str) -> None:
        self.amount, self.currency = amount, currency

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Money) and (self.amount, self.currency) == (other.amount, other.currency)

    __hash__ = None  # type: ignore[assignment]


MONEY = Tag(" money", Money, lambda m: [m.amount, m.currency], lambda pair: Money(*pair))


def test_an_app_tag_round_trips_and_its_contents_are_tagged_too() -> None:
    serializer = TaggedSerializer(tags=[MONEY])
    value = {"price": Money(Decimal("9.99"), "EUR"), "prices": (Money(Decimal("1"), "USD"),)}
    blob = serializer.dumps(value)
    assert b'{" money":[{" dec":"9.99"},"EUR"]}' in blob
    assert serializer.loads(blob) == value


def test_registering_a_taken_key_or_type_needs_replace() -> None:
    serializer = TaggedSerializer()
    with pytest.raises(ConfigurationError, match="replace=True"):
        serializer.register(Tag(" t", Money, str, str))
    with pytest.raises(ConfigurationError, match="replace=True"):
        serializer.register(Tag(" tup", tuple, list, tuple))
    serializer.register(Tag(" tup", tuple, list, lambda items: tuple(reversed(items))), replace=True)
    assert serializer.loads(serializer.dumps((1, 2))) == (2, 1)


@pytest.mark.parametrize("key", ["money", "", " ", " di"])
def test_tag_keys_must_be_a_space_and_a_name(key: str) -> None:
    with pytest.raises(ConfigurationError):
        TaggedSerializer().register(Tag(key, Money, str, str))


def test_plain_json_types_cannot_be_tagged() -> None:
    with pytest.raises(ConfigurationError, match="plain JSON"):
        TaggedSerializer().register(Tag(" s", str, str, str))


@pytest.mark.parametrize("value", [{1, 2}, Plain.A, {1: "x"}, object(), float("nan")], ids=repr)
def test_tagged_refuses_what_it_cannot_represent(value: Any) -> None:
    with pytest.raises((TypeError, ValueError)):
        TaggedSerializer().dumps(value)


@pytest.mark.parametrize(
    "blob", [b'{" b":"not base64!"}', b'{" u":"nope"}', b'{" dt":"yesterday"}', b'{" dec":"x"}', b'{" t":3}']
)
def test_corrupt_tagged_values_are_a_value_error(blob: bytes) -> None:
    with pytest.raises(ValueError, match="corrupt"):
        TaggedSerializer().loads(blob)


def test_serializer_for_accepts_names_and_objects() -> None:
    assert serializer_for("json") is DEFAULT_SERIALIZER
    assert isinstance(serializer_for("tagged"), TaggedSerializer)
    mine = TaggedSerializer(tags=[MONEY])
    assert serializer_for(mine) is mine


@pytest.mark.parametrize("choice", ["pickle", "JSON", "", 3, None])
def test_serializer_for_refuses_anything_else_at_start_up(choice: Any) -> None:
    with pytest.raises(ConfigurationError, match="serializer="):
        serializer_for(choice)
