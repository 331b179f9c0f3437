"""A tiny built-in feed of synthetic snapshots, so ``make demo`` shows data before the real producers exist.

It is clearly labelled (exchange ``demo``) and deterministic: a seeded random walk of three books that form
one triangle (BTC-USD, ETH-USD, ETH-BTC). The producer issue replaces it with fake venues replaying captures.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable

from common.bus import Publisher
from schemas import Health, Snapshot
from schemas.health import Channel, FeedStatus
from schemas.market import Level

DEMO_EXCHANGE = "demo"
DEMO_MIDS = {"BTC-USD": 60_000.0, "ETH-USD": 3_000.0, "ETH-BTC": 0.05}
DEPTH = 5


def demo_levels(mid: float, spread_bps: float, rng: random.Random) -> tuple[list[Level], list[Level]]:
    """Five bid and ask levels around ``mid``, each ``[price, size, cumulative]``, best first."""
    half = mid * spread_bps / 20_000
    step = mid * 1e-4
    bids: list[Level] = []
    asks: list[Level] = []
    bid_total = ask_total = 0.0
    for level in range(DEPTH):
        bid_size = round(rng.uniform(0.1, 2.0), 4)
        ask_size = round(rng.uniform(0.1, 2.0), 4)
        bid_total = round(bid_total + bid_size, 4)
        ask_total = round(ask_total + ask_size, 4)
        bids.append((round(mid - half - level * step, 8), bid_size, bid_total))
        asks.append((round(mid + half + level * step, 8), ask_size, ask_total))
    return bids, asks


class DemoFeed:
    """Publishes ``rate_hz`` snapshots per second in total, and a health record every second."""

    def __init__(
        self, publisher: Publisher, *, rate_hz: float = 30.0, seed: int = 7,
        clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    ) -> None:
        self._publisher = publisher
        self._interval_s = 1 / rate_hz
        self._rng = random.Random(seed)
        self._mids = dict(DEMO_MIDS)
        self._book_seq = dict.fromkeys(DEMO_MIDS, 0)
        self._clock_ms = clock_ms

    def next_snapshot(self) -> Snapshot:
        symbol = self._rng.choice(list(self._mids))
        self._mids[symbol] *= 1 + self._rng.gauss(0, 2e-4)
        self._book_seq[symbol] += 1
        bids, asks = demo_levels(self._mids[symbol], spread_bps=2.0, rng=self._rng)
        now = self._clock_ms()
        return Snapshot(
            exchange=DEMO_EXCHANGE, symbol=symbol, ts_event=now, ts_ingest=now, bids=bids, asks=asks,
            latency_ms={"venue_to_ingest": 0.0}, book_seq=self._book_seq[symbol],
        )

    def health(self) -> Health:
        now = self._clock_ms()
        return Health(
            exchange=DEMO_EXCHANGE, channel=Channel.WS, status=FeedStatus.UP, ts=now, last_msg_ms=now,
            symbols=sorted(self._mids), detail="synthetic demo feed (replaced by real producers)",
        )

    async def run(self, stop: asyncio.Event) -> None:
        next_health = 0.0
        while not stop.is_set():
            await self._publisher.publish(self.next_snapshot())
            if time.monotonic() >= next_health:
                await self._publisher.publish(self.health())
                next_health = time.monotonic() + 1.0
            try:
                async with asyncio.timeout(self._interval_s):
                    await stop.wait()
            except TimeoutError:
                pass
