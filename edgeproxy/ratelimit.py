"""GCRA rate limiting for the gateway: exact, one number per bucket. Pure.

GCRA keeps one number per bucket, the theoretical arrival time (TAT). With a limit of L per
minute the emission interval is T = 60 s / L and the burst is L: a request at time t is
admitted when max(TAT, t) + T - t <= L·T, and then TAT becomes max(TAT, t) + T. So a fresh
bucket admits exactly L requests at one instant and then one per T; like a token bucket of
capacity L refilled at L per minute, no 60-second window admits more than 2L - 1. The
arithmetic is exact: times are kept in units of 1/L ns, where T is the integer 60·10⁹ for
every L, so nothing is rounded and concurrency cannot over-admit (the state changes in one
synchronous call). A denial does not move the TAT. Buckets whose TAT has passed hold no
information and are swept once the table doubles. The state is per process: with
``--workers N`` each worker limits on its own.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

NS = 1_000_000_000
INTERVAL = 60 * NS  # GCRA emission interval in units of 1/L ns: 60 s / L, for every limit L
MIN_PER_MINUTE = 100  # seed 000: "Rate Limiting: Configurable per project (100-10,000 req/min)"
MAX_PER_MINUTE = 10_000
SWEEP_MIN_BUCKETS = 10_000  # below this many buckets no sweep runs (a sweep is O(buckets))


class RateLimit(NamedTuple):
    """One acquire's outcome (a NamedTuple: built per request, it costs 40% of a frozen dataclass)."""

    allowed: bool
    limit: int
    remaining: int
    reset_s: int  # epoch second at which the bucket is full again
    retry_after_s: int = 0  # when denied: seconds until one request is admitted

    @property
    def fields(self) -> tuple[tuple[bytes, bytes], ...]:
        """The seed's X-RateLimit-* fields (seed 001), plus Retry-After when denied (RFC 9110 §10.2.3)."""
        fields = (_limit_field(self.limit), (b"x-ratelimit-remaining", b"%d" % self.remaining),
                  _reset_field(self.reset_s))
        return fields if self.allowed else (*fields, (b"retry-after", b"%d" % self.retry_after_s))


@functools.lru_cache(maxsize=64)  # one per tier (the limit is the tier's requests per minute)
def _limit_field(limit: int) -> tuple[bytes, bytes]:
    return b"x-ratelimit-limit", b"%d" % limit


@functools.lru_cache(maxsize=256)  # epoch seconds: a bucket is full again at most 61 s after now
def _reset_field(reset_s: int) -> tuple[bytes, bytes]:
    return b"x-ratelimit-reset", b"%d" % reset_s


class _Bucket:
    __slots__ = ("per_minute", "reset_hi", "reset_s", "tat")

    def __init__(self, tat: int, per_minute: int) -> None:
        self.tat = tat  # theoretical arrival time, in units of 1/per_minute ns
        self.per_minute = per_minute
        # The last X-RateLimit-Reset: the epoch second ceil(tat / (per_minute·NS)), and that second
        # in the TAT's units. It stays right while the TAT (which only grows) is not past reset_hi:
        # one comparison instead of a division of ~75-bit integers on every request.
        self.reset_s = 0
        self.reset_hi = 0


def _scaled_tat(state: _Bucket, per_minute: int) -> int:
    """The bucket's TAT in units of 1/per_minute ns (its limit may have changed since; exact if not)."""
    return state.tat * per_minute // state.per_minute


class RateLimiter:
    """GCRA per bucket; see the module docstring for the arithmetic."""

    def __init__(self) -> None:
        self._buckets: dict[str, _Bucket] = {}
        self._sweep_at = SWEEP_MIN_BUCKETS

    def __len__(self) -> int:
        return len(self._buckets)

    def __repr__(self) -> str:
        return f"<RateLimiter [{len(self._buckets)} buckets]>"

    def acquire(self, bucket: str, per_minute: int, now_ns: int) -> RateLimit:
        """Admit one request to ``bucket`` at ``now_ns`` or say when one would be admitted."""
        taken = self.take(bucket, per_minute, now_ns)
        if taken is not None:
            return RateLimit(True, per_minute, taken[0], taken[1])
        # Denied: only a bucket whose TAT is ahead of now denies (a fresh one admits a burst).
        tat = _scaled_tat(self._buckets[bucket], per_minute)
        unit = per_minute * NS  # one second
        wait = tat + INTERVAL - per_minute * INTERVAL - now_ns * per_minute
        return RateLimit(False, per_minute, 0, -(-tat // unit), -(-wait // unit))

    def take(self, bucket: str, per_minute: int, now_ns: int) -> tuple[int, int] | None:
        """``acquire`` for the hit path: (remaining, reset_s) when admitted, else None and nothing
        changes (``acquire`` then says when). No RateLimit is built: that is a third of the cost."""
        t = now_ns * per_minute
        state = self._buckets.get(bucket)
        if state is None:
            tat = t
        elif state.per_minute == per_minute:
            tat = state.tat if state.tat > t else t
        else:  # the tier's limit changed (a reload): the TAT in the new units
            tat = max(_scaled_tat(state, per_minute), t)
        window = per_minute * INTERVAL  # the burst: per_minute intervals
        new_tat = tat + INTERVAL
        used = new_tat - t
        if used > window:
            return None
        if state is None:
            if len(self._buckets) >= self._sweep_at:
                self.sweep(now_ns)
            state = self._buckets[bucket] = _Bucket(new_tat, per_minute)
        else:
            if state.per_minute != per_minute:
                state.per_minute = per_minute
                state.reset_hi = 0  # in the old units
            state.tat = new_tat
        if new_tat > state.reset_hi:  # the TAT only grows: the reset second is right until it passes reset_hi
            second = per_minute * NS
            state.reset_s = -(-new_tat // second)
            state.reset_hi = state.reset_s * second
        return (window - used) // INTERVAL, state.reset_s

    def sweep(self, now_ns: int) -> None:
        """Forget buckets that are full again (their TAT has passed): they hold no information."""
        self._buckets = {k: b for k, b in self._buckets.items() if b.tat > now_ns * b.per_minute}
        self._sweep_at = max(SWEEP_MIN_BUCKETS, 2 * len(self._buckets))
