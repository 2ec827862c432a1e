"""The Cookie header parser and the Set-Cookie renderer, on friendly and hostile input."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coatcheck.cookies import first_cookie, http_date, parse_cookie_header, render_set_cookie
from tests.workmeter import growth

NOW = 1_800_000_000.0


def test_pairs_in_order_with_duplicates_kept() -> None:
    header = b"a=1; b=2;a=3 ;\tc = 4"
    assert parse_cookie_header(header) == [(b"a", b"1"), (b"b", b"2"), (b"a", b"3"), (b"c", b"4")]


def test_values_are_never_unquoted_or_decoded() -> None:
    header = b'q="a\\"b"; p=%41%3B; e=a=b'
    assert parse_cookie_header(header) == [(b"q", b'"a\\"b"'), (b"p", b"%41%3B"), (b"e", b"a=b")]


def test_pairs_without_a_name_or_equals_are_dropped() -> None:
    assert parse_cookie_header(b"novalue; =x; ;; ok=1") == [(b"ok", b"1")]


def test_first_occurrence_wins_and_later_ones_are_never_tried() -> None:
    assert first_cookie(b"session=evil; session=good", b"session") == b"evil"
    assert first_cookie(b"other=1", b"session") is None


@pytest.mark.parametrize(
    "smuggled", [b"\x0b__Host-x=1", b"\x0c__Host-x=1", b"\xa0__Host-x=1", b"\r__Host-x=1"]
)
def test_prefix_smuggling_is_not_read_as_the_prefixed_name(smuggled: bytes) -> None:
    assert first_cookie(b"a=0; " + smuggled, b"__Host-x") is None


def test_only_space_and_tab_are_trimmed() -> None:
    assert parse_cookie_header(b" \t a=1 \t ") == [(b"a", b"1")]
    assert parse_cookie_header(b"\na=1") == [(b"\na", b"1")]


@given(st.binary(max_size=2000))
def test_parser_never_raises_on_arbitrary_bytes(header: bytes) -> None:
    for name, value in parse_cookie_header(header):
        assert name and b";" not in name and b";" not in value
        assert name == name.strip(b" \t")


@given(
    st.lists(
        st.tuples(st.from_regex(rb"\A[A-Za-z0-9_-]{1,10}\Z"), st.from_regex(rb"\A[A-Za-z0-9%_.-]{0,20}\Z"))
    )
)
def test_parser_round_trips_well_formed_headers(pairs: list[tuple[bytes, bytes]]) -> None:
    header = b"; ".join(n + b"=" + v for n, v in pairs)
    assert parse_cookie_header(header) == pairs


COOKIES_PY = parse_cookie_header.__code__.co_filename


def parse_both(header: bytes) -> None:
    parse_cookie_header(header)
    first_cookie(header + b"; session=1", b"session")


def quadratic_parse(header: bytes) -> list[bytes]:
    """A parser that re-copies the rest of the header for every pair: the meter must see it."""
    names, rest = [], header
    while rest:
        part, _, rest = rest.partition(b";")
        names.append(part)
    return names


def test_the_work_meter_tells_linear_from_quadratic() -> None:
    assert growth(quadratic_parse, b";", {quadratic_parse.__code__.co_filename}) > 40
    assert 6 < growth(parse_cookie_header, b"\\", {COOKIES_PY}) < 10


@pytest.mark.parametrize("unit", [b"\\", b'"', b";", b'a=\\"; ', b"=", b" \t"])
def test_hostile_headers_parse_in_linear_time(unit: bytes) -> None:
    ratio = growth(parse_both, unit, {COOKIES_PY})
    assert 6 < ratio < 10, f"parser work grew {ratio:.1f}x for 8x input (linear ~8x, quadratic ~64x)"


def test_renders_every_attribute() -> None:
    header = render_set_cookie(
        "sid",
        "abc",
        max_age=3600,
        path="/app",
        domain="example.com",
        secure=True,
        http_only=True,
        same_site="strict",
        partitioned=True,
        priority="high",
        now=NOW,
    )
    assert header == (
        b"sid=abc; Max-Age=3600; Expires=Fri, 15 Jan 2027 09:00:00 GMT; Path=/app; Domain=example.com; "
        b"Secure; HttpOnly; SameSite=Strict; Partitioned; Priority=High"
    )


def test_max_age_zero_expires_in_the_past() -> None:
    header = render_set_cookie("sid", "", max_age=0, now=NOW)
    assert b"Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT" in header


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("name", "a;b"),
        ("name", "a b"),
        ("name", ""),
        ("name", "a\r\nSet-Cookie: x"),
        ("value", "a;b"),
        ("value", "a\r\nX: y"),
        ("value", 'a"b'),
        ("value", "a b"),
        ("value", "é"),
        ("path", "/a;Secure"),
        ("path", "/a\r\n"),
        ("domain", "x.com; HttpOnly"),
    ],
)
def test_renderer_refuses_injection(field: str, value: str) -> None:
    kwargs = {"name": "sid", "value": "ok", "path": "/", "domain": None}
    kwargs[field] = value
    with pytest.raises(ValueError):
        render_set_cookie(kwargs.pop("name"), kwargs.pop("value"), now=NOW, **kwargs)  # type: ignore[arg-type]


def test_rendering_caches_stay_bounded_and_never_change_the_header() -> None:
    from coatcheck import cookies

    for i in range(200):
        path = f"/p{i}"
        header = render_set_cookie("sid", "v", max_age=60, path=path, now=NOW + i)
        expected_date = http_date(NOW + i + 60).encode()
        assert header == b"sid=v; Max-Age=60; Expires=" + expected_date + b"; Path=" + path.encode() + (
            b"; HttpOnly; SameSite=Lax"
        )
        assert len(cookies._SUFFIXES) <= cookies._MAX_SUFFIXES
    with pytest.raises(ValueError):
        render_set_cookie("sid", "v", path="/a;b", now=NOW)
    assert render_set_cookie("sid", "v", path=None, http_only=False, same_site=None, now=NOW) == b"sid=v"
