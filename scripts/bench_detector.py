"""Detector cost per book update: mean and worst market, incremental vs a full rescan, measured in one run.

An update of market M re-evaluates only the triangles that touch M (the market index); a full rescan
evaluates every triangle. Graphs: a synthetic 500-currency venue and the real Coinbase and Kraken market
lists from ``../shared/fixtures``. Books are consistent L5 books around random fair values (no opportunity,
so the cost is the screening every update pays). Usage: ``python scripts/bench_detector.py`` (``make bench-detector``).
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from pathlib import Path

from common.config import DetectorSettings
from consumers.detector.engine import DetectorRules, TriangleDetector
from consumers.detector.evaluate import Book, top_of_book
from consumers.detector.graph import Market, enumerate_triangles, tradable_markets
from producers.discovery import parse_coinbase_products, parse_kraken_asset_pairs
from schemas import Snapshot

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"
NOW_MS = 1_767_225_600_000


def synthetic(currencies: int, rng: random.Random) -> list[Market]:
    names = [f"C{n}" for n in range(currencies)]
    anchors = ["USD", "USDT", "EUR", "BTC"]
    markets = [Market("synthetic", f"{c}-{a}", c, a, 1e-8, 0.0, 0.004) for c in names for a in anchors[:2]]
    markets += [Market("synthetic", f"{c}-{anchors[rng.randrange(2, 4)]}", c, "BTC", 1e-8, 0.0, 0.004)
                for c in names[: currencies // 2]]
    markets += [Market("synthetic", "BTC-USD", "BTC", "USD", 1e-8, 0.0, 0.004),
                Market("synthetic", "BTC-USDT", "BTC", "USDT", 1e-8, 0.0, 0.004),
                Market("synthetic", "USDT-USD", "USDT", "USD", 1e-8, 0.0, 0.004)]
    unique = {m.symbol: Market(m.venue, m.symbol, *m.symbol.split("-"), 1e-8, 0.0, 0.004) for m in markets}
    return list(unique.values())


def books_for(markets: list[Market], rng: random.Random) -> dict[str, Snapshot]:
    fair: dict[str, float] = {}
    for market in markets:
        for asset in (market.base, market.quote):
            fair.setdefault(asset, 10 ** rng.uniform(-2, 4))
    books = {}
    for market in markets:
        mid = fair[market.base] / fair[market.quote]
        bids = [(mid * (1 - 0.0005 * (i + 1)), 1.0, float(i + 1)) for i in range(5)]
        asks = [(mid * (1 + 0.0005 * (i + 1)), 1.0, float(i + 1)) for i in range(5)]
        books[market.symbol] = Snapshot(exchange=market.venue, symbol=market.symbol, ts_event=NOW_MS,
                                        ts_ingest=NOW_MS, bids=bids, asks=asks)
    return books


def measure(name: str, markets: list[Market], rng: random.Random, repeats: int) -> None:
    settings = DetectorSettings()
    rules = DetectorRules(0.0, settings.max_age_ms, settings.max_skew_ms, settings.start_notional)
    detector = TriangleDetector(enumerate_triangles(markets, settings.anchors), rules)
    books = books_for(markets, rng)
    per_market: dict[str, float] = {}
    clock = time.perf_counter
    for symbol in detector.symbols():
        samples = []
        for _ in range(repeats):  # the median of single updates: robust to a GC pause or a noisy neighbour
            started = clock()
            detector.evaluate([symbol], books, NOW_MS)
            samples.append(clock() - started)
        per_market[symbol] = statistics.median(samples)
    # the baseline: what a detector without the index and the screen does on every update, i.e. evaluate
    # every triangle at top of book
    levels: dict[str, Book] = {s: (b.bids, b.asks) for s, b in books.items()}
    started = time.perf_counter()
    for _ in range(repeats):
        for triangle in detector.triangles:
            top_of_book(triangle, levels)
    rescan = (time.perf_counter() - started) / repeats
    mean = statistics.mean(per_market.values())
    worst_symbol = max(per_market, key=per_market.__getitem__)
    print(f"  {name:<22} {len(markets):>5} markets {len(detector.triangles):>6} triangles   per update: mean "
          f"{mean * 1e6:>8.1f} µs, worst {per_market[worst_symbol] * 1e6:>9.1f} µs ({worst_symbol})   "
          f"full rescan {rescan * 1e3:>8.2f} ms   ratio {rescan / mean:>8.0f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    rng = random.Random(11)
    print("detector benchmark: cost of one book update (screen the triangles it touches, evaluate the survivors);")
    print("median of --repeats updates per market; baseline: every triangle evaluated at top of book")
    measure("synthetic-500", synthetic(500, rng), rng, args.repeats)
    if FIXTURES.is_dir():
        coinbase = tradable_markets(parse_coinbase_products((FIXTURES / "coinbase-products-2026.json").read_bytes()),
                                    0.012)
        kraken = tradable_markets(parse_kraken_asset_pairs((FIXTURES / "kraken-assetpairs-2021.json").read_bytes()),
                                  0.004)
        measure("coinbase-products-2026", coinbase, rng, args.repeats)
        measure("kraken-assetpairs-2021", kraken, rng, args.repeats)
    else:
        print(f"  (real market lists skipped: {FIXTURES} not found)")


if __name__ == "__main__":
    main()
