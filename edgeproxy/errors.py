"""edgeproxy's error tree, typed by who is at fault (h11's Local/Remote split)."""

from __future__ import annotations


class EdgeError(Exception):
    """Base of every error edgeproxy raises on purpose."""


class RemoteProtocolError(EdgeError):
    """The client sent something illegal; ``status_hint`` is the answer to give (400, 413, 431)."""

    def __init__(self, message: str, *, status_hint: int = 400,
                 fields: list[tuple[bytes, bytes]] | None = None) -> None:
        super().__init__(message)
        self.status_hint = status_hint
        self.fields = fields or []  # the head's fields read before the fault: its X-Request-ID is kept


class UpstreamError(EdgeError):
    """The origin could not give an answer; drives stale-if-error, else 502/504."""

    status_hint = 502


class UpstreamConnectError(UpstreamError):
    pass


class UpstreamTimeout(UpstreamError):
    status_hint = 504


class UpstreamProtocolError(UpstreamError):
    pass


class ConfigError(EdgeError):
    """Bad command-line option or config file value; the message says which and why."""
