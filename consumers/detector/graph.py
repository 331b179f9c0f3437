"""The market graph of one venue: tradable markets, the triangles among them, and market → triangles.

A triangle is a cycle of three conversions on one venue that starts and ends in an anchor asset
(USD, USDT, USDC, EUR, BTC by default). Each conversion is a leg: ``buy`` a market's base with its quote
(paying the ask) or ``sell`` the base for the quote (receiving the bid). Coinbase ``-USDC`` aliases of
``-USD`` books are dropped before enumeration: one book listed twice would make free "cycles".
Pure: built once from discovery data, then only read.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from common.markets import MarketInfo
from schemas.market import Side

DEFAULT_ANCHORS = ("USD", "USDT", "USDC", "EUR", "BTC")
_CANONICAL = re.compile(r"^[A-Z0-9]{1,20}-[A-Z0-9]{1,20}$")


@dataclass(frozen=True, slots=True)
class Market:
    venue: str
    symbol: str
    base: str
    quote: str
    size_increment: float
    min_size: float
    taker_fee: float


@dataclass(frozen=True, slots=True)
class Leg:
    """Convert ``source`` into ``target`` on ``market``: buy base with quote, or sell base for quote."""

    market: Market
    side: Side

    @property
    def source(self) -> str:
        return self.market.quote if self.side is Side.BUY else self.market.base

    @property
    def target(self) -> str:
        return self.market.base if self.side is Side.BUY else self.market.quote


@dataclass(frozen=True, slots=True)
class Triangle:
    venue: str
    legs: tuple[Leg, Leg, Leg]

    @property
    def start_asset(self) -> str:
        return self.legs[0].source

    @property
    def cycle_id(self) -> str:
        """``venue:BTC-USD:buy|ETH-BTC:buy|ETH-USD:sell``: the markets and directions, in order."""
        return f"{self.venue}:" + "|".join(f"{leg.market.symbol}:{leg.side.value}" for leg in self.legs)

    @property
    def symbols(self) -> tuple[str, str, str]:
        return (self.legs[0].market.symbol, self.legs[1].market.symbol, self.legs[2].market.symbol)


def tradable_markets(infos: Iterable[MarketInfo], taker_fee: float) -> list[Market]:
    """Markets a triangle may use: tradable, not an alias of another book, with a canonical name (Kraken's
    staking pairs such as ``ETH2.S/ETH`` have none and never reach the bus)."""
    return [
        Market(info.venue, info.symbol, info.base, info.quote, float(info.size_increment), float(info.min_size),
               taker_fee)
        for info in infos
        if info.tradable and info.alias_of is None and _CANONICAL.match(info.symbol)
    ]


def enumerate_triangles(markets: Sequence[Market], anchors: Sequence[str] = DEFAULT_ANCHORS) -> list[Triangle]:
    """Every three-leg cycle from an anchor back to it, both directions, each cycle once per direction.

    A cycle and direction reachable from several anchors is kept once, starting from the first anchor (in
    ``anchors`` order) that it passes through, so USD-priced opportunities are reported in USD.
    """
    edges: dict[str, list[Leg]] = defaultdict(list)
    for market in markets:
        edges[market.quote].append(Leg(market, Side.BUY))
        edges[market.base].append(Leg(market, Side.SELL))
    seen: set[tuple[tuple[str, str], ...]] = set()
    triangles: list[Triangle] = []
    for anchor in anchors:
        for first in edges.get(anchor, ()):
            for second in edges.get(first.target, ()):
                if second.target == anchor or second.market is first.market:
                    continue
                for third in edges.get(second.target, ()):
                    if third.target != anchor or third.market in (first.market, second.market):
                        continue
                    legs = (first, second, third)
                    key = _rotation_key(legs)
                    if key in seen:
                        continue
                    seen.add(key)
                    triangles.append(Triangle(first.market.venue, legs))
    return triangles


def _rotation_key(legs: tuple[Leg, Leg, Leg]) -> tuple[tuple[str, str], ...]:
    """The same cycle and direction, whatever leg it starts with."""
    steps = [(leg.market.symbol, leg.side.value) for leg in legs]
    return min(tuple(steps[i:] + steps[:i]) for i in range(3))


def index_by_market(triangles: Sequence[Triangle]) -> dict[str, list[int]]:
    """Market symbol → positions of the triangles that use it: an update re-evaluates only those."""
    index: dict[str, list[int]] = defaultdict(list)
    for position, triangle in enumerate(triangles):
        for symbol in set(triangle.symbols):
            index[symbol].append(position)
    return dict(index)
