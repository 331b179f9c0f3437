"""Book throughput on the shared recordings: L5 snapshots per second of book-update frames, per venue.

* ours: ``producers.feed.VenueFeed`` (parse, apply, checksum, top-5 with cumulative sizes);
* baseline, measured in the same run: orjson + a dict per side + ``sorted()`` for the top 5 after every
  frame, no checksum (what a notebook would do).

Only update frames are timed (the books are built from the snapshots first, untimed, in every repeat), so
the figure is the steady-state cost per frame. The ratio to the baseline is what to compare between runs;
the Coinbase books are ~46k levels deep, so a cost that grew with depth would show there.
Usage: ``python scripts/bench_books.py [--fixtures DIR] [--repeats R]`` (``make bench-books``).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from producers.feed import BookChanged, Venue, VenueFeed

DEFAULT_FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"
RECORDINGS = {
    Venue.COINBASE: ("coinbase-advanced-2026.ndjson", None),
    Venue.KRAKEN: ("kraken-v1-2021.ndjson", 1000),
}


def load_frames(path: Path) -> list[str]:
    with path.open("rb") as lines:
        return [record["data"] for record in map(orjson.loads, lines) if record["t"] == "recv"]


def is_snapshot(venue: Venue, frame: str) -> bool:
    return ('"type":"snapshot"' in frame and '"l2_data"' in frame) if venue is Venue.COINBASE else '"as":' in frame


def ours(venue: Venue, depth: int | None, frames: list[str]) -> float:
    feed = VenueFeed(venue, depth=depth)
    elapsed, published = 0.0, 0
    clock = time.perf_counter
    for frame in frames:
        if is_snapshot(venue, frame):
            feed.on_frame(frame)
            continue
        started = clock()
        outputs = feed.on_frame(frame)
        elapsed += clock() - started
        published += sum(1 for output in outputs if isinstance(output, BookChanged))
    return published / elapsed


def top5(side: dict[float, float], best_first_descending: bool) -> list[tuple[float, float, float]]:
    out, cumulative = [], 0.0
    for price in sorted(side, reverse=best_first_descending)[:5]:
        cumulative += side[price]
        out.append((price, side[price], cumulative))
    return out


def baseline_apply(books: dict[str, tuple[dict[float, float], dict[float, float]]], symbol: str,
                   bids: list[Any], asks: list[Any]) -> None:
    book_bids, book_asks = books.setdefault(symbol, ({}, {}))
    for side, levels in ((book_bids, bids), (book_asks, asks)):
        for price, size in levels:
            if float(size) == 0:
                side.pop(float(price), None)
            else:
                side[float(price)] = float(size)
    top5(book_bids, True)
    top5(book_asks, False)


def baseline(venue: Venue, frames: list[str]) -> float:
    books: dict[str, tuple[dict[float, float], dict[float, float]]] = {}
    elapsed, published = 0.0, 0
    clock = time.perf_counter
    for frame in frames:
        timed = not is_snapshot(venue, frame)
        started = clock()
        message = orjson.loads(frame)
        if venue is Venue.COINBASE:
            if isinstance(message, dict) and message.get("channel") == "l2_data":
                for event in message["events"]:
                    bids = [(u["price_level"], u["new_quantity"]) for u in event["updates"] if u["side"] == "bid"]
                    asks = [(u["price_level"], u["new_quantity"]) for u in event["updates"] if u["side"] == "offer"]
                    baseline_apply(books, event["product_id"], bids, asks)
                    published += timed
        elif isinstance(message, list) and message[-2].startswith("book"):
            bids, asks = [], []
            for payload in message[1:-2]:
                asks += [level[:2] for level in payload.get("as", payload.get("a", []))]
                bids += [level[:2] for level in payload.get("bs", payload.get("b", []))]
            baseline_apply(books, message[-1], bids, asks)
            published += timed
        if timed:
            elapsed += clock() - started
    return published / elapsed


def median_of(repeats: int, run: Callable[..., float], *args: Any) -> float:
    return statistics.median(run(*args) for _ in range(repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fixtures", type=Path, default=DEFAULT_FIXTURES)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if not args.fixtures.is_dir():
        raise SystemExit(f"recordings not found in {args.fixtures} (expected ../shared/fixtures beside the repo)")
    print(f"book benchmark: L5 snapshots/s from book-update frames, median of {args.repeats} runs")
    for venue, (name, depth) in RECORDINGS.items():
        frames = load_frames(args.fixtures / name)
        rate = median_of(args.repeats, ours, venue, depth, frames)
        base = median_of(args.repeats, baseline, venue, frames)
        print(f"  {venue.value:<9} ours {rate:>10,.0f}/s   dict+sorted baseline {base:>10,.0f}/s   "
              f"ratio {rate / base:>6.1f}   ({name})")


if __name__ == "__main__":
    main()
