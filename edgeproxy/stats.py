"""Counters and their two renderings: JSON (``/.edge/stats``) and Prometheus text (``/.edge/metrics``)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from edgeproxy import publish_metrics


@dataclass(slots=True)
class Counters:
    requests: int = 0
    hits: int = 0
    misses: int = 0
    stale_served: int = 0
    stale_if_error: int = 0
    revalidations: int = 0
    revalidated_unchanged: int = 0
    collapsed: int = 0
    passes: int = 0
    purges: int = 0
    purged_objects: int = 0
    origin_requests: int = 0
    origin_errors: int = 0
    client_errors: int = 0
    connections_open: int = 0
    connections_total: int = 0
    streams_total: int = 0
    bytes_sent: int = 0

    def snapshot(self) -> dict[str, int]:
        return asdict(self)


_HELP = {
    "requests": "Requests answered",
    "hits": "Answers served fresh from the cache",
    "misses": "Answers fetched from the origin",
    "stale_served": "Stale answers served while revalidating (RFC 5861 stale-while-revalidate)",
    "stale_if_error": "Stale answers served because the origin failed (RFC 5861 stale-if-error)",
    "revalidations": "Conditional requests sent to the origin",
    "revalidated_unchanged": "Revalidations answered 304 Not Modified",
    "collapsed": "Requests that waited for another request's origin fetch",
    "passes": "Requests forwarded without the cache",
    "purges": "Purge requests",
    "purged_objects": "Objects removed or marked stale by purges",
    "origin_requests": "Requests sent to the origin",
    "origin_errors": "Origin requests that failed",
    "client_errors": "Malformed client requests",
    "connections_total": "Client connections accepted",
    "streams_total": "HTTP/2 streams opened",
    "bytes_sent": "Response bytes written to clients",
}
_GAUGES = {"connections_open": "Client connections open now"}
# CacheStatistics fields that only grow; the others (objects, bytes, queue sizes) are gauges.
_CACHE_COUNTERS = frozenset({"hits", "misses", "stored", "refused", "evictions", "purged"})


def merge_numbers(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Several workers' numbers as one: numbers summed, anything else taken from the first."""
    merged: dict[str, Any] = dict(parts[0]) if parts else {}
    for part in parts[1:]:
        for key, value in part.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                merged[key] = merged.get(key, 0) + value
            else:
                merged.setdefault(key, value)
    return merged


def format_json(counters: dict[str, int], cache: dict[str, Any], gateway: dict[str, int] | None = None,
                publish: dict[str, Any] | None = None) -> bytes:
    """``publish`` is ``publish_metrics.summarize``'s result."""
    data: dict[str, Any] = {"counters": counters, "cache": cache}
    if gateway is not None:
        data["gateway"] = gateway
    if publish is not None:
        data["publish"] = publish
    return json.dumps(data, sort_keys=True).encode()


def format_prometheus(counters: dict[str, int], cache: dict[str, Any],
                      gateway: dict[str, int] | None = None, publish: dict[str, Any] | None = None) -> bytes:
    lines: list[str] = []
    for name, value in sorted((gateway or {}).items()):  # buckets is a gauge, the rest only grow
        metric = f"edgeproxy_gateway_{name}" + ("" if name == "buckets" else "_total")
        lines += [f"# TYPE {metric} {'gauge' if name == 'buckets' else 'counter'}", f"{metric} {value}"]
    values = counters
    for name, text in _HELP.items():
        lines += [f"# HELP edgeproxy_{name}_total {text}", f"# TYPE edgeproxy_{name}_total counter",
                  f"edgeproxy_{name}_total {values[name]}"]
    for name, text in _GAUGES.items():
        lines += [f"# HELP edgeproxy_{name} {text}", f"# TYPE edgeproxy_{name} gauge",
                  f"edgeproxy_{name} {values[name]}"]
    for name, value in sorted(cache.items()):
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            continue  # e.g. the eviction policy's name
        if name in _CACHE_COUNTERS:  # Prometheus naming: a counter ends in _total
            lines += [f"# TYPE edgeproxy_cache_{name}_total counter", f"edgeproxy_cache_{name}_total {value}"]
        else:
            lines += [f"# TYPE edgeproxy_cache_{name} gauge", f"edgeproxy_cache_{name} {value}"]
    if publish is not None:
        lines += publish_metrics.format_prometheus_lines(publish)
    return ("\n".join(lines) + "\n").encode()
