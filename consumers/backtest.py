"""Backtest: captures → parsers → books → detector → paper broker, in one process, without Redis.

Records of all captures are merged by time, so venues interleave as they did. Each valid book change is
evaluated at its recorded receive time; each opportunity is paper-filled leg by leg at ``leg_latency_ms``
intervals against the books as they stood then. Output is deterministic (sorted by detection time, then id)
so two runs on the same input are byte-identical.
"""

from __future__ import annotations

import heapq
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson

from common.config import DetectorSettings
from common.markets import MarketInfo, load_markets
from consumers.detector.engine import DetectorRules, TriangleDetector
from consumers.detector.evaluate import Book
from consumers.detector.graph import Market, Triangle, enumerate_triangles, tradable_markets
from consumers.paper import PaperSimulation
from producers.capture import read_capture
from producers.feed import BookChanged, Venue, VenueFeed
from producers.replay import header_precisions, subscribed_depth, venue_of
from schemas import Opportunity, Snapshot


@dataclass
class Capture:
    path: Path
    venue: Venue
    feed: VenueFeed
    records: Iterator[tuple[float, str, str | None]]


def open_capture(path: Path) -> tuple[Venue, VenueFeed, list[tuple[float, str, str | None]], set[str]]:
    header: dict[str, object] = {}
    records: list[tuple[float, str, str | None]] = []
    depth: int | None = None
    for record in read_capture(path):
        if record.kind == "header":
            header = record.raw
        elif record.kind == "send" and record.data and depth is None:
            depth = subscribed_depth(record.data)
        elif record.kind in ("recv", "connect"):
            records.append((record.ts or 0.0, record.kind, record.data))
    venue = venue_of(header)
    feed = VenueFeed(venue, depth=depth or (10 if venue is Venue.KRAKEN else None),
                     precisions=header_precisions(header))
    symbols: set[str] = set()
    probe = VenueFeed(venue, depth=feed.depth, precisions=dict(feed.precisions))
    for _, kind, data in records:
        if kind == "recv" and data and ("snapshot" in data or '"as"' in data):
            symbols.update(o.symbol for o in probe.on_frame(data) if isinstance(o, BookChanged))
    return venue, feed, records, symbols


def markets_for(venue: Venue, symbols: set[str], fee: float, infos: list[MarketInfo] | None) -> list[Market]:
    """Discovery data when given (increments, minimums), else the traded symbols with 1e-8 increments."""
    if infos is not None:
        return [m for m in tradable_markets(infos, fee) if m.symbol in symbols]
    markets = []
    for symbol in sorted(symbols):
        base, quote = symbol.split("-")
        markets.append(Market(venue.value, symbol, base, quote, 1e-8, 0.0, fee))
    return markets


def run_backtest(
    captures: list[Path], settings: DetectorSettings, *, discovery: dict[str, Path] | None = None,
    progress: Callable[[float], None] | None = None,
) -> list[Opportunity]:
    rules = DetectorRules(settings.min_roi, settings.max_age_ms, settings.max_skew_ms, settings.start_notional)
    streams = []
    detectors: dict[Venue, TriangleDetector] = {}
    triangles_by_id: dict[str, Triangle] = {}
    feeds: dict[int, VenueFeed] = {}
    venues: dict[int, Venue] = {}
    total = 0
    for number, path in enumerate(captures):
        venue, feed, records, symbols = open_capture(path)
        infos = load_markets(discovery[venue.value]) if discovery and venue.value in discovery else None
        markets = markets_for(venue, symbols, settings.taker_fees.get(venue.value, 0.0), infos)
        detector = detectors.get(venue)
        if detector is None:
            detector = detectors[venue] = TriangleDetector(enumerate_triangles(markets, settings.anchors), rules)
            triangles_by_id.update((t.cycle_id, t) for t in detector.triangles)
        feeds[number], venues[number] = feed, venue
        streams.append([(ts, number, kind, data) for ts, kind, data in records])
        total += len(records)
    snapshots: dict[Venue, dict[str, Snapshot]] = {venue: {} for venue in detectors}
    found: dict[str, Opportunity] = {}
    pending: list[tuple[Venue, PaperSimulation]] = []
    for done, (ts, number, kind, data) in enumerate(heapq.merge(*streams, key=lambda item: (item[0], item[1]))):
        now_ms = int(ts * 1000)
        venue = venues[number]
        _advance(pending, snapshots, now_ms, found)
        if kind == "connect":
            feeds[number] = VenueFeed(venue, depth=feeds[number].depth, precisions=feeds[number].precisions)
            continue
        for output in feeds[number].on_frame(data or ""):
            if not isinstance(output, BookChanged):
                continue
            snapshots[venue][output.symbol] = Snapshot(
                exchange=venue.value, symbol=output.symbol, ts_event=output.ts_event_ms or now_ms,
                ts_ingest=now_ms, bids=output.bids, asks=output.asks, venue_seq=output.venue_seq,
                book_seq=feeds[number].counters.published,
            )
            for opportunity in detectors[venue].evaluate([output.symbol], snapshots[venue], now_ms):
                if opportunity.id not in found:
                    found[opportunity.id] = opportunity
                    triangle = triangles_by_id[opportunity.cycle_id]
                    pending.append((venue, PaperSimulation.start(opportunity, triangle, now_ms,
                                                                 settings.leg_latency_ms)))
        if progress is not None and done % 5000 == 0:
            progress(done / max(total, 1))
    _advance(pending, snapshots, 2**62, found)
    if progress is not None:
        progress(1.0)
    return sorted(found.values(), key=lambda o: (o.ts_detect, o.id))


def _advance(pending: list[tuple[Venue, PaperSimulation]], snapshots: dict[Venue, dict[str, Snapshot]],
             now_ms: int, found: dict[str, Opportunity]) -> None:
    """Execute every paper leg that is due by ``now_ms`` against the books as they are now."""
    still: list[tuple[Venue, PaperSimulation]] = []
    for venue, sim in pending:
        while not sim.done and sim.due_ms <= now_ms:
            books: dict[str, Book] = {s: (snap.bids, snap.asks) for s, snap in snapshots[venue].items()}
            sim.step(books, min(now_ms, sim.due_ms))
        if sim.done:
            found[sim.opportunity.id] = sim.opportunity.model_copy(update={"sim_id": sim.sim_id, "fill": sim.trace()})
        else:
            still.append((venue, sim))
    pending[:] = still


def write_ndjson(opportunities: list[Opportunity], out: Path) -> None:
    with out.open("wb") as file:
        for opportunity in opportunities:
            file.write(orjson.dumps(opportunity.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS) + b"\n")


def progress_bar(fraction: float) -> None:
    width = 30
    filled = int(fraction * width)
    sys.stderr.write(f"\rbacktest [{'#' * filled}{'.' * (width - filled)}] {fraction:6.1%}")
    if fraction >= 1.0:
        sys.stderr.write("\n")
    sys.stderr.flush()
