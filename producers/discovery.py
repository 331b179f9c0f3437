"""Market discovery: which markets a venue lists, with their increments and minimum sizes.

Pure parsers for Coinbase ``/api/v3/brokerage/market/products`` and Kraken ``/0/public/AssetPairs``; the
result goes to the shared file cache (``common/markets.py``) so replay, tests and the detector never need the
network.
Coinbase ``-USDC`` products that are aliases of their ``-USD`` twins keep ``alias_of`` so a currency graph
can merge them (otherwise it finds free USD→USDC→USD "triangles" over one book twice).
"""

from __future__ import annotations

from pathlib import Path

import aiohttp
import orjson

from common.markets import MarketInfo, cache_path, save_markets
from producers.feed import Venue
from producers.venues import kraken
from producers.venues.events import VenueProtocolError
from schemas.market import canonical_symbol

DISCOVERY_URLS = {
    Venue.COINBASE: "https://api.coinbase.com/api/v3/brokerage/market/products",
    Venue.KRAKEN: "https://api.kraken.com/0/public/AssetPairs",
}


def parse_coinbase_products(body: bytes) -> list[MarketInfo]:
    try:
        products = orjson.loads(body)["products"]
        return [
            MarketInfo(
                "coinbase", canonical_symbol(p["base_currency_id"], p["quote_currency_id"]), p["base_currency_id"],
                p["quote_currency_id"], p["product_id"], p["price_increment"], p["base_increment"], p["base_min_size"],
                p["status"] == "online" and not p["trading_disabled"] and not p.get("cancel_only", False),
                p.get("alias") or None,
            )
            for p in products
            if p.get("product_type", "SPOT") == "SPOT"
        ]
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise VenueProtocolError(f"coinbase products: {exc!r}") from exc


def _decimal_step(decimals: int) -> str:
    return "1" if decimals == 0 else "0." + "0" * (decimals - 1) + "1"


def parse_kraken_asset_pairs(body: bytes) -> list[MarketInfo]:
    """Pairs with a ``wsname`` (the 11 dark-pool ``.d`` pairs have none and cannot be streamed)."""
    try:
        message = orjson.loads(body)
        if message.get("error"):
            raise VenueProtocolError(f"kraken AssetPairs error: {message['error']}")
        markets = []
        for pair in message["result"].values():
            wsname = pair.get("wsname")
            if not wsname:
                continue
            symbol = kraken.canonical(wsname)
            base, quote = symbol.split("-")
            markets.append(MarketInfo(
                "kraken", symbol, base, quote, wsname, _decimal_step(int(pair["pair_decimals"])),
                _decimal_step(int(pair["lot_decimals"])), str(pair.get("ordermin", "0")),
                pair.get("status", "online") == "online",
            ))
        return markets
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise VenueProtocolError(f"kraken AssetPairs: {exc!r}") from exc


PARSERS = {Venue.COINBASE: parse_coinbase_products, Venue.KRAKEN: parse_kraken_asset_pairs}


async def fetch_markets(venue: Venue, var_dir: Path, *, url: str | None = None) -> list[MarketInfo]:
    """Fetch the venue's list (the only network call here), cache it, return it."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        async with session.get(url or DISCOVERY_URLS[venue]) as response:
            if response.status != 200:
                raise VenueProtocolError(f"{venue.value} discovery: HTTP {response.status}")
            body = await response.read()
    markets = PARSERS[venue](body)
    save_markets(cache_path(var_dir, venue.value), markets)
    return markets
