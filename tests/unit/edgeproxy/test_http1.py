"""The hand-rolled HTTP/1.1 request parser (RFC 9112), fed bytes in arbitrary pieces."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgeproxy.errors import RemoteProtocolError
from edgeproxy.http1 import NEED_DATA, Body, EndOfMessage, H1Server, RequestHead, format_response_head


def events(data: bytes, pieces: list[int] | None = None) -> list[object]:
    parser = H1Server()
    out: list[object] = []
    chunks = [data] if not pieces else _split(data, pieces)
    for chunk in chunks:
        parser.receive_data(chunk)
        while (event := parser.next_event()) is not NEED_DATA:
            out.append(event)
    return out


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    out, last = [], 0
    for p in points:
        out.append(data[last:p])
        last = p
    out.append(data[last:])
    return [c for c in out if c]


def merged(evs: list[object]) -> list[object]:
    """Adjacent Body events joined: chunking must not change the message."""
    out: list[object] = []
    for e in evs:
        if isinstance(e, Body) and out and isinstance(out[-1], Body):
            out[-1] = Body(out[-1].data + e.data)
        else:
            out.append(e)
    return out


PIPELINE = (b"GET /a HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n"
            b"POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
            b"PUT /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\nX-T: 1\r\n\r\n"
            b"GET /d HTTP/1.0\r\n\r\n")


def test_pipelined_requests_parse_in_order() -> None:
    """Pipelined requests come out one after another with their bodies (RFC 9112 §9.3.2)."""
    evs = merged(events(PIPELINE))
    heads = [e for e in evs if isinstance(e, RequestHead)]
    assert [h.target for h in heads] == [b"/a", b"/b", b"/c", b"/d"]
    assert [type(e).__name__ for e in evs] == [
        "RequestHead", "EndOfMessage", "RequestHead", "Body", "EndOfMessage",
        "RequestHead", "Body", "EndOfMessage", "RequestHead", "EndOfMessage"]
    assert evs[3] == Body(b"hello")
    assert evs[6] == Body(b"abcde")
    assert evs[7] == EndOfMessage([(b"x-t", b"1")])
    assert heads[0].headers == [(b"host", b"x"), (b"accept", b"*/*")]
    assert heads[0].keep_alive
    assert not heads[3].keep_alive


@given(st.lists(st.integers(min_value=0, max_value=10_000), max_size=12))
def test_any_chunking_gives_the_same_events(cuts: list[int]) -> None:
    assert merged(events(PIPELINE, cuts)) == merged(events(PIPELINE))


@given(st.binary(max_size=300), st.lists(st.integers(0, 400), max_size=6))
def test_garbage_raises_only_remote_protocol_error(data: bytes, cuts: list[int]) -> None:
    try:
        events(data + b"\r\n\r\n", cuts)
    except RemoteProtocolError as exc:
        assert exc.status_hint in (400, 413, 417, 431, 501)  # noqa: PT017


@pytest.mark.parametrize(("raw", "status"), [
    (b"GET / HTTP/1.1\r\n\r\n", 400),                                  # no Host in 1.1
    (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),            # two Hosts
    (b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400),                      # space before colon
    (b"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n", 400),            # obs-fold
    (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 400),
    (b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
    (b"GET / HTTP/1.1\r\nHost: a\r\nExpect: magic\r\n\r\n", 417),
    (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
])
def test_malformed_requests_get_the_right_status(raw: bytes, status: int) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        events(raw)
    assert info.value.status_hint == status


def test_oversized_head_is_431_even_without_terminator() -> None:
    parser = H1Server()
    parser.receive_data(b"GET / HTTP/1.1\r\nHost: a\r\n" + b"X: " + b"a" * 20000)
    with pytest.raises(RemoteProtocolError) as info:
        parser.next_event()
    assert info.value.status_hint == 431


def test_body_limit_is_413_before_reading_it() -> None:
    parser = H1Server(max_body=10)
    parser.receive_data(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n")
    with pytest.raises(RemoteProtocolError) as info:
        parser.next_event()
    assert info.value.status_hint == 413


def test_expect_continue_and_leading_crlf() -> None:
    (head, end) = events(b"\r\nGET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n")
    assert isinstance(head, RequestHead)
    assert head.expect_continue
    assert isinstance(end, EndOfMessage)


def test_connection_close_and_keep_alive_tokens() -> None:
    (close, _) = events(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Close\r\n\r\n")
    (keep, _) = events(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    assert isinstance(close, RequestHead)
    assert not close.keep_alive
    assert isinstance(keep, RequestHead)
    assert keep.keep_alive


def test_format_response_head() -> None:
    assert format_response_head(404, [(b"content-length", b"0")]) == (
        b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")


def test_http10_with_transfer_encoding_closes_after() -> None:
    """RFC 9112 §6.1: an HTTP/1.0 message with Transfer-Encoding is answered, then the connection closes."""
    evs = events(b"POST / HTTP/1.0\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
    head = evs[0]
    assert isinstance(head, RequestHead)
    assert not head.keep_alive
