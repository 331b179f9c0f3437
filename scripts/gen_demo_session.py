"""Generate the demo session: a deterministic multi-market recording in Coinbase's and Kraken's wire formats.

Fair USD values of BTC, ETH, SOL, USDT and EUR follow a seeded random walk; every market quotes its fair
cross rate with a small spread and ten levels per side. Every ``step_s`` each book is re-quoted and the change
is sent as the venue would: Coinbase ``l2_data`` updates (absolute sizes, ``"0"`` deletes, one
``sequence_num`` per connection); Kraken v2 ``book`` updates whose CRC-32 checksum covers the new top 10,
numbers written with the pair's exact precision. A few times a minute one market is dislocated for a few
seconds so that a triangle beats three taker fees (Coinbase 1.2 %/leg, Kraken 0.4 %/leg); the header lists
them under ``mispricings`` so the detector's tests can look for them.

No clock is read: timestamps start at ``--start-ms``. The same seed gives byte-identical files.
Usage: ``python scripts/gen_demo_session.py --out-dir producers/simulators/data/demo [--seconds 60] [--seed 7]``.
"""

from __future__ import annotations

import argparse
import random
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from producers.venues import kraken

START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
FAIR_USD = {"BTC": 60_000.0, "ETH": 3_000.0, "SOL": 150.0, "USDT": 1.0, "EUR": 1.08, "USD": 1.0}
LEVELS = 10
REQUOTE_PROBABILITY = 0.35
# symbol, price decimals, size decimals
MARKETS = {
    "coinbase": [("BTC-USD", 2, 8), ("ETH-USD", 2, 8), ("ETH-BTC", 5, 8), ("SOL-USD", 2, 6), ("SOL-BTC", 7, 6),
                 ("SOL-ETH", 6, 6), ("USDT-USD", 4, 2), ("BTC-USDT", 2, 8), ("ETH-USDT", 2, 8)],
    "kraken": [("BTC-USD", 1, 8), ("ETH-USD", 2, 8), ("ETH-BTC", 5, 8), ("SOL-USD", 2, 6), ("SOL-BTC", 7, 6),
               ("SOL-ETH", 6, 6), ("USDT-USD", 4, 2), ("BTC-USDT", 1, 8), ("ETH-USDT", 2, 8), ("BTC-EUR", 1, 8),
               ("ETH-EUR", 2, 8), ("EUR-USD", 5, 2)],
}
# a dislocation of the middle leg of USD -> BTC -> ETH -> USD makes buying ETH with BTC cheap
DISLOCATION = {"coinbase": ("ETH-BTC", -0.05), "kraken": ("ETH-BTC", -0.025)}


@dataclass
class Quote:
    symbol: str
    price_decimals: int
    size_decimals: int
    bids: dict[str, str]
    asks: dict[str, str]


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z"


def trim(text: str) -> str:
    """Coinbase writes decimals without trailing zeros."""
    return text.rstrip("0").rstrip(".") if "." in text else text


def quote_levels(
    mid: float, base_usd: float, quote: Quote, rng: random.Random
) -> tuple[dict[str, str], dict[str, str]]:
    """Ten levels a side around ``mid``; each level holds $2k-$20k worth of the base asset."""
    tick = 10.0 ** -quote.price_decimals
    half = max(tick, mid * 0.0001)
    step = max(tick, mid * 0.00005)
    bids, asks = {}, {}
    for level in range(LEVELS):
        for side, sign in ((bids, -1), (asks, 1)):
            price = round(mid + sign * (half + level * step), quote.price_decimals)
            size = max(10.0 ** -quote.size_decimals, rng.uniform(2_000, 20_000) / base_usd)
            side[f"{price:.{quote.price_decimals}f}"] = f"{size:.{quote.size_decimals}f}"
    return bids, asks


def diff(old: dict[str, str], new: dict[str, str]) -> list[tuple[str, str]]:
    changes = [(p, s) for p, s in new.items() if old.get(p) != s]
    changes += [(p, "0") for p in old if p not in new]
    return changes


class Session:
    """One venue's frames, as one client connection receives them."""

    def __init__(self, venue: str, seconds: int, seed: int, step_s: float, start_ms: int) -> None:
        self.venue, self.seconds, self.step_s, self.start_ms = venue, seconds, step_s, start_ms
        self.rng = random.Random(f"{venue}-{seed}")
        self.quotes = {s: Quote(s, p, q, {}, {}) for s, p, q in MARKETS[venue]}
        self.lines: list[bytes] = []
        self.sequence = 0
        self.mispricings: list[dict[str, Any]] = []

    def record(self, kind: str, ms: int, data: str) -> None:
        entry: dict[str, Any] = {"t": kind, "conn": f"{self.venue}.demo", "ts": ms / 1000, "data": data}
        self.lines.append(orjson.dumps(entry))

    def send_frame(self, ms: int, message: dict[str, Any] | str) -> None:
        if isinstance(message, dict) and self.venue == "coinbase":
            message = {"channel": message["channel"], "timestamp": iso(ms), "sequence_num": self.sequence,
                       "events": message["events"]}
            self.sequence += 1
        self.record("recv", ms, message if isinstance(message, str) else orjson.dumps(message).decode())

    def generate(self) -> list[bytes]:
        fair = dict(FAIR_USD)
        symbols = list(self.quotes)
        self.record("connect", self.start_ms, f"wss://demo.{self.venue}.invalid")
        for message in (kraken.subscribe_messages(symbols) if self.venue == "kraken" else [
                orjson.dumps({"type": "subscribe", "product_ids": symbols, "channel": c}).decode()
                for c in ("level2", "heartbeats")]):
            self.record("send", self.start_ms, message)
        if self.venue == "kraken":
            self.send_frame(self.start_ms, '{"channel":"status","type":"update","data":[{"api_version":"v2",'
                                           '"connection_id":1,"system":"online","version":"2.0.8"}]}')
            pairs = [{"symbol": kraken.v2_symbol(q.symbol), "price_precision": q.price_decimals,
                      "qty_precision": q.size_decimals, "status": "online"} for q in self.quotes.values()]
            self.send_frame(self.start_ms, orjson.dumps({"channel": "instrument", "type": "snapshot",
                                                         "data": {"assets": [], "pairs": pairs}}).decode())
        dislocated, dislocation = DISLOCATION[self.venue]
        next_dislocation_ms, dislocation_end_ms = self.start_ms + 8_000, 0
        steps = int(self.seconds / self.step_s)
        for step in range(steps + 1):
            ms = self.start_ms + int(step * self.step_s * 1000)
            for asset in ("BTC", "ETH", "SOL", "EUR"):
                fair[asset] *= 1 + self.rng.gauss(0, 0.0002)
            if ms >= next_dislocation_ms and not dislocation_end_ms:
                dislocation_end_ms = ms + 3_000
                self.mispricings.append({"market": dislocated, "start_ms": ms, "end_ms": dislocation_end_ms,
                                         "bps": dislocation * 10_000})
                next_dislocation_ms = ms + self.rng.randint(15_000, 25_000)
            edge = bool(self.mispricings) and ms in (self.mispricings[-1]["start_ms"], dislocation_end_ms)
            if dislocation_end_ms and ms >= dislocation_end_ms:
                dislocation_end_ms = 0
            for quote in self.quotes.values():
                # each book is re-quoted now and then (always at a dislocation's start and end); otherwise one
                # deep level changes size, so every book stays fresh (updated every step) while files stay small
                if step and not (quote.symbol == dislocated and edge) and self.rng.random() > REQUOTE_PROBABILITY:
                    self.touch(ms, quote, fair[quote.symbol.split("-")[0]])
                    continue
                base, quote_asset = quote.symbol.split("-")
                mid = fair[base] / fair[quote_asset]
                if quote.symbol == dislocated and dislocation_end_ms:
                    mid *= 1 + dislocation
                bids, asks = quote_levels(mid, fair[base], quote, self.rng)
                self.publish_book(ms, quote, bids, asks, snapshot=step == 0)
            if step % max(1, int(1 / self.step_s)) == 0:
                self.send_frame(ms, {"channel": "heartbeats", "events": [{"heartbeat_counter": step}]}
                                if self.venue == "coinbase" else '{"channel":"heartbeat"}')
        return self.lines

    def touch(self, ms: int, quote: Quote, base_usd: float) -> None:
        """Change the size of one of the deeper levels (a typical small book update)."""
        price = sorted(quote.bids, key=float, reverse=True)[self.rng.randint(3, LEVELS - 1)]
        bids = dict(quote.bids)
        size = max(10.0 ** -quote.size_decimals, self.rng.uniform(2_000, 20_000) / base_usd)
        bids[price] = f"{size:.{quote.size_decimals}f}"
        self.publish_book(ms, quote, bids, dict(quote.asks), snapshot=False)

    def publish_book(
        self, ms: int, quote: Quote, bids: dict[str, str], asks: dict[str, str], *, snapshot: bool
    ) -> None:
        bid_changes = list(bids.items()) if snapshot else diff(quote.bids, bids)
        ask_changes = list(asks.items()) if snapshot else diff(quote.asks, asks)
        quote.bids, quote.asks = bids, asks
        if self.venue == "coinbase":
            updates = [{"side": side, "event_time": iso(ms), "price_level": trim(p), "new_quantity": trim(s)}
                       for side, changes in (("bid", bid_changes), ("offer", ask_changes)) for p, s in changes]
            self.send_frame(ms, {"channel": "l2_data", "events": [
                {"type": "snapshot" if snapshot else "update", "product_id": quote.symbol, "updates": updates}]})
            return
        top_asks = sorted(asks.items(), key=lambda level: float(level[0]))[: kraken.CHECKSUM_LEVELS]
        top_bids = sorted(bids.items(), key=lambda level: -float(level[0]))[: kraken.CHECKSUM_LEVELS]
        crc = kraken.checksum_v2(top_asks, top_bids, quote.price_decimals, quote.size_decimals)

        def levels(changes: list[tuple[str, str]]) -> str:
            return ",".join(f'{{"price":{p},"qty":{s}}}' for p, s in changes)

        kind = "snapshot" if snapshot else "update"
        self.send_frame(ms, f'{{"channel":"book","type":"{kind}","data":[{{"symbol":"{kraken.v2_symbol(quote.symbol)}",'
                            f'"bids":[{levels(bid_changes)}],"asks":[{levels(ask_changes)}],"checksum":{crc},'
                            f'"timestamp":"{iso(ms)}"}}]}}')


def write_session(out_dir: Path, venue: str, seconds: int, seed: int, step_s: float, start_ms: int) -> Path:
    session = Session(venue, seconds, seed, step_s, start_ms)
    lines = session.generate()
    header = {"t": "header", "format": 2, "exchange": venue.upper(), "recorded": start_ms / 1000,
              "generator": "scripts/gen_demo_session.py", "seed": seed, "step_s": step_s,
              "mispricings": session.mispricings}
    if venue == "kraken":
        header["instruments"] = {kraken.v2_symbol(q.symbol): {"price_precision": q.price_decimals,
                                                               "qty_precision": q.size_decimals}
                                 for q in session.quotes.values()}
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{venue}-demo.ndjson"
    path.write_bytes(b"\n".join([orjson.dumps(header), *lines]) + b"\n")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out-dir", type=Path, required=True)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--step-s", type=float, default=1.0)
    parser.add_argument("--start-ms", type=int, default=START_MS)
    args = parser.parse_args()
    for venue in MARKETS:
        path = write_session(args.out_dir, venue, args.seconds, args.seed, args.step_s, args.start_ms)
        print(f"{path}: {path.stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
