"""Webhooks: Standard Webhooks signatures, the durable outbox, retries, restarts, redelivery.

Receivers are real HTTP servers on 127.0.0.1 (h11 over trio); retries use a short backoff
base (the schedule's shape is the same, ×4 per failure).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import h11
import trio

from pipeline.webhooks import RETRIES, Dispatcher, Outbox, backoff, sign

BOUND_S = 20.0
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Receiver:
    """Answers ``statuses`` in turn (then 200); status 0 means: never answer."""

    statuses: list[int] = field(default_factory=list)
    seen: list[tuple[dict[bytes, bytes], bytes]] = field(default_factory=list)
    port: int = 0
    got: trio.Event = field(default_factory=trio.Event)

    async def handle(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        headers: dict[bytes, bytes] = {}
        body = b""
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await stream.receive_some(65536)
                if not data:
                    return
                conn.receive_data(data)
            elif isinstance(event, h11.Request):
                headers = {bytes(n): bytes(v) for n, v in event.headers}
            elif isinstance(event, h11.Data):
                body += bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                break
        self.seen.append((headers, body))
        self.got.set()
        status = self.statuses.pop(0) if self.statuses else 200
        if status == 0:
            await trio.sleep_forever()
        await stream.send_all(conn.send(h11.Response(status_code=status, headers=[(b"content-length", b"0")]))
                              + conn.send(h11.EndOfMessage()))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"


async def start_receiver(nursery: trio.Nursery, statuses: list[int]) -> Receiver:
    receiver = Receiver(list(statuses))
    listeners = await nursery.start(partial(trio.serve_tcp, receiver.handle, 0, host="127.0.0.1"))
    receiver.port = listeners[0].socket.getsockname()[1]
    return receiver


def verify(secret: str, headers: dict[bytes, bytes], body: bytes) -> bool:
    """The receiver's side of the Standard Webhooks check, written out independently."""
    key = base64.b64decode(secret.split("_", 1)[1])
    signed = headers[b"webhook-id"] + b"." + headers[b"webhook-timestamp"] + b"." + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest())
    return any(sig.split(b",", 1)[1] == expected for sig in headers[b"webhook-signature"].split())


async def run_until(outbox: Outbox, done: Callable[[], bool], **options: float) -> None:
    dispatcher = Dispatcher(outbox, **options)  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(dispatcher.run)
        while not done():  # noqa: ASYNC110 — the outbox file is what we watch
            await trio.sleep(0.02)
        nursery.cancel_scope.cancel()


def test_signature_matches_the_standard_webhooks_example() -> None:
    assert sign("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330,
                b'{"test": 2432232314}') == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_a_delivery_is_claimed_once_per_attempt(tmp_path: Path) -> None:
    """A dispatcher acts on a snapshot of due rows: a row whose attempt was recorded meanwhile
    must not be sent again (it was delivered twice, and the retry count went wrong)."""
    outbox = Outbox(tmp_path)
    outbox.add_endpoint("http://127.0.0.1:9/hook")
    (delivery,) = outbox.enqueue("rollback", {"to": "b"})
    now = time.time()
    (row,) = outbox.due(now)
    assert outbox.claim(delivery, row[3], now=now, lease=30)
    assert not outbox.claim(delivery, row[3], now=now, lease=30)  # the same snapshot again
    assert outbox.due(now) == []  # leased until the attempt is recorded
    assert outbox.due(now + 31) != []  # a dispatcher that died mid-attempt: retried after the lease
    outbox.record(delivery, ok=False, result="HTTP 500", ms=1.0, attempts=row[3] + 1, created=row[4], now=now)
    assert not outbox.claim(delivery, row[3], now=now + 3600, lease=30)  # stale: the attempt count moved on


def test_backoff_grows_fourfold_with_jitter_and_stays_under_a_day() -> None:
    delays = [backoff(n, base=30.0) for n in range(1, RETRIES + 1)]
    assert all(a < b for a, b in itertools.pairwise(delays))
    assert 24 <= delays[0] <= 36
    assert sum(delays) < 24 * 3600


async def test_fails_three_times_then_delivered_signed_each_time(nursery: trio.Nursery, tmp_path: Path) -> None:
    receiver = await start_receiver(nursery, [500, 503, 429])
    outbox = Outbox(tmp_path)
    endpoint = outbox.add_endpoint(receiver.url, ["publish.completed"])
    (delivery,) = outbox.enqueue("publish.completed", {"build": "b1"})
    assert outbox.enqueue("rollback", {}) == []  # not subscribed
    with trio.fail_after(BOUND_S):
        await run_until(outbox, lambda: outbox.log()[0]["status"] != "pending", backoff_base=0.05)
    (row,) = outbox.log()
    assert (row["id"], row["status"], row["attempts"], row["last_result"]) == (delivery, "delivered", 4, "HTTP 200")
    assert len(receiver.seen) == 4
    assert {h[b"webhook-id"] for h, _ in receiver.seen} == {delivery.encode()}  # one id across retries
    assert all(verify(endpoint.secret, h, b) for h, b in receiver.seen)
    payload = json.loads(receiver.seen[-1][1])
    assert (payload["type"], payload["data"]) == ("publish.completed", {"build": "b1"})


async def test_retries_survive_a_restart_of_the_dispatcher(nursery: trio.Nursery, tmp_path: Path) -> None:
    receiver = await start_receiver(nursery, [500, 500, 500])
    outbox = Outbox(tmp_path)
    outbox.add_endpoint(receiver.url)
    outbox.enqueue("build.failed", {"error": "x"})
    with trio.fail_after(BOUND_S):
        await run_until(outbox, lambda: outbox.log()[0]["attempts"] >= 2, backoff_base=0.05)  # then "crash"
        assert outbox.log()[0]["status"] == "pending"
        reopened = Outbox(tmp_path)  # a new process would open the same file
        await run_until(reopened, lambda: reopened.log()[0]["status"] != "pending", backoff_base=0.05)
    row = reopened.log()[0]
    assert (row["status"], row["attempts"]) == ("delivered", 4)


async def test_a_receiver_that_never_answers_is_given_up_then_redelivered(nursery: trio.Nursery,
                                                                       tmp_path: Path) -> None:
    receiver = await start_receiver(nursery, [0] * (RETRIES + 1))
    outbox = Outbox(tmp_path)
    outbox.add_endpoint(receiver.url)
    (delivery,) = outbox.enqueue("content.published", {"id": "cnt_1", "url": "/blog/x/"})
    with trio.fail_after(BOUND_S):
        await run_until(outbox, lambda: outbox.log()[0]["status"] != "pending", backoff_base=0.005, timeout=0.2)
        failed = outbox.log()[0]
        outbox.redeliver(delivery)
        await run_until(outbox, lambda: outbox.log()[0]["status"] != "pending", backoff_base=0.005, timeout=0.2)
    assert (failed["status"], failed["attempts"]) == ("failed", RETRIES + 1)
    assert "Timeout" in str(failed["last_result"])
    assert outbox.log()[0]["status"] == "delivered"  # the receiver answers 200 now


async def test_cli_manages_endpoints_and_shows_the_log(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "flowcms.toml").write_text('[site]\ntitle = "x"\n')

    async def cli(*args: str) -> trio.CompletedProcess[bytes]:  # type: ignore[name-defined]
        return await trio.run_process([sys.executable, "-m", "pipeline.cli", "--site", str(site), *args],
                                      capture_stdout=True, capture_stderr=True, check=False, cwd=ROOT)

    added = await cli("webhooks", "add", "http://127.0.0.1:9/hook", "--events", "rollback,build.failed")
    bad = await cli("webhooks", "add", "http://127.0.0.1:9/hook", "--events", "nope")
    listed = await cli("webhooks", "list")
    outbox = Outbox(site / ".flowcms")
    outbox.enqueue("rollback", {"to": "b"})
    log = await cli("webhooks", "log", "--json")
    missing = await cli("webhooks", "redeliver", "msg_nope")
    assert (added.returncode, bad.returncode, missing.returncode) == (0, 1, 1)
    assert b"whsec_" in added.stdout
    assert b"unknown event nope" in bad.stderr
    assert b"rollback, build.failed" in listed.stdout
    assert json.loads(log.stdout)[0]["event"] == "rollback"
    assert b"no delivery" in missing.stderr
