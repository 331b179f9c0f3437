"""The peer side of ``make bench-books``: cryptofeed 2.4.1's own book handlers on the shared recordings.

Runs only in the separate peer virtualenv (``.venv-peer``, made by ``scripts/bench_books.py``), never in the
project's: cryptofeed is not a dependency of triarb.

A live cryptofeed connection awaits ``feed.message_handler(raw_text, conn, receive_time)`` for every frame
(``ConnectionHandler._handler``); that handler parses the text itself (yapic.json, ``parse_float=Decimal``) and
dispatches to ``Kraken._book`` / ``Coinbase._pair_level2_snapshot`` / ``_pair_level2_update``. Here ONE feed
object is built per venue and mode and gets every recorded frame of the venue, in recorded order, through that
same entry point (the recorded ``ts`` as the receive time), pass after pass; each pass's snapshot frames
rebuild the books as a resubscribe would. Only book-update frames are timed; everything else (snapshots,
subscription status, heartbeats, trades, tickers) goes through untimed. The L2_BOOK callback is a no-op
coroutine that only counts its calls, which proves every timed update reached it. Symbol tables come from the
recorded REST responses; cryptofeed's REST reader is replaced by one that refuses, so nothing goes out.

Modes: ``noop`` on both venues, ``checksum`` (``checksum_validation=True``) on Kraken (Coinbase has no
checksum), ``noop_asks_loaded`` on Coinbase (see :func:`with_coinbase_asks`).
Output: with ``--repeats N``, N passes back to back. With ``--paced``, one pass per line read on stdin, each
answered by one JSON line, so the caller can interleave its own passes (stdin EOF ends it). Either way the
last line is one JSON object: per venue and mode the median rate, the per-pass rates and the checks.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import sys
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

from cryptofeed.defines import L2_BOOK
from cryptofeed.exceptions import BadChecksum
from cryptofeed.exchange import Exchange
from cryptofeed.exchanges import Coinbase, Kraken
from cryptofeed.symbols import Symbols

# venue -> (feed class, recording, recorded REST symbol list, feed options equivalent to ours)
VENUES: dict[str, tuple[type, str, str, dict[str, Any]]] = {
    # max_depth=0 keeps the whole book, as ours does (a Coinbase snapshot is the entire book)
    "coinbase": (Coinbase, "coinbase-advanced-2026.ndjson", "coinbase-products-2026.json", {"max_depth": 0}),
    # the recording subscribed book depth 1000 and ours runs with depth=1000
    "kraken": (Kraken, "kraken-v1-2021.ndjson", "kraken-assetpairs-2021.json", {"max_depth": 1000}),
}
MODES = {"coinbase": ("noop", "noop_asks_loaded"), "kraken": ("noop", "checksum")}
Frame = tuple[str, float, str]  # raw text, recorded receive time, kind


class RecordedConnection:
    """Stands in for cryptofeed's AsyncConnection; the book handlers read at most ``uuid`` from it."""

    uuid = "recording"


def refuse_network(*_args: Any, **_kwargs: Any) -> None:
    raise RuntimeError("cryptofeed tried a REST call; its symbol tables should have come from the fixtures")


def frame_kind(venue: str, text: str) -> str:
    """``snapshot``, ``update`` (a book update: the only timed kind) or ``other``; bench_books.py's rule."""
    message = json.loads(text)
    if venue == "coinbase":
        if isinstance(message, dict) and message.get("channel") == "l2_data":
            return "snapshot" if any(event.get("type") == "snapshot" for event in message["events"]) else "update"
        return "other"
    if isinstance(message, list) and str(message[-2]).startswith("book"):
        return "snapshot" if any("as" in payload for payload in message[1:-2]) else "update"
    return "other"


def load_frames(venue: str, path: Path) -> list[Frame]:
    frames = []
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            record = json.loads(line)
            if record["t"] == "recv":
                frames.append((record["data"], record["ts"], frame_kind(venue, record["data"])))
    return frames


def with_coinbase_asks(frames: list[Frame]) -> list[Frame]:
    """cryptofeed 2.4.1's Coinbase snapshot keeps only levels whose side is "ask", but Advanced Trade says
    "offer", so its books start with no asks (updates do add them). This copy renames the side in the untimed
    snapshot frames only, so the timed updates work on a full ask side, as ours do."""
    return [(text.replace('"side":"offer"', '"side":"ask"') if kind == "snapshot" else text, ts, kind)
            for text, ts, kind in frames]


class Replay:
    """One feed object fed the whole recording once per pass; keeps the per-pass figures."""

    def __init__(self, venue: str, mode: str, frames: list[Frame]) -> None:
        feed_class, _, _, options = VENUES[venue]
        self.frames = with_coinbase_asks(frames) if mode == "noop_asks_loaded" else frames
        self.update_frames = sum(1 for _, _, kind in self.frames if kind == "update")
        self.calls = 0
        self.feed = feed_class(callbacks={L2_BOOK: self.on_book}, checksum_validation=mode == "checksum", **options)
        self.rates: list[float] = []
        self.update_callbacks: list[int] = []
        self.checksum_failures: list[int] = []
        self.untimed_errors = 0

    async def on_book(self, book: Any, receipt_timestamp: float) -> None:
        self.calls += 1

    async def run_pass(self) -> float:
        handle, conn, clock = self.feed.message_handler, RecordedConnection(), time.perf_counter
        elapsed, timed_calls, failures = 0.0, 0, 0
        for text, receipt_ts, kind in self.frames:
            if kind != "update":
                try:
                    await handle(text, conn, receipt_ts)
                except Exception:  # a live cryptofeed logs it and reconnects; here it is counted and reported
                    self.untimed_errors += 1
                continue
            before = self.calls
            started = clock()
            try:
                await handle(text, conn, receipt_ts)
            except BadChecksum:  # raised before the callback; the live handler would reconnect
                failures += 1
            elapsed += clock() - started
            timed_calls += self.calls - before
        self.rates.append(timed_calls / elapsed)
        self.update_callbacks.append(timed_calls)
        self.checksum_failures.append(failures)
        return self.rates[-1]

    def summary(self) -> dict[str, Any]:
        return {
            "rate": statistics.median(self.rates),
            "rates": self.rates,
            "update_frames": self.update_frames,
            "update_callbacks_per_pass": sorted(set(self.update_callbacks)),
            "checksum_failures_per_pass": sorted(set(self.checksum_failures)),
            "untimed_errors": self.untimed_errors,
            "final_books": self.final_books(),
        }

    def final_books(self) -> dict[str, list[Any]]:
        """Best bid, best ask and level counts per book after the last pass: proof the peer built real books."""
        books = {}
        for symbol, order_book in self.feed._l2_book.items():
            bids, asks = order_book.book.bids, order_book.book.asks
            books[str(symbol)] = [str(bids.index(0)[0]) if len(bids) else None,
                                  str(asks.index(0)[0]) if len(asks) else None, len(bids), len(asks)]
        return books


async def run(fixtures: Path, repeats: int, paced: bool) -> dict[str, Any]:
    replays: dict[str, dict[str, Replay]] = {}
    for venue, (feed_class, recording, symbol_file, _) in VENUES.items():
        symbols, info = feed_class._parse_symbol_data(json.loads((fixtures / symbol_file).read_text("utf-8")))
        Symbols.set(feed_class.id, symbols, info)
        frames = load_frames(venue, fixtures / recording)
        replays[venue] = {mode: Replay(venue, mode, frames) for mode in MODES[venue]}
    passes = 0
    while True:
        if (paced and not sys.stdin.readline()) or (not paced and passes == repeats):
            break
        rates = {venue: {mode: await replay.run_pass() for mode, replay in modes.items()}
                 for venue, modes in replays.items()}
        passes += 1
        if paced:
            print(json.dumps({"pass": passes, **rates}), flush=True)
    if not passes:
        raise SystemExit("no pass was requested")
    return {venue: {mode: replay.summary() for mode, replay in modes.items()} for venue, modes in replays.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fixtures", type=Path, required=True)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--paced", action="store_true", help="one pass per line on stdin (bench_books.py uses it)")
    args = parser.parse_args()
    # cryptofeed warns once per frame of a channel it does not handle (Coinbase ticker, candles, heartbeats)
    logging.getLogger("feedhandler").setLevel(logging.ERROR)
    Exchange.http_sync.read = refuse_network
    figures = asyncio.run(run(args.fixtures, args.repeats, args.paced))
    print(json.dumps({"peer": "cryptofeed", "version": version("cryptofeed"), "python": sys.version.split()[0],
                      **figures}))


if __name__ == "__main__":
    main()
