"""The edge's own error answers share the APIs' error object (one error model)."""

from __future__ import annotations

import json

import pytest

from edgeproxy.replies import error_reply


@pytest.mark.parametrize(("status", "title"), [(400, "Bad Request"), (431, "Request Header Fields Too Large"),
                                               (413, "Payload too large"), (502, "Bad Gateway")])
def test_error_reply_is_the_api_error_object(status: int, title: str) -> None:
    reply = error_reply(status, "BAD_REQUEST", "what went wrong")
    assert json.loads(reply.body) == {"errors": [{"status": str(status), "code": "BAD_REQUEST", "title": title,
                                                  "detail": "what went wrong"}]}
    assert (b"content-type", b"application/json") in reply.fields
    assert (b"cache-control", b"no-store") in reply.fields
