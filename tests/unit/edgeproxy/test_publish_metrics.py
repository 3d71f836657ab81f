"""Publish latency bookkeeping at the edge (``publish_metrics.py``), without sockets or clocks."""

from __future__ import annotations

import json
from typing import Any

import pytest

from edgeproxy.publish_metrics import (
    BUCKETS_S,
    HISTOGRAM,
    MAX_PENDING,
    RECENT_PUBLISHES,
    Histogram,
    PublishLog,
    format_prometheus_lines,
    merge_snapshots,
    summarize,
)
from edgeproxy.purge import PublishTag, PurgeSpec
from edgeproxy.stats import Counters, format_json, format_prometheus

SEEN = 1_767_225_600.0  # the publisher saw the commit here (epoch seconds)


def tagged(ident: str, *, seen: float = SEEN, paths: tuple[bytes, ...] = (), keys: tuple[bytes, ...] = (),
           prefixes: tuple[bytes, ...] = ()) -> PurgeSpec:
    return PurgeSpec(paths=paths, keys=keys, prefixes=prefixes, publish=PublishTag(id=ident, seen=seen))


def metric_values(lines: list[str]) -> dict[str, str]:
    """Sample lines as ``{name{labels}: value}``."""
    return dict(line.rsplit(" ", 1) for line in lines if not line.startswith("#"))


def test_first_fresh_is_the_first_stored_200_for_a_covered_path_after_the_purge() -> None:
    """Only an answer the purge covered, from an origin request started after it, counts, and only once."""
    log = PublishLog()
    log.purged(tagged("pub_1", paths=(b"/a/",)), epoch=3, received=SEEN + 2)
    assert log.served_fresh(b"/other/", (), epoch=3, now=SEEN + 3) == []  # not covered
    assert log.served_fresh(b"/a/", (), epoch=2, now=SEEN + 3) == []  # in flight before the purge
    assert log.served_fresh(b"/a/", (), epoch=3, now=SEEN + 4) == ["pub_1"]
    assert log.served_fresh(b"/a/", (), epoch=4, now=SEEN + 5) == []  # already fresh
    assert not log.pending
    last = summarize(log.snapshot())["last"]
    assert last == {"id": "pub_1", "commit_seen": SEEN, "purge_received": SEEN + 2, "first_fresh": SEEN + 4,
                    "commit_to_purge_s": 2.0, "purge_to_first_fresh_s": 2.0, "commit_to_first_fresh_s": 4.0}


@pytest.mark.parametrize(("path", "keys", "covered"), [
    (b"/api/v3/contents", (b"api:contents", b"api:x"), True),  # by surrogate key
    (b"/blog/b/", (), True),  # by prefix
    (b"/blogs/", (), False),
    (b"/api/v3/tags", (b"api:tags",), False),
])
def test_keys_and_prefixes_cover_like_the_purge_does(path: bytes, keys: tuple[bytes, ...], covered: bool) -> None:
    """Coverage mirrors what ``apply_purge`` drops: the path, any surrogate key, a path prefix."""
    log = PublishLog()
    log.purged(tagged("pub_1", keys=(b"api:contents",), prefixes=(b"/blog/",)), epoch=1, received=SEEN)
    assert log.served_fresh(path, keys, epoch=1, now=SEEN + 1) == (["pub_1"] if covered else [])


def test_batches_of_one_publish_are_one_publish() -> None:
    """A publish sends paths and keys in several batches (and retries): one id, the first arrival,
    and each batch covers from its own purge on."""
    log = PublishLog()
    log.purged(tagged("pub_1", paths=(b"/a/",)), epoch=1, received=SEEN + 2)
    log.purged(tagged("pub_1", keys=(b"api:x",)), epoch=2, received=SEEN + 3)
    log.purged(tagged("pub_1", keys=(b"api:x",)), epoch=3, received=SEEN + 1.5)  # a bus relay stamped earlier
    assert log.seen_total == 1
    assert log.records["pub_1"].received == SEEN + 1.5
    assert log.served_fresh(b"/api/v3/x", (b"api:x",), epoch=1, now=SEEN + 4) == []  # before the key batch
    assert log.served_fresh(b"/api/v3/x", (b"api:x",), epoch=2, now=SEEN + 5) == ["pub_1"]
    log.purged(tagged("pub_1", paths=(b"/late/",)), epoch=4, received=SEEN + 6)  # after its first fresh
    assert not log.pending
    assert log.records["pub_1"].fresh == SEEN + 5


def test_one_answer_can_be_the_first_fresh_of_several_publishes() -> None:
    log = PublishLog()
    log.purged(tagged("pub_1", paths=(b"/a/",)), epoch=1, received=SEEN + 1)
    log.purged(tagged("pub_2", seen=SEEN + 1, paths=(b"/a/",)), epoch=2, received=SEEN + 2)
    assert log.served_fresh(b"/a/", (), epoch=1, now=SEEN + 3) == ["pub_1"]  # pub_2's purge came later
    assert log.served_fresh(b"/a/", (), epoch=2, now=SEEN + 4) == ["pub_2"]


def test_another_workers_earlier_answer_wins() -> None:
    """``heard_fresh``: the earliest first fresh counts, and this worker stops waiting for its own."""
    log = PublishLog()
    log.purged(tagged("pub_1", paths=(b"/a/",)), epoch=1, received=SEEN + 1)
    log.heard_fresh("pub_1", SEEN + 3)
    assert not log.pending
    log.heard_fresh("pub_1", SEEN + 4)  # later: ignored
    log.heard_fresh("pub_unknown", SEEN + 2)  # not a publish here: ignored
    assert log.served_fresh(b"/a/", (), epoch=1, now=SEEN + 2.5) == []
    assert log.records["pub_1"].fresh == SEEN + 3
    log.heard_fresh("pub_1", SEEN + 2)
    assert log.records["pub_1"].fresh == SEEN + 2


def test_a_publish_nobody_reads_is_given_up_after_max_pending_newer_ones() -> None:
    log = PublishLog()
    for n in range(MAX_PENDING + 1):
        log.purged(tagged(f"pub_{n}", paths=(b"/p%d/" % n,)), epoch=n + 1, received=SEEN + n)
    assert len(log.pending) == MAX_PENDING
    assert log.served_fresh(b"/p0/", (), epoch=99, now=SEEN + 99) == []  # given up
    assert log.served_fresh(b"/p1/", (), epoch=99, now=SEEN + 99) == ["pub_1"]


def test_histogram_keeps_counting_past_the_recent_window() -> None:
    """Publishes leaving the window move into the retired counts: the histogram never goes down."""
    log = PublishLog()
    counts = []
    for n in range(RECENT_PUBLISHES + 5):
        log.purged(tagged(f"pub_{n}", seen=SEEN + n, paths=(b"/a/",)), epoch=n + 1, received=SEEN + n + 0.5)
        log.served_fresh(b"/a/", (), epoch=n + 1, now=SEEN + n + 0.75)
        counts.append(summarize(log.snapshot())["commit_to_first_fresh"]["count"])
    assert counts == list(range(1, RECENT_PUBLISHES + 6))
    assert len(log.records) == RECENT_PUBLISHES
    assert log.retired.count == 5
    assert log.seen_total == RECENT_PUBLISHES + 5
    histogram = summarize(log.snapshot())["commit_to_first_fresh"]
    assert histogram["buckets"]["0.5"] == 0
    assert histogram["buckets"]["1"] == histogram["buckets"]["+Inf"] == RECENT_PUBLISHES + 5
    assert histogram["sum"] == pytest.approx(0.75 * (RECENT_PUBLISHES + 5))


def test_a_publish_never_served_fresh_leaves_the_window_uncounted() -> None:
    log = PublishLog()
    for n in range(RECENT_PUBLISHES + 1):
        log.purged(tagged(f"pub_{n}", paths=(b"/gone/",)), epoch=n + 1, received=SEEN + n)
    assert "pub_0" not in log.records
    assert log.retired.count == 0
    assert summarize(log.snapshot())["commit_to_first_fresh"]["count"] == 0


def test_histogram_buckets_are_cumulative_and_inf_counts_everything() -> None:
    histogram = Histogram()
    for value in (0.05, 0.1, 0.3, 7.0, 5000.0, -1.0):  # -1: the publisher's clock is ahead of ours
        histogram.observe(value)
    buckets = dict(histogram.cumulative())
    assert list(buckets) == [f"{b:g}" for b in BUCKETS_S] + ["+Inf"]
    assert (buckets["0.1"], buckets["0.5"], buckets["10"], buckets["3600"], buckets["+Inf"]) == (3, 4, 5, 5, 6)
    assert Histogram.from_wire(json.loads(json.dumps(histogram.to_wire()))) == histogram
    with pytest.raises(ValueError, match="buckets"):
        Histogram.from_wire({"counts": [1], "sum": 1.0, "count": 1})


def _worker(fresh_at: float | None, *, received: float = SEEN + 1) -> dict[str, Any]:
    log = PublishLog()
    log.purged(tagged("pub_1", paths=(b"/a/",)), epoch=1, received=received)
    if fresh_at is not None:
        log.served_fresh(b"/a/", (), epoch=1, now=fresh_at)
    return json.loads(json.dumps(log.snapshot()))  # what the worker bus carries


def test_merge_takes_the_earliest_first_fresh_per_publish_not_a_sum() -> None:
    """Two workers saw the same publish; one answered fresh first: one publish, that answer's time."""
    merged = summarize(merge_snapshots([_worker(SEEN + 5), _worker(SEEN + 3), _worker(None, received=SEEN + 0.5)]))
    assert merged["seen_total"] == 1
    assert [r["id"] for r in merged["recent"]] == ["pub_1"]
    assert merged["last"]["purge_received"] == SEEN + 0.5
    assert merged["last"]["first_fresh"] == SEEN + 3
    assert merged["commit_to_first_fresh"]["count"] == 1
    assert merged["commit_to_first_fresh"]["sum"] == 3.0
    assert merge_snapshots([_worker(SEEN + 3)]) == _worker(SEEN + 3)


def test_merge_keeps_the_fullest_workers_count_and_retired_histogram() -> None:
    """A restarted worker saw fewer publishes: the merged count and retired part are the fullest worker's."""
    old = PublishLog()
    for n in range(RECENT_PUBLISHES + 2):
        old.purged(tagged(f"pub_{n}", paths=(b"/a/",)), epoch=n + 1, received=SEEN + n)
        old.served_fresh(b"/a/", (), epoch=n + 1, now=SEEN + n + 1)
    new = PublishLog()
    last = f"pub_{RECENT_PUBLISHES + 1}"
    new.purged(tagged(last, paths=(b"/a/",)), epoch=1, received=SEEN + RECENT_PUBLISHES + 1)
    merged = summarize(merge_snapshots([new.snapshot(), old.snapshot()]))
    assert merged["seen_total"] == RECENT_PUBLISHES + 2
    assert merged["commit_to_first_fresh"]["count"] == RECENT_PUBLISHES + 2
    assert merged["last"]["id"] == last
    assert summarize(merge_snapshots([])) == summarize(PublishLog().snapshot())


def test_metric_text_before_and_after_the_first_fresh_answer() -> None:
    """Gauges without a value yet are left out (HELP/TYPE stay); the id is a label of an info gauge."""
    empty = format_prometheus_lines(summarize(PublishLog().snapshot()))
    assert metric_values(empty) == {
        "edgeproxy_publishes_seen_total": "0", **{f'{HISTOGRAM}_bucket{{le="{b:g}"}}': "0" for b in BUCKETS_S},
        f'{HISTOGRAM}_bucket{{le="+Inf"}}': "0", f"{HISTOGRAM}_sum": "0.000000", f"{HISTOGRAM}_count": "0"}
    assert f"# TYPE {HISTOGRAM} histogram" in empty
    assert "# TYPE edgeproxy_last_publish_commit_to_first_fresh_seconds gauge" in empty

    log = PublishLog()
    log.purged(tagged("pub_1", paths=(b"/a/",)), epoch=1, received=SEEN + 1.5)
    waiting = metric_values(format_prometheus_lines(summarize(log.snapshot())))
    assert waiting['edgeproxy_last_publish_info{id="pub_1"}'] == "1"
    assert waiting["edgeproxy_last_publish_commit_to_purge_seconds"] == "1.500000"
    assert "edgeproxy_last_publish_purge_to_first_fresh_seconds" not in waiting
    log.served_fresh(b"/a/", (), epoch=1, now=SEEN + 1.75)
    values = metric_values(format_prometheus_lines(summarize(log.snapshot())))
    assert values["edgeproxy_publishes_seen_total"] == "1"
    assert values["edgeproxy_last_publish_purge_received_timestamp_seconds"] == f"{SEEN + 1.5:.6f}"
    assert values["edgeproxy_last_publish_first_fresh_timestamp_seconds"] == f"{SEEN + 1.75:.6f}"
    assert values["edgeproxy_last_publish_purge_to_first_fresh_seconds"] == "0.250000"
    assert values["edgeproxy_last_publish_commit_to_first_fresh_seconds"] == "1.750000"
    assert (values[f'{HISTOGRAM}_bucket{{le="1"}}'], values[f'{HISTOGRAM}_bucket{{le="2.5"}}']) == ("0", "1")
    assert values[f"{HISTOGRAM}_count"] == "1"


def test_label_values_are_escaped() -> None:
    """Ids are checked at the purge endpoint; the text format stays valid even without that check."""
    snapshot = {"seen_total": 1, "retired": Histogram().to_wire(),
                "records": [{"id": 'a"b\\c\nd', "seen": SEEN, "received": SEEN, "fresh": None}]}
    assert 'edgeproxy_last_publish_info{id="a\\"b\\\\c\\nd"} 1' in format_prometheus_lines(summarize(snapshot))


def test_stats_renderings_carry_the_publish_part() -> None:
    log = PublishLog()
    log.purged(tagged("pub_1", paths=(b"/a/",)), epoch=1, received=SEEN + 1)
    summary = summarize(log.snapshot())
    document = json.loads(format_json(Counters().snapshot(), {}, None, summary))
    assert document["publish"]["last"]["id"] == "pub_1"
    assert "publish" not in json.loads(format_json(Counters().snapshot(), {}))
    text = format_prometheus(Counters().snapshot(), {}, None, summary).decode()
    assert "edgeproxy_publishes_seen_total 1" in text.splitlines()
    assert "edgeproxy_publishes_seen_total" not in format_prometheus(Counters().snapshot(), {}).decode()


def test_repr_shows_state() -> None:
    log = PublishLog()
    log.purged(tagged("pub_1", paths=(b"/a/",)), epoch=1, received=SEEN)
    assert repr(log) == "<PublishLog seen=1 recent=1 pending=1>"
