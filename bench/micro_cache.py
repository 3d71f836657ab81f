"""Micro-benchmark of edgeproxy.cache.CacheStore: LRU vs S3-FIFO, hit ratio and speed.

Standalone (no pytest, no network, no files): ``.venv/bin/python bench/micro_cache.py``.
It prints the machine, then two tables, in about 15-30 s on two cores:

1. Lookups per second on a hit (the hit path of the proxy), without Vary and with a Vary
   field whose matching variant is the second one scanned; best of several rounds.
2. Trace-driven hit ratio and throughput (lookup, and on a miss build an Entry and store it)
   for Zipf(alpha) popularity over ``--objects`` keys with log-normal sizes, alone and with a
   periodic crawler scan of one-hit-wonders mixed in. The cache holds 10% of the Zipf working
   set's bytes (the scan objects are extra). Both policies replay the same trace.

Hit ratios are hits per Zipf request: the scan requests (one-hit-wonders) miss under either
policy, so a ``zipf+scan`` row next to its ``zipf`` row shows how much of the hot set
survived the scans. ``req/s`` counts every request, scans included.
"""

from __future__ import annotations

import argparse
import gc
import platform
import random
import sys
import time
from collections.abc import Callable
from itertools import accumulate
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgeproxy.cache import CacheStore, Entry

POLICIES = ("lru", "s3fifo")
ALPHAS = (0.9, 1.0, 1.1)
CACHE_FRACTION = 0.10  # of the Zipf working set's bytes
SCAN_EVERY = 20_000  # requests between two crawler scans
SCAN_LENGTH = 5_000  # one-hit-wonders per scan
NO_VARY: Callable[[bytes], bytes] = {}.get  # type: ignore[assignment]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def object_sizes(count: int, rng: random.Random) -> list[int]:
    """Log-normal body sizes, median ~2.7 KB, capped at 256 KB (HTML pages and JSON documents)."""
    return [min(int(rng.lognormvariate(8.0, 1.2)), 256 * 1024) for _ in range(count)]


def zipf_trace(objects: int, alpha: float, requests: int, rng: random.Random) -> list[int]:
    cumulative = list(accumulate(1.0 / (rank + 1) ** alpha for rank in range(objects)))
    order = list(range(objects))
    rng.shuffle(order)  # popularity is not correlated with key order
    return [order[i] for i in rng.choices(range(objects), cum_weights=cumulative, k=requests)]


def with_scans(trace: list[int], first_scan_id: int) -> list[int]:
    """Insert a scan of SCAN_LENGTH never-repeated ids every SCAN_EVERY requests."""
    out: list[int] = []
    next_id = first_scan_id
    for start in range(0, len(trace), SCAN_EVERY):
        out += trace[start : start + SCAN_EVERY]
        out += range(next_id, next_id + SCAN_LENGTH)
        next_id += SCAN_LENGTH
    return out


def replay(eviction: str, max_bytes: int, trace: list[int], keys: list[bytes], paths: list[bytes],
           sizes: list[int]) -> tuple[int, float]:
    """Returns (hits, requests per second)."""
    store: CacheStore[int] = CacheStore(max_bytes, eviction=eviction)
    lookup, put = store.lookup, store.store
    gc.collect()
    t0 = time.perf_counter()
    for i in trace:
        if lookup(keys[i], NO_VARY) is None:
            put(Entry(key=keys[i], path=paths[i], value=i, size=sizes[i], surrogate_keys=(b"bench",)))
    elapsed = time.perf_counter() - t0
    stats = store.statistics()
    assert stats.bytes_used <= max_bytes
    return stats.hits, len(trace) / elapsed


def hit_lookups_per_s(*, vary: bool, rounds: int, lookups: int = 200_000) -> dict[str, float]:
    """Best lookups/s per policy; the policies' rounds alternate so machine noise hits both."""
    objects = 10_000
    field = b"accept-encoding"
    keys = [b"GET https://bench.example/posts/%06d" % i for i in range(objects)]
    stores: dict[str, CacheStore[int]] = {}
    for eviction in POLICIES:
        store: CacheStore[int] = CacheStore(1 << 34, eviction=eviction)
        for i, key in enumerate(keys):
            path = key[len(b"GET https://bench.example") :]
            if vary:  # two variants: the request matches the older one, scanned second
                store.store(Entry(key=key, path=path, value=i, size=2000, vary=(field,), vary_values=(b"gzip",)))
                store.store(Entry(key=key, path=path, value=i, size=2000, vary=(field,), vary_values=(b"br",)))
            else:
                store.store(Entry(key=key, path=path, value=i, size=2000))
        stores[eviction] = store
    getter: Callable[[bytes], bytes] = {field: b"gzip"}.get if vary else NO_VARY  # type: ignore[assignment]
    sample = [keys[i] for i in random.Random(5).choices(range(objects), k=lookups)]
    best = dict.fromkeys(POLICIES, 0.0)
    for _ in range(rounds):
        for eviction, store in stores.items():
            lookup = store.lookup
            t0 = time.perf_counter()
            for key in sample:
                lookup(key, getter)
            best[eviction] = max(best[eviction], lookups / (time.perf_counter() - t0))
    assert all(store.statistics().misses == 0 for store in stores.values())
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, default=20_000, help="distinct Zipf keys")
    parser.add_argument("--requests", type=int, default=300_000, help="Zipf requests per trace")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of the hit-lookup timing (best is kept)")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    started = time.perf_counter()
    print(f"python {platform.python_version()} on {cpu_model()}, {platform.machine()}")
    print(f"objects {args.objects}, zipf requests {args.requests}, cache = {CACHE_FRACTION:.0%} of the working set, "
          f"scans of {SCAN_LENGTH} one-hit-wonders every {SCAN_EVERY} requests\n")

    print(f"hit path: CacheStore.lookup on a hit (best of {args.rounds} rounds of 200k)")
    print(f"{'case':<34}{'lru/s':>12}{'s3fifo/s':>12}{'s3fifo/lru':>12}")
    for vary in (False, True):
        rates = hit_lookups_per_s(vary=vary, rounds=args.rounds)
        label = "Vary: accept-encoding, 2nd variant" if vary else "no Vary"
        print(f"{label:<34}{rates['lru']:>12,.0f}{rates['s3fifo']:>12,.0f}{rates['s3fifo'] / rates['lru']:>12.2f}")

    rng = random.Random(args.seed)
    scan_objects = SCAN_LENGTH * (args.requests // SCAN_EVERY + 1)
    total = args.objects + scan_objects
    sizes = object_sizes(total, rng)
    keys = [b"GET https://bench.example/p/%07d" % i for i in range(total)]
    paths = [key[len(b"GET https://bench.example") :] for key in keys]

    print("\ntrace replay: hit ratio and requests/s (lookup + store on miss)")
    header = (f"{'workload':<12}{'alpha':>6}{'cache MB':>10}{'lru hit':>9}{'s3 hit':>9}{'s3/lru':>8}"
              f"{'lru req/s':>12}{'s3 req/s':>12}{'s3/lru':>8}")
    print(header)
    for alpha in ALPHAS:
        zipf = zipf_trace(args.objects, alpha, args.requests, rng)
        working_set = sum(sizes[i] for i in set(zipf))
        max_bytes = int(working_set * CACHE_FRACTION)
        for name, trace in (("zipf", zipf), ("zipf+scan", with_scans(zipf, args.objects))):
            results = {p: replay(p, max_bytes, trace, keys, paths, sizes) for p in POLICIES}
            (lru_hits, lru_rate), (s3_hits, s3_rate) = results["lru"], results["s3fifo"]
            lru_hit, s3_hit = lru_hits / len(zipf), s3_hits / len(zipf)
            print(f"{name:<12}{alpha:>6.1f}{max_bytes / 1e6:>10.1f}{lru_hit:>9.1%}{s3_hit:>9.1%}"
                  f"{s3_hit / lru_hit:>8.2f}{lru_rate:>12,.0f}{s3_rate:>12,.0f}{s3_rate / lru_rate:>8.2f}")
    print(f"\n({time.perf_counter() - started:.1f} s)")


if __name__ == "__main__":
    main()
