"""What markets a venue lists: the discovery cache file, and each producer's catalog in Redis.

The file (``var/discovery/{venue}.json``) is written by ``producers/discovery.py`` (which fetches and parses
the venues' lists); the detector reads it to build its market graph and producers to know what they may
subscribe to, so nothing needs the network at test or replay time. At start each producer registers the
markets it can hold as ``md:markets:{venue}``: control requests and consumers check symbols against it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson
from redis.asyncio import Redis

from schemas.base import VENUES
from schemas.checks import market_problem
from schemas.streams import StreamNames


@dataclass(frozen=True, slots=True)
class MarketInfo:
    """One market; increments and minimums stay decimal text (exact rounding happens where it is used)."""

    venue: str
    symbol: str
    base: str
    quote: str
    venue_symbol: str
    price_increment: str
    size_increment: str
    min_size: str
    tradable: bool
    alias_of: str | None = None


def cache_path(var_dir: Path, venue: str) -> Path:
    return var_dir / "discovery" / f"{venue}.json"


def save_markets(path: Path, markets: list[MarketInfo]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(orjson.dumps([asdict(m) for m in markets], option=orjson.OPT_INDENT_2))
    tmp.replace(path)


def load_markets(path: Path) -> list[MarketInfo]:
    data: list[dict[str, Any]] = orjson.loads(path.read_bytes())
    return [MarketInfo(**item) for item in data]


# --- the catalog in Redis: what each running producer can hold ---------------------------------------

CATALOG_REFRESH_S = 10.0


async def register_markets(redis: Redis, names: StreamNames, venue: str, symbols: Iterable[str]) -> None:
    """Replace ``venue``'s market set (``md:markets:{venue}``) in one transaction: readers see the old set
    or the new one, never an empty key in between."""
    key = names.markets_key(venue)
    members = sorted(set(symbols))
    pipe = redis.pipeline(transaction=True)
    pipe.delete(key)
    if members:
        pipe.sadd(key, *members)
    await pipe.execute()


async def read_catalogs(redis: Redis, names: StreamNames, venues: Iterable[str] = VENUES) -> dict[str, frozenset[str]]:
    """Venue → its registered markets, for the venues whose producer has registered (others are absent)."""
    pipe = redis.pipeline(transaction=False)
    wanted = list(venues)
    for venue in wanted:
        pipe.smembers(names.markets_key(venue))
    out: dict[str, frozenset[str]] = {}
    for venue, members in zip(wanted, await pipe.execute(), strict=True):
        if members:
            out[venue] = frozenset(m.decode() if isinstance(m, bytes) else m for m in members)
    return out


class MarketCatalogs:
    """A consumer's cached view of every venue's catalog, re-read every ``refresh_s``.

    A producer registers its catalog before it publishes, so an entry naming a market the cache lacks is
    only re-checked against a fresh read when the entry may be newer than the cache (its stream id time
    within ``margin_ms`` of the last read, allowing for clock skew): a producer that just started is
    never rejected, and a flood of forged entries cannot make every check a Redis round trip.
    """

    def __init__(self, redis: Redis, names: StreamNames, *, refresh_s: float = CATALOG_REFRESH_S,
                 margin_ms: int = 2_000, clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000) -> None:
        self._redis = redis
        self._names = names
        self._refresh_ms = int(refresh_s * 1000)
        self._margin_ms = margin_ms
        self._clock_ms = clock_ms
        self.catalogs: dict[str, frozenset[str]] = {}
        self.read_at_ms: int | None = None

    async def read(self) -> dict[str, frozenset[str]]:
        self.read_at_ms = self._clock_ms()
        self.catalogs = await read_catalogs(self._redis, self._names)
        return self.catalogs

    async def current(self) -> dict[str, frozenset[str]]:
        if self.read_at_ms is None or self._clock_ms() - self.read_at_ms >= self._refresh_ms:
            await self.read()
        return self.catalogs

    async def problem(self, exchange: str, symbol: str, entry_ms: int) -> str | None:
        """Why (exchange, symbol) is not a registered market, or ``None``; ``entry_ms`` is when the entry
        was written (its stream id's time)."""
        problem = market_problem(exchange, symbol, await self.current())
        if problem is not None and exchange in VENUES and self.read_at_ms is not None \
                and entry_ms + self._margin_ms >= self.read_at_ms:
            problem = market_problem(exchange, symbol, await self.read())
        return problem


def venue_catalog(venue: str, configured: Iterable[str], var_dir: Path | None) -> list[str]:
    """What ``venue``'s producer may hold: the tradable markets of its discovery cache (when there is one)
    plus whatever the configuration names (configured symbols are trusted: the operator chose them)."""
    listed = set(configured)
    if var_dir is not None and (path := cache_path(var_dir, venue)).is_file():
        listed.update(m.symbol for m in load_markets(path) if m.tradable)
    return sorted(listed)
