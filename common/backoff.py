"""Capped exponential backoff with jitter, shared by every reconnect loop (venue sockets, Redis clients).

Jitter matters after a shared outage: when Redis restarts, every client of every process retries at
once; randomized delays spread the reconnect storm instead of repeating it in lockstep.
"""

from __future__ import annotations

import random
from collections.abc import Iterator


def backoff_delays(base_s: float, cap_s: float, rng: random.Random | None = None) -> Iterator[float]:
    """Exponential backoff with full jitter: the n-th delay is uniform in [base/2, min(cap, base·2ⁿ)]."""
    rng = rng or random.Random()
    attempt = 0
    while True:
        ceiling = min(cap_s, base_s * 2**attempt)
        yield rng.uniform(min(base_s / 2, ceiling), ceiling)
        attempt += 1
