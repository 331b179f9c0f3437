"""Discovery on the recorded product lists: counts, increments, aliases, and the file cache."""

from __future__ import annotations

from pathlib import Path

from common.markets import load_markets, save_markets
from producers.discovery import parse_coinbase_products, parse_kraken_asset_pairs


def test_coinbase_products_keep_increments_and_mark_usdc_aliases(fixtures_dir: Path) -> None:
    markets = parse_coinbase_products((fixtures_dir / "coinbase-products-2026.json").read_bytes())
    assert len(markets) == 920
    by_symbol = {m.symbol: m for m in markets}
    btc = by_symbol["BTC-USD"]
    assert (btc.price_increment, btc.size_increment, btc.min_size, btc.tradable) == ("0.01", "0.00000001",
                                                                                    "0.00000001", True)
    assert by_symbol["BTC-USDC"].alias_of == "BTC-USD"
    assert sum(1 for m in markets if m.alias_of) == 400
    assert sum(1 for m in markets if m.tradable) < 920  # delisted and disabled products are not tradable


def test_kraken_pairs_use_wsname_with_btc_for_xbt_and_skip_dark_pools(fixtures_dir: Path) -> None:
    markets = parse_kraken_asset_pairs((fixtures_dir / "kraken-assetpairs-2021.json").read_bytes())
    assert len(markets) == 304 - 11
    by_symbol = {m.symbol: m for m in markets}
    btc_usd = by_symbol["BTC-USD"]
    assert btc_usd.venue_symbol == "XBT/USD"
    assert (btc_usd.base, btc_usd.quote) == ("BTC", "USD")
    assert btc_usd.price_increment == "0.1"  # pair_decimals 1


def test_cache_round_trips(tmp_path: Path, fixtures_dir: Path) -> None:
    markets = parse_kraken_asset_pairs((fixtures_dir / "kraken-assetpairs-2021.json").read_bytes())
    path = tmp_path / "discovery" / "kraken.json"
    save_markets(path, markets)
    assert load_markets(path) == markets
