"""The gateway both hit-lane tests run under (test_edge_h1lane.py, test_edge_h2lane.py)."""

from __future__ import annotations

from typing import Any

NOW = 1_767_225_600  # the gateway clock the lane tests pin (epoch seconds)
PUBLIC = (b"cache-control", b"public, max-age=0, s-maxage=600")
SMALL_KEY = "fc_live_small_01234567890"  # the 100-per-minute tier


def lane_keys(label: str, count: int) -> list[str]:
    return [f"fc_live_{label}{n:02d}_0123456789abcdef" for n in range(count)]


def lane_gateway(label: str, keys: list[str]) -> dict[str, Any]:
    """A ``[gateway]`` table: /api/v3 public, /graphql for viewers, tiers of 100 and 1,000 a minute."""
    return {
        "anonymous_tier": "anonymous",
        "tiers": {"anonymous": 100, "small": 100, "starter": 1000},
        "routes": [{"prefix": "/api/v3", "public": True}, {"prefix": "/graphql", "min_role": "viewer"}],
        "keys": [*({"id": f"{label}{n}", "key": k, "role": "viewer", "tier": "starter"} for n, k in enumerate(keys)),
                 {"id": "small", "key": SMALL_KEY, "role": "viewer", "tier": "small"}],
    }
