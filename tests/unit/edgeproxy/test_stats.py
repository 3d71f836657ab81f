from __future__ import annotations

from edgeproxy.stats import Counters, format_prometheus, merge_numbers


def test_merge_sums_numbers_and_keeps_labels() -> None:
    merged = merge_numbers([{"hits": 2, "eviction": "s3fifo", "ratio": 0.5},
                            {"hits": 3, "eviction": "s3fifo", "ratio": 0.25, "new": 1}])
    assert merged == {"hits": 5, "eviction": "s3fifo", "ratio": 0.75, "new": 1}
    assert merge_numbers([]) == {}


def test_prometheus_text_of_merged_counters() -> None:
    one, two = Counters(hits=1, connections_open=2), Counters(hits=4, connections_open=1)
    text = format_prometheus(merge_numbers([one.snapshot(), two.snapshot()]), {"objects": 3}).decode()
    assert "edgeproxy_hits_total 5" in text.splitlines()
    assert "edgeproxy_connections_open 3" in text.splitlines()
    assert "edgeproxy_cache_objects 3" in text.splitlines()
