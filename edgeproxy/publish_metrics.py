"""Publish latency as this edge sees it: when a publish's purge arrived, and when the first fresh
answer after it left. Pure: times and purge sequence numbers come in as arguments.

Theory of operation. A publisher's purge may carry a ``PublishTag`` (its publish id and when
it saw the commit). ``PublishLog.purged`` notes, per publish id, when its first purge batch
arrived and what each batch covered (paths, surrogate keys, prefixes), with the purge
sequence number (``Exchange.purge_epoch``) it was applied at. ``served_fresh`` is told about
each 200 the edge stores from the origin while some publish still waits for its first fresh
answer — the miss and revalidation paths, never a cache hit. The first such answer for
something a publish covered, from an origin request that *started after* that purge, is the
publish's first fresh answer here: an answer to a request that was already in flight may
predate the publish (the exchange stores it stale), so the sequence number decides, not the
clock. After a soft purge under stale-while-revalidate, that answer is stored by the
background refresh, and the next request gets it.

Several workers (``--workers N``) each keep a log. Every worker receives every purge with the
arrival time the first worker stamped, and tells the others its first fresh answer
(``heard_fresh``), so their logs agree. ``merge_snapshots`` still joins them per publish id —
earliest arrival, earliest first fresh — and takes the largest count any worker has, never a
sum: each of them saw the same publishes.

The commit → first fresh histogram counts a publish once its first fresh answer is known. It
is a cumulative Prometheus histogram: the newest ``RECENT_PUBLISHES`` publishes are kept as
records (and merged per id), older ones are folded into ``retired`` counts that only grow.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from edgeproxy.purge import PurgeSpec

# Records kept per worker and sent over the worker bus for /.edge/stats (~80 bytes each, far
# under bus.MAX_LINE); a publish older than this is only in the histogram.
RECENT_PUBLISHES = 64
# Publishes still waiting for a first fresh answer, each holding what its purges covered (a big
# publish: thousands of paths); one nobody asks for is given up after this many newer ones.
MAX_PENDING = 16
# Commit → first fresh spans a build (seconds) and, for a page nobody reads, hours.
BUCKETS_S = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
RECENT_IN_STATS = 10  # publishes listed in /.edge/stats, newest first
HISTOGRAM = "edgeproxy_publish_commit_to_first_fresh_seconds"


@dataclass(slots=True)
class PublishTiming:
    """One publish as this edge saw it; times are epoch seconds."""

    id: str
    seen: float  # the publisher's clock: when it saw the commit
    received: float  # our clock: when the publish's first purge batch arrived
    fresh: float | None = None  # our clock: the first fresh 200 after it, if any yet


@dataclass(frozen=True, slots=True)
class _Covered:
    """What one purge batch of a publish covered, and the purge sequence number it was applied at."""

    epoch: int
    paths: frozenset[bytes]
    keys: frozenset[bytes]
    prefixes: tuple[bytes, ...]

    def covers(self, path: bytes, keys: tuple[bytes, ...], epoch: int) -> bool:
        """Would this purge have dropped an answer for ``path``/``keys`` fetched from ``epoch`` on?"""
        if epoch < self.epoch:
            return False  # the origin request started before this purge
        return path in self.paths or path.startswith(self.prefixes) or not self.keys.isdisjoint(keys)


@dataclass(slots=True)
class Histogram:
    """Observations per bucket of ``BUCKETS_S`` (not cumulative); the last slot is +Inf."""

    counts: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS_S) + 1))
    sum: float = 0.0
    count: int = 0

    def observe(self, value: float) -> None:
        slot = next((i for i, bound in enumerate(BUCKETS_S) if value <= bound), len(BUCKETS_S))
        self.counts[slot] += 1
        self.sum += value
        self.count += 1

    def cumulative(self) -> list[tuple[str, int]]:
        """``(le, count)`` pairs as Prometheus writes them, ``+Inf`` last."""
        out: list[tuple[str, int]] = []
        total = 0
        for bound, count in zip((*(f"{b:g}" for b in BUCKETS_S), "+Inf"), self.counts, strict=True):
            total += count
            out.append((bound, total))
        return out

    def to_wire(self) -> dict[str, Any]:
        return {"counts": list(self.counts), "sum": self.sum, "count": self.count}

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> Histogram:
        counts = [int(c) for c in data["counts"]]
        if len(counts) != len(BUCKETS_S) + 1:
            raise ValueError(f"a histogram has {len(BUCKETS_S) + 1} buckets, got {len(counts)}")
        return cls(counts, float(data["sum"]), int(data["count"]))


class PublishLog:
    """One worker's publishes: what their purges covered and when they first turned fresh."""

    def __init__(self) -> None:
        self.records: dict[str, PublishTiming] = {}  # the newest RECENT_PUBLISHES, oldest first
        self.pending: dict[str, list[_Covered]] = {}  # ids without a first fresh answer yet
        self.seen_total = 0  # distinct publish ids since start
        self.retired = Histogram()  # commit → first fresh of publishes no longer in ``records``

    def __repr__(self) -> str:
        return f"<PublishLog seen={self.seen_total} recent={len(self.records)} pending={len(self.pending)}>"

    def purged(self, spec: PurgeSpec, *, epoch: int, received: float) -> None:
        """A tagged purge batch was applied at purge sequence number ``epoch``."""
        tag = spec.publish
        assert tag is not None, "only a tagged purge belongs to a publish"
        record = self.records.get(tag.id)
        if record is None:
            self.seen_total += 1
            record = self.records[tag.id] = PublishTiming(tag.id, tag.seen, received)
            self.pending[tag.id] = []
            self._trim()
        else:  # another batch (or a retry) of the same publish
            record.received = min(record.received, received)
        covered = self.pending.get(tag.id)
        if covered is not None:  # None: its first fresh answer is known already
            covered.append(_Covered(epoch, frozenset(spec.paths), frozenset(spec.keys), spec.prefixes))

    def served_fresh(self, path: bytes, keys: tuple[bytes, ...], *, epoch: int, now: float) -> list[str]:
        """A 200 for ``path`` (tagged ``keys``) from an origin request started at sequence number
        ``epoch`` was stored at ``now``; returns the publishes for which it is the first fresh answer."""
        firsts = [ident for ident, covered in self.pending.items()
                  if any(c.covers(path, keys, epoch) for c in covered)]
        for ident in firsts:
            del self.pending[ident]
            self.records[ident].fresh = now
        return firsts

    def heard_fresh(self, ident: str, at: float) -> None:
        """Another worker served publish ``ident`` fresh at ``at``: the earliest answer counts."""
        record = self.records.get(ident)
        if record is None:
            return  # not (or no longer) a recent publish here
        self.pending.pop(ident, None)
        record.fresh = _earliest(record.fresh, at)

    def snapshot(self) -> dict[str, Any]:
        """JSON-ready state for the worker bus and ``merge_snapshots``."""
        return {"seen_total": self.seen_total, "records": [asdict(r) for r in self.records.values()],
                "retired": self.retired.to_wire()}

    def _trim(self) -> None:
        while len(self.records) > RECENT_PUBLISHES:
            oldest = self.records.pop(next(iter(self.records)))
            self.pending.pop(oldest.id, None)
            if oldest.fresh is not None:
                self.retired.observe(oldest.fresh - oldest.seen)
        while len(self.pending) > MAX_PENDING:
            del self.pending[next(iter(self.pending))]


def _earliest(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    return a if b is None else min(a, b)


def merge_snapshots(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Several workers' snapshots as one: per publish id the earliest arrival and first fresh; the
    count and retired histogram of the worker that has seen the most (a restarted one saw fewer)."""
    if not parts:
        return PublishLog().snapshot()
    by_id: dict[str, dict[str, Any]] = {}
    for part in parts:
        for record in part["records"]:
            merged = by_id.get(record["id"])
            if merged is None:
                by_id[record["id"]] = dict(record)
            else:
                merged["received"] = min(merged["received"], record["received"])
                merged["fresh"] = _earliest(merged["fresh"], record["fresh"])
    fullest = max(parts, key=lambda p: (p["seen_total"], p["retired"]["count"]))
    return {"seen_total": fullest["seen_total"],
            "records": sorted(by_id.values(), key=lambda r: (r["received"], r["id"])),
            "retired": fullest["retired"]}


def summarize(snapshot: dict[str, Any]) -> dict[str, Any]:
    """The ``publish`` part of ``/.edge/stats``: the last publish, the recent ones, the histogram."""
    histogram = Histogram.from_wire(snapshot["retired"])
    records = sorted(snapshot["records"], key=lambda r: (r["received"], r["id"]))
    for record in records:
        if record["fresh"] is not None:
            histogram.observe(record["fresh"] - record["seen"])
    recent = [_describe(r) for r in reversed(records[-RECENT_IN_STATS:])]
    return {"seen_total": snapshot["seen_total"], "last": recent[0] if recent else None, "recent": recent,
            "commit_to_first_fresh": {"buckets": dict(histogram.cumulative()), "sum": histogram.sum,
                                      "count": histogram.count}}


def _describe(record: dict[str, Any]) -> dict[str, Any]:
    seen, received, fresh = record["seen"], record["received"], record["fresh"]
    return {"id": record["id"], "commit_seen": seen, "purge_received": received, "first_fresh": fresh,
            "commit_to_purge_s": received - seen,
            "purge_to_first_fresh_s": None if fresh is None else fresh - received,
            "commit_to_first_fresh_s": None if fresh is None else fresh - seen}


_LAST = (  # (metric, field of _describe, help); a gauge without a value yet is left out
    ("edgeproxy_last_publish_commit_seen_timestamp_seconds", "commit_seen",
     "Last publish: when the publisher saw its commit (the publisher's clock)"),
    ("edgeproxy_last_publish_purge_received_timestamp_seconds", "purge_received",
     "Last publish: when its first purge reached this edge"),
    ("edgeproxy_last_publish_first_fresh_timestamp_seconds", "first_fresh",
     "Last publish: when this edge first served a fresh 200 for something it purged"),
    ("edgeproxy_last_publish_commit_to_purge_seconds", "commit_to_purge_s",
     "Last publish: commit seen to purge received (across machines, includes clock skew)"),
    ("edgeproxy_last_publish_purge_to_first_fresh_seconds", "purge_to_first_fresh_s",
     "Last publish: purge received to the first fresh 200 served"),
    ("edgeproxy_last_publish_commit_to_first_fresh_seconds", "commit_to_first_fresh_s",
     "Last publish: commit seen to the first fresh 200 served"),
)


def format_prometheus_lines(summary: dict[str, Any]) -> list[str]:
    """``summarize``'s result as Prometheus text lines."""
    lines = ["# HELP edgeproxy_publishes_seen_total Publishes whose purge reached this edge (distinct ids)",
             "# TYPE edgeproxy_publishes_seen_total counter",
             f"edgeproxy_publishes_seen_total {summary['seen_total']}",
             "# HELP edgeproxy_last_publish_info The last publish whose purge reached this edge",
             "# TYPE edgeproxy_last_publish_info gauge"]
    last = summary["last"]
    if last is not None:
        lines.append(f'edgeproxy_last_publish_info{{id="{_label(last["id"])}"}} 1')
    for metric, name, text in _LAST:
        lines += [f"# HELP {metric} {text}", f"# TYPE {metric} gauge"]
        if last is not None and last[name] is not None:
            lines.append(f"{metric} {last[name]:.6f}")
    histogram = summary["commit_to_first_fresh"]
    lines += [f"# HELP {HISTOGRAM} Commit seen to the first fresh 200 served here, per publish",
              f"# TYPE {HISTOGRAM} histogram"]
    lines += [f'{HISTOGRAM}_bucket{{le="{le}"}} {count}' for le, count in histogram["buckets"].items()]
    lines += [f"{HISTOGRAM}_sum {histogram['sum']:.6f}", f"{HISTOGRAM}_count {histogram['count']}"]
    return lines


def _label(value: str) -> str:
    """A Prometheus label value (exposition format: backslash, quote and newline escaped)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
