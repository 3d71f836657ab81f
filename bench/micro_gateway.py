"""Micro-benchmark of the edge's fresh-hit path: a static page vs API answers behind the gateway.

Standalone (no pytest, no sockets, no files): ``.venv/bin/python bench/micro_gateway.py``.
It builds one ``Exchange`` with the API gateway of ``bench/api.py`` (``/api/v3``,
``/public/feed`` and ``/graphql`` public, tiers of 10,000/minute, 32 hashed API keys of role
viewer), warms its cache with the answers the origin sends (``pipeline/origin/static.py``,
``jsonapi.respond`` and ``graphql_api.py``: same Cache-Control, ETag, Surrogate-Key, Vary) and
times ``Exchange.try_hit``, the call the HTTP/1.1 hit loop and HTTP/2 make inline, per case:

  static    GET /blog/ (no gateway)
  list      GET /api/v3/posts?limit=20, ``Vary: Accept, Content-Type, X-Flowcms-Role``
  feed      GET /public/feed/<flowKey>, ``Vary: Accept, Content-Type``
  graphql   GET /graphql?query=…, ``Vary: Accept, X-Flowcms-Role``

The API requests carry ``Authorization: Bearer <key>``, the next of 32 keys each call (as the
bench's 32 h2load connections do), plus h2load's own fields. ``+h2`` adds what HTTP/2 then does
with the reply (``http2.H2Connection._block``: the header block with the reply's extra fields),
so the per-request encoding of X-RateLimit-* is counted too. ``h1 lane`` times what the HTTP/1.1
hit loop calls instead (``h1lane.h1_hit``: the same answer, already serialized to bytes, Date and
X-Request-ID included), ``h2 lane`` what HTTP/2 calls instead (``plainhit.plain_hit`` and
``h2lane.hit_block``: the same answer's header block), ``h2 head`` the same with the request
head HTTP/2 keeps per header block, which remembers the lane's selection (``plainhit.LaneMemo``).
Rounds interleave the cases; best of ``--rounds``, µs per call, and the ratio static / case (the
bench's "API hit / static hit").
The limiter's buckets are reset between rounds, so no round runs into a 429.

``--profile CASE`` runs cProfile over one case and prints the top functions.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import hashlib
import platform
import pstats
import sys
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgeproxy.config import ProxyConfig
from edgeproxy.exchange import Exchange
from edgeproxy.gateway import RateLimiter
from edgeproxy.gateway_config import parse_gateway
from edgeproxy.h1lane import h1_hit
from edgeproxy.h2lane import hit_block
from edgeproxy.http2 import H2Connection
from edgeproxy.plainhit import plain_hit
from edgeproxy.replies import Reply
from edgeproxy.upstream import UpstreamResponse

HOST = b"127.0.0.1:8080"
KEYS = 32  # bench/api.py: one key per h2load connection, 32 connections
TIER_PER_MINUTE = 10_000  # bench/api.py: the most a tier may say
ROUTES = ("/api/v3", "/public/feed", "/graphql")
CACHE_CONTROL = b"public, max-age=0, s-maxage=31536000, stale-while-revalidate=60, stale-if-error=86400"  # jsonapi.CACHE_CONTROL
H2LOAD_FIELDS = [(b"accept-encoding", b"gzip, deflate"), (b"user-agent", b"h2load nghttp2/1.52.0")]
CASES = ("static", "list", "feed", "graphql")
TARGETS = {
    "static": b"/blog/",
    "list": b"/api/v3/posts?limit=20",
    "feed": b"/public/feed/ab12cd34ef",
    "graphql": b"/graphql?query=%7Bposts(limit%3A5)%7Bid%20title%7D%7D",
}
BODY_BYTES = {"static": 9556, "list": 14472, "feed": 10027, "graphql": 1253}  # bench/api.py's table
VARY = {"list": b"Accept, Content-Type, X-Flowcms-Role", "feed": b"Accept, Content-Type",
        "graphql": b"Accept, X-Flowcms-Role"}
MEDIA_TYPE = {"static": b"text/html; charset=utf-8", "list": b"application/vnd.api+json",
              "feed": b"application/json", "graphql": b"application/json; charset=utf-8"}


def gateway_table(keys: list[tuple[str, str]]) -> dict[str, Any]:
    """The ``[gateway]`` table bench/api.py's ``gateway_toml`` writes (same shape, parsed the same way)."""
    lines = ["[gateway]", 'anonymous_tier = "anonymous"', "[gateway.tiers]", f"anonymous = {TIER_PER_MINUTE}",
             f"bench = {TIER_PER_MINUTE}"]
    for prefix in ROUTES:
        lines += ["[[gateway.routes]]", f'prefix = "{prefix}"', "public = true"]
    for key_id, key in keys:
        digest = hashlib.sha256(key.encode()).hexdigest()
        lines += ["[[gateway.keys]]", f'id = "{key_id}"', f'hash = "{digest}"', 'role = "viewer"', 'tier = "bench"']
    table: dict[str, Any] = tomllib.loads("\n".join(lines))["gateway"]
    return table


def origin_answer(case: str) -> UpstreamResponse:
    """The origin's 200 as it arrives at the edge (hypercorn adds date and server)."""
    body = b"x" * BODY_BYTES[case]
    headers = [(b"etag", b'"b3-%s"' % hashlib.sha256(case.encode()).hexdigest()[:32].encode()),
               (b"cache-control", CACHE_CONTROL),
               (b"surrogate-key", b"build:site content:posts type:post listing:posts"),
               (b"x-build", b"20260101T000000Z-0123456")]
    if case in VARY:
        headers.append((b"vary", VARY[case]))
    headers += [(b"content-type", MEDIA_TYPE[case]), (b"content-length", b"%d" % len(body)),
                (b"date", b"Thu, 01 Jan 2026 00:00:00 GMT"), (b"server", b"hypercorn-h11")]
    return UpstreamResponse(200, headers, body)


def request_fields(case: str, keys: list[str]) -> list[list[tuple[bytes, bytes]]]:
    """Per call, the request's regular fields (what ``h2wire.parse_request`` hands on)."""
    if case == "static":
        return [list(H2LOAD_FIELDS)]
    return [[*H2LOAD_FIELDS, (b"authorization", b"Bearer " + key.encode())] for key in keys]


def warm(exchange: Exchange) -> None:
    """Store each case's answer as a miss through the gateway would (identity fields included)."""
    now = time.time()
    for case in CASES:
        request = list(H2LOAD_FIELDS)
        if case != "static":
            request.append((b"x-flowcms-role", b"viewer"))
        stored = exchange.store_response(HOST + TARGETS[case], TARGETS[case], request, origin_answer(case), now, now)
        assert stored is not None, case


class _Block:
    """Just enough of an ``H2Connection`` for its ``_block`` (the response header block)."""

    table_update = b""

    def block(self, reply: Reply, rid: bytes) -> bytes:
        return H2Connection._block(self, reply, rid)  # type: ignore[arg-type]


class _Head:
    """What HTTP/2 keeps per distinct header block for the lane's memo (``plainhit.LaneMemo``)."""

    __slots__ = ("lane",)

    def __init__(self) -> None:
        self.lane = None


def make_runner(exchange: Exchange, case: str, keys: list[str], *, h2: bool, h1: bool = False,
                h2_lane: bool = False, remembered: bool = False) -> Callable[[int], None]:
    target = TARGETS[case]
    requests = request_fields(case, keys)
    count = len(requests)
    try_hit = exchange.try_hit
    block = _Block().block
    rid = b"0123456789abcdef-1"

    if h1:
        def lane(calls: int) -> None:
            for i in range(calls):
                h1_hit(exchange, b"GET", target, requests[i % count], HOST, "127.0.0.1")

        return lane

    if h2_lane:
        heads = [_Head() if remembered else None for _ in requests]  # one per key: h2load's connections

        def lane2(calls: int) -> None:
            for i in range(calls):
                found = plain_hit(exchange, b"GET", target, requests[i % count], HOST, "127.0.0.1", 1 << 20,
                                  heads[i % count])
                assert found is not None
                obj, _, age, ttl, rid_, limit, remaining, reset = found  # type: ignore[misc]
                hit_block(obj.h2 or obj.h2_block(), rid_, age, ttl, limit, remaining, reset)

        return lane2

    def run(calls: int) -> None:
        for i in range(calls):
            reply = try_hit(b"GET", target, requests[i % count], HOST, client="127.0.0.1")
            if h2:
                block(reply, rid)  # type: ignore[arg-type]

    return run


def check(exchange: Exchange, case: str, keys: list[str]) -> None:
    """Each case is a fresh 200 hit (with X-RateLimit-* behind the gateway), not a miss or a 429."""
    for fields in request_fields(case, keys)[:2]:
        reply = exchange.try_hit(b"GET", TARGETS[case], fields, HOST, client="127.0.0.1")
        assert reply is not None, case
        assert reply.status == 200, (case, reply.status)
        names = [n for n, _ in reply.extra]
        assert b"cache-status" in names, names
        assert (b"x-ratelimit-limit" in names) == (case != "static"), names


def measure(exchange: Exchange, keys: list[str], *, rounds: int, calls: int, h2: bool,
            h1: bool = False, h2_lane: bool = False, remembered: bool = False) -> dict[str, float]:
    """Best µs per call per case; rounds alternate the cases so machine noise hits all of them."""
    runners = {case: make_runner(exchange, case, keys, h2=h2, h1=h1, h2_lane=h2_lane, remembered=remembered)
               for case in CASES}
    best = dict.fromkeys(CASES, float("inf"))
    gateway = exchange.gateway
    assert gateway is not None
    for _ in range(rounds):
        for case, run in runners.items():
            gateway.limiter = RateLimiter()  # calls / KEYS stays far below a bucket's burst
            gc.collect()
            t0 = time.perf_counter()
            run(calls)
            best[case] = min(best[case], (time.perf_counter() - t0) / calls * 1e6)
    assert exchange.counters.requests >= rounds * calls * len(CASES)
    return best


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


async def main_async(args: argparse.Namespace) -> None:
    keys = [f"fc_live_bench{c:02d}_{hashlib.sha256(b'%d' % c).hexdigest()[:24]}" for c in range(KEYS)]
    table = gateway_table([(f"bench{c:02d}", key) for c, key in enumerate(keys)])
    config = ProxyConfig(gateway=parse_gateway(table, source="micro_gateway"))
    async with trio.open_nursery() as nursery:
        exchange = Exchange(config, nursery)
        warm(exchange)
        for case in CASES:
            check(exchange, case, keys)
        if args.profile:
            gateway = exchange.gateway
            assert gateway is not None
            gateway.limiter = RateLimiter()
            run = make_runner(exchange, args.profile, keys, h2=args.h2)
            profiler = cProfile.Profile()
            profiler.runcall(run, args.calls)
            pstats.Stats(profiler).sort_stats("tottime").print_stats(args.top)
            return
        print(f"python {platform.python_version()} on {cpu_model()}, {platform.machine()}")
        print(f"Exchange.try_hit, best of {args.rounds} rounds of {args.calls:,} calls; {KEYS} API keys\n")
        print(f"{'case':<10}{'try_hit µs':>12}{'static/x':>10}{'+h2 µs':>10}{'static/x':>10}"
              f"{'h1 lane µs':>12}{'static/x':>10}{'h2 lane µs':>12}{'static/x':>10}{'h2 head µs':>12}{'static/x':>10}")
        plain = measure(exchange, keys, rounds=args.rounds, calls=args.calls, h2=False)
        h2 = measure(exchange, keys, rounds=args.rounds, calls=args.calls, h2=True)
        h1 = measure(exchange, keys, rounds=args.rounds, calls=args.calls, h2=False, h1=True)
        lane2 = measure(exchange, keys, rounds=args.rounds, calls=args.calls, h2=False, h2_lane=True)
        memo = measure(exchange, keys, rounds=args.rounds, calls=args.calls, h2=False, h2_lane=True, remembered=True)
        for case in CASES:
            print(f"{case:<10}{plain[case]:>12.2f}{plain['static'] / plain[case]:>10.2f}"
                  f"{h2[case]:>10.2f}{h2['static'] / h2[case]:>10.2f}"
                  f"{h1[case]:>12.2f}{h1['static'] / h1[case]:>10.2f}"
                  f"{lane2[case]:>12.2f}{lane2['static'] / lane2[case]:>10.2f}"
                  f"{memo[case]:>12.2f}{memo['static'] / memo[case]:>10.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7, help="rounds per case (best is kept)")
    parser.add_argument("--calls", type=int, default=50_000, help="try_hit calls per round and case")
    parser.add_argument("--profile", choices=CASES, help="cProfile one case instead of timing")
    parser.add_argument("--h2", action="store_true", help="with --profile: include the HTTP/2 header block")
    parser.add_argument("--top", type=int, default=25, help="with --profile: functions to print")
    args = parser.parse_args()
    trio.run(main_async, args)


if __name__ == "__main__":
    main()
