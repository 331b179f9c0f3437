"""The demo's venues: local servers that the real producers connect to, as they would to Coinbase/Kraken.

If the bundled generated session (``producers/simulators/data/demo/*.ndjson``, made by ``scripts/gen_demo_session.py``)
is present, each venue replays it in a loop at recorded speed; otherwise a :class:`FakeVenue` random walk
serves a small set of markets that form triangles.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from producers.feed import Venue
from producers.simulators.fakevenue import FakeVenue, Market
from producers.simulators.replayvenue import ReplayVenue

DEMO_DIR = Path(__file__).resolve().parent / "data" / "demo"
RANDOM_WALK_MARKETS = {
    Venue.COINBASE: [("BTC-USD", 60_000.0, 2, 8), ("ETH-USD", 3_000.0, 2, 8), ("ETH-BTC", 0.05, 5, 8)],
    Venue.KRAKEN: [("BTC-USD", 60_000.0, 1, 8), ("ETH-USD", 3_000.0, 2, 8), ("ETH-BTC", 0.05, 5, 8)],
}


@dataclass
class DemoVenue:
    venue: Venue
    url: str
    symbols: list[str]
    depth: int
    server: FakeVenue | ReplayVenue
    quote_interval_ms: int
    """how often the venue re-quotes every book: legs are this old just before each requote"""

    async def stop(self) -> None:
        await self.server.stop()


async def start_demo_venue(venue: Venue, demo_dir: Path = DEMO_DIR, *, host: str = "127.0.0.1",
                           port: int = 0) -> DemoVenue:
    session = demo_dir / f"{venue.value}-demo.ndjson"
    if session.is_file():
        replay = ReplayVenue(session, speed=1.0, loop=True)
        url = await replay.start(host, port)
        step_s = replay.header.get("step_s")
        interval_ms = int(float(step_s) * 1000) if isinstance(step_s, int | float) else 1_000
        return DemoVenue(venue, url, replay.book_symbols(), replay.depth or 10, replay, interval_ms)
    markets = [Market(symbol, mid, price_decimals, size_decimals)
               for symbol, mid, price_decimals, size_decimals in RANDOM_WALK_MARKETS[venue]]
    seed = 1 if venue is Venue.COINBASE else 2  # two venues, two different random walks
    fake = FakeVenue(venue, markets, seed=seed, tick_interval_s=0.05, heartbeat_interval_s=1.0)
    url = await fake.start(host, port)
    return DemoVenue(venue, url, [m.symbol for m in markets], 10, fake, 50)
