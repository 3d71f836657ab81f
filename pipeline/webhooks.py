"""Webhooks: signed as Standard Webhooks, delivered from a durable outbox with retries.

Endpoints and deliveries live in ``webhooks.sqlite`` in the state directory. An event is
first *written* (one outbox row per subscribed endpoint), then delivered by the
dispatcher, so a crash or a restart between the two loses nothing: the next dispatcher
picks up every pending row. Each delivery is tried once plus ``RETRIES`` times, with
exponential backoff and jitter, never later than ``MAX_AGE_S`` after the event; every
attempt is logged (``flowcms webhooks log``) and any delivery can be sent again
(``flowcms webhooks redeliver``).

Signatures (https://www.standardwebhooks.com): headers ``webhook-id``,
``webhook-timestamp`` (unix seconds) and ``webhook-signature: v1,<base64 HMAC-SHA256 of
"{id}.{timestamp}.{body}">``, keyed by the endpoint's ``whsec_``-prefixed secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import random
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import trio

EVENTS = ("content.published", "content.unpublished", "build.failed", "publish.completed", "rollback")
RETRIES = 5
MAX_AGE_S = 24 * 3600.0
CLAIM_MARGIN_S = 30.0  # an attempt lasts at most its timeout; past this a dead dispatcher's claim lapses
BACKOFF_BASE_S = 30.0  # 30 s, 2 min, 8 min, 32 min, ~2 h (×4 each time, ±20% jitter)
TIMEOUT_S = 10.0
DB_FILE = "webhooks.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS endpoints (
    id TEXT PRIMARY KEY, url TEXT NOT NULL, secret TEXT NOT NULL, events TEXT NOT NULL, created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS deliveries (
    id TEXT PRIMARY KEY, endpoint TEXT NOT NULL, event TEXT NOT NULL, body BLOB NOT NULL,
    created REAL NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, next_at REAL NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending', last_result TEXT
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (status, next_at);
CREATE TABLE IF NOT EXISTS attempts (
    delivery TEXT NOT NULL, at REAL NOT NULL, result TEXT NOT NULL, ok INTEGER NOT NULL, ms REAL NOT NULL
);
"""


class WebhookError(Exception):
    """A bad endpoint URL, event name or id (the message says which)."""


def new_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(24)).decode()


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value for one delivery."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def backoff(attempts: int, *, base: float = BACKOFF_BASE_S, rng: random.Random | None = None) -> float:
    """Seconds before the next try after ``attempts`` failures: ×4 per failure, ±20% jitter."""
    jitter = (rng or random).uniform(0.8, 1.2)
    return base * (4 ** (attempts - 1)) * jitter


@dataclass(frozen=True, slots=True)
class Endpoint:
    id: str
    url: str
    secret: str
    events: tuple[str, ...]


class Outbox:
    """The durable side: endpoints, pending deliveries and the attempt log (one SQLite file)."""

    def __init__(self, root: Path) -> None:
        self.path = root / DB_FILE
        with self._connect() as conn:
            conn.executescript(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=10)
        conn.execute("PRAGMA journal_mode = WAL")  # writers (publishes) and the dispatcher do not block each other
        return conn

    # -- endpoints --------------------------------------------------------------------
    def add_endpoint(self, url: str, events: Iterable[str] = EVENTS) -> Endpoint:
        if not url.startswith(("http://", "https://")):
            raise WebhookError(f"endpoint URL {url!r} must start with http:// or https://")
        events = tuple(events)
        unknown = [e for e in events if e not in EVENTS]
        if unknown or not events:
            raise WebhookError(f"unknown event {unknown[0] if unknown else '(none)'}: choose from {', '.join(EVENTS)}")
        endpoint = Endpoint("ep_" + os.urandom(6).hex(), url, new_secret(), events)
        with self._connect() as conn:
            conn.execute("INSERT INTO endpoints VALUES (?, ?, ?, ?, ?)",
                         (endpoint.id, url, endpoint.secret, ",".join(events), time.time()))
        return endpoint

    def endpoints(self) -> list[Endpoint]:
        with self._connect() as conn:
            rows = conn.execute("SELECT id, url, secret, events FROM endpoints ORDER BY created").fetchall()
        return [Endpoint(i, u, s, tuple(e.split(","))) for i, u, s, e in rows]

    def remove_endpoint(self, endpoint_id: str) -> None:
        with self._connect() as conn:
            if conn.execute("DELETE FROM endpoints WHERE id = ?", (endpoint_id,)).rowcount == 0:
                raise WebhookError(f"no endpoint {endpoint_id!r} (see `flowcms webhooks list`)")

    # -- events -------------------------------------------------------------------------
    def enqueue(self, event: str, data: dict[str, Any], *, now: float | None = None) -> list[str]:
        """Write the event once per subscribed endpoint; returns the delivery ids."""
        if event not in EVENTS:
            raise WebhookError(f"unknown event {event!r}")
        now = time.time() if now is None else now
        ids = []
        with self._connect() as conn:
            for endpoint in self.endpoints():
                if event not in endpoint.events:
                    continue
                delivery = "msg_" + os.urandom(8).hex()
                body = json.dumps({"type": event, "timestamp": _iso(now), "data": data},
                                  separators=(",", ":")).encode()
                conn.execute("INSERT INTO deliveries (id, endpoint, event, body, created, next_at) "
                             "VALUES (?, ?, ?, ?, ?, ?)", (delivery, endpoint.id, event, body, now, now))
                ids.append(delivery)
        return ids

    def due(self, now: float, limit: int = 32) -> list[tuple[str, Endpoint, bytes, int, float]]:
        """(delivery id, endpoint, body, attempts so far, created) of the deliveries due at ``now``."""
        endpoints = {e.id: e for e in self.endpoints()}
        with self._connect() as conn:
            rows = conn.execute("SELECT id, endpoint, body, attempts, created FROM deliveries "
                                "WHERE status = 'pending' AND next_at <= ? ORDER BY next_at LIMIT ?",
                                (now, limit)).fetchall()
        return [(d, endpoints[e], bytes(b), a, c) for d, e, b, a, c in rows if e in endpoints]

    def claim(self, delivery: str, attempts: int, *, now: float, lease: float) -> bool:
        """Take a due delivery for one attempt: True for exactly one caller per attempt.

        ``due`` reads a snapshot; an attempt that is recorded meanwhile leaves that snapshot's
        row stale, and sending it again delivered twice (and spent a retry). The claim only
        succeeds on the row as it was read, and moves ``next_at`` past the attempt: a dispatcher
        that dies mid-attempt leaves the delivery to be retried when the lease ends.
        """
        with self._connect() as conn:
            return conn.execute(
                "UPDATE deliveries SET next_at = ? WHERE id = ? AND attempts = ? AND status = 'pending' "
                "AND next_at <= ?", (now + lease, delivery, attempts, now)).rowcount == 1

    def next_due(self) -> float | None:
        with self._connect() as conn:
            row = conn.execute("SELECT min(next_at) FROM deliveries WHERE status = 'pending'").fetchone()
        return row[0]

    def record(self, delivery: str, *, ok: bool, result: str, ms: float, attempts: int, created: float,
               now: float, backoff_base: float = BACKOFF_BASE_S) -> str:
        """Log one attempt and decide what follows; returns the new status."""
        if ok:
            status, next_at = "delivered", now
        else:
            next_at = now + backoff(attempts, base=backoff_base)
            gave_up = attempts > RETRIES or next_at - created > MAX_AGE_S
            status = "failed" if gave_up else "pending"
        with self._connect() as conn:
            conn.execute("INSERT INTO attempts VALUES (?, ?, ?, ?, ?)", (delivery, now, result, int(ok), ms))
            conn.execute("UPDATE deliveries SET attempts = ?, next_at = ?, status = ?, last_result = ? WHERE id = ?",
                         (attempts, next_at, status, result, delivery))
        return status

    def redeliver(self, delivery: str, *, now: float | None = None) -> None:
        with self._connect() as conn:
            if conn.execute("UPDATE deliveries SET status = 'pending', next_at = ?, attempts = 0 WHERE id = ?",
                            (time.time() if now is None else now, delivery)).rowcount == 0:
                raise WebhookError(f"no delivery {delivery!r} (see `flowcms webhooks log`)")

    def log(self, limit: int = 50) -> list[dict[str, Any]]:
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT d.id, d.event, e.url, d.status, d.attempts, d.last_result, d.created "
                "FROM deliveries d LEFT JOIN endpoints e ON e.id = d.endpoint "
                "ORDER BY d.created DESC LIMIT ?", (limit,)).fetchall()
        keys = ("id", "event", "url", "status", "attempts", "last_result", "created")
        return [dict(zip(keys, row, strict=True)) for row in rows]


class Dispatcher:
    """Delivers due rows of the outbox, concurrently per delivery, until cancelled."""

    def __init__(self, outbox: Outbox, *, backoff_base: float = BACKOFF_BASE_S, timeout: float = TIMEOUT_S,
                 poll: float = 1.0) -> None:
        self.outbox = outbox
        self.backoff_base = backoff_base
        self.timeout = timeout
        self.poll = poll
        self.wakeup = trio.Event()

    def nudge(self) -> None:
        """New rows were written: look now instead of at the next poll."""
        self.wakeup.set()

    async def run(self) -> None:
        async with httpx.AsyncClient() as client, trio.open_nursery() as nursery:
            in_flight: set[str] = set()
            while True:
                due = await trio.to_thread.run_sync(self.outbox.due, time.time())
                for row in due:
                    if row[0] not in in_flight:
                        in_flight.add(row[0])
                        nursery.start_soon(self._deliver, client, row, in_flight)
                next_at = await trio.to_thread.run_sync(self.outbox.next_due)
                wait = self.poll if next_at is None else min(self.poll, max(0.01, next_at - time.time()))
                with trio.move_on_after(wait):
                    await self.wakeup.wait()
                self.wakeup = trio.Event()

    async def _deliver(self, client: httpx.AsyncClient, row: tuple[str, Endpoint, bytes, int, float],
                       in_flight: set[str]) -> None:
        delivery, endpoint, body, attempts, created = row
        try:
            claimed = await trio.to_thread.run_sync(lambda: self.outbox.claim(
                delivery, attempts, now=time.time(), lease=self.timeout + CLAIM_MARGIN_S))
        except BaseException:
            in_flight.discard(delivery)
            raise
        if not claimed:  # a stale snapshot of a delivery just attempted: not ours to send
            in_flight.discard(delivery)
            return
        stamp = int(time.time())
        headers = {"content-type": "application/json", "webhook-id": delivery, "webhook-timestamp": str(stamp),
                   "webhook-signature": sign(endpoint.secret, delivery, stamp, body)}
        started = time.perf_counter()
        try:
            response = await client.post(endpoint.url, content=body, headers=headers, timeout=self.timeout)
            ok, result = 200 <= response.status_code < 300, f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            ok, result = False, f"{type(exc).__name__}: {exc}"[:300]
        ms = (time.perf_counter() - started) * 1000
        try:
            await trio.to_thread.run_sync(lambda: self.outbox.record(
                delivery, ok=ok, result=result, ms=ms, attempts=attempts + 1, created=created, now=time.time(),
                backoff_base=self.backoff_base))
        finally:
            in_flight.discard(delivery)
        self.wakeup.set()


def _iso(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def publish_events(old: dict[str, Any], new: dict[str, Any], added: Iterable[str], removed: Iterable[str],
                   summary: dict[str, Any], *, rollback: bool = False) -> list[tuple[str, dict[str, Any]]]:
    """The events of one publish (or rollback) from the two manifests: an entry page that
    appeared is ``content.published``, one that went away ``content.unpublished``."""
    events: list[tuple[str, dict[str, Any]]] = []
    for kind, manifest, paths in (("content.published", new, added), ("content.unpublished", old, removed)):
        for path in paths:
            item = manifest.get(path)
            keys = getattr(item, "keys", ())
            if path.endswith("/") and keys and any(k.startswith("type:") for k in keys):
                events.append((kind, {"id": keys[0], "url": path}))
    events.append(("rollback" if rollback else "publish.completed", summary))
    return events
