from __future__ import annotations

import base64
import datetime as dt
import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.cursor import MAX_CURSOR_LENGTH, decode_cursor, encode_cursor
from pipeline.errors import QueryError

SORTS = ["publishedAt", "-publishedAt", "title", "-title", "updatedAt", "-updatedAt"]


DATE_SORTS = ("publishedAt", "-publishedAt", "updatedAt", "-updatedAt")
DATE_KEYS = st.one_of(st.just(""), st.datetimes(min_value=dt.datetime(1000, 1, 1)).map(
    lambda d: d.strftime("%Y-%m-%dT%H:%M:%SZ")))


@st.composite
def sort_and_value(draw: st.DrawFn) -> tuple[str, str]:
    """A sort and a key value the index could hold for it: dates (or '') under the date sorts."""
    sort = draw(st.sampled_from(SORTS) | st.text())
    return sort, draw(DATE_KEYS if sort in DATE_SORTS else st.text())


def _token(payload: object) -> str:
    """A well-encoded token around any JSON payload (to test shape checks)."""
    raw = json.dumps(payload).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@given(sort_value=sort_and_value(), entry_id=st.text())
def test_round_trip(sort_value: tuple[str, str], entry_id: str) -> None:
    sort, value = sort_value
    token = encode_cursor(sort, (value, entry_id))
    assert re.fullmatch(r"[A-Za-z0-9_-]+", token)  # URL-safe, unpadded
    assert decode_cursor(token, sort=sort) == (value, entry_id)


@given(sort=st.sampled_from(SORTS) | st.text(), value=st.text(), entry_id=st.text())
def test_tokens_are_the_bytes_of_the_stdlib_encoding(sort: str, value: str, entry_id: str) -> None:
    """Tokens stay what they were when json.dumps wrote them: the same page keeps one URL."""
    payload = json.dumps({"s": sort, "k": [value, entry_id]}, ensure_ascii=False, separators=(",", ":"))
    assert encode_cursor(sort, (value, entry_id)) == (
        base64.urlsafe_b64encode(payload.encode()).rstrip(b"=").decode())


def test_token_is_compact_json() -> None:
    token = encode_cursor("-publishedAt", ("2026-11-02T09:30:00Z", "cnt_7f3k2m"))
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    assert raw == b'{"s":"-publishedAt","k":["2026-11-02T09:30:00Z","cnt_7f3k2m"]}'


@given(sort=st.sampled_from(SORTS), other=st.sampled_from(SORTS), key=st.tuples(DATE_KEYS, st.text()))
def test_cursor_is_bound_to_its_sort(sort: str, other: str, key: tuple[str, str]) -> None:
    token = encode_cursor(sort, key)
    if other == sort:
        assert decode_cursor(token, sort=other) == key
    else:
        with pytest.raises(QueryError, match="made for sort") as info:
            decode_cursor(token, sort=other)
        assert info.value.parameter == "cursor"


@pytest.mark.parametrize(
    "token",
    [
        "",
        "!!!",
        "a",
        "abc$",
        "eyJz fQ",
        "====",
        "x" * (MAX_CURSOR_LENGTH + 1),
        base64.urlsafe_b64encode(b"\xff\xfe\x00").decode(),  # not UTF-8
        _token("not an object")[:-2],  # truncated
        _token("a string"),
        _token(["-publishedAt", "2026", "id"]),
        _token({"s": "-publishedAt"}),
        _token({"s": "-publishedAt", "k": ["a"]}),
        _token({"s": "-publishedAt", "k": ["a", "b", "c"]}),
        _token({"s": "-publishedAt", "k": ["a", 1]}),
        _token({"s": "-publishedAt", "k": "ab"}),
        _token({"s": 1, "k": ["a", "b"]}),
        _token({"s": "-publishedAt", "k": ["a", "b"], "x": 1}),
        _token({"s": "-publishedAt", "k": ["\ud800", "b"]}),  # lone surrogate via JSON escape
        base64.urlsafe_b64encode(b"[" * 5000).decode(),  # nesting bomb
    ],
)
def test_garbage_is_rejected(token: str) -> None:
    with pytest.raises(QueryError) as info:
        decode_cursor(token, sort="-publishedAt")
    assert info.value.parameter == "cursor"
    assert "cursor" in info.value.message


def test_non_string_token_is_rejected() -> None:
    with pytest.raises(QueryError) as info:
        decode_cursor(123, sort="title")  # type: ignore[arg-type]
    assert info.value.parameter == "cursor"


@given(token=st.text(max_size=200) | st.binary(max_size=150).map(lambda b: base64.urlsafe_b64encode(b).decode()))
def test_any_input_decodes_or_raises_query_error(token: str) -> None:
    try:
        key = decode_cursor(token, sort="title")
    except QueryError as error:
        rejected_as = error.parameter
    else:
        assert isinstance(key, tuple)
        assert all(isinstance(part, str) for part in key)
        rejected_as = "cursor"
    assert rejected_as == "cursor"


@pytest.mark.parametrize("sort", DATE_SORTS)
@pytest.mark.parametrize("value", ["notadate", "2026-11-02", "2026-11-02T09:30:00+02:00", "9999"])
def test_an_edited_date_key_is_rejected(sort: str, value: str) -> None:
    """A date sort's key that the index cannot hold would compare as text (a page from anywhere)."""
    with pytest.raises(QueryError, match="not a valid cursor") as info:
        decode_cursor(_token({"s": sort, "k": [value, "cnt_x"]}), sort=sort)
    assert info.value.parameter == "cursor"
    assert decode_cursor(_token({"s": "title", "k": [value, "cnt_x"]}), sort="title") == (value, "cnt_x")
