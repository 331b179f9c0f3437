"""``triarb backtest``: captures → parsers → books → detector → paper broker, in one process, without Redis.

The offline composition of the parts ``triarb up`` composes live, with the same code at every step, so a
backtest reports what the live stack would have reported on the same frames:

- **Books**: each capture's frames go through :class:`VenueFeed`, one feed per connection, rebuilt at each
  ``connect`` record as the producer rebuilds its books on a reconnect.
- **Versions**: one :class:`BookVersions` per venue (the producer's own numbering) numbers the snapshots as a
  producer that started at the beginning of the captures (``book_seq`` +1 per snapshot of a book, across
  reconnects and rotated files). A live detector that evaluates every version of ``triarb replay FILE`` reports
  the same opportunity ids (``tests/integration/test_backtest_equals_live.py``); one that conflates under load
  skips some. The replay venue serves a capture as one connection, so for captures with reconnects or Coinbase
  sequence gaps the backtest follows the recording producer, not the replay.
- **Markets**: the venue's list (increments, minimum sizes) from ``--markets FILE``, else the capture header's
  ``markets``, else Kraken ``instruments`` precisions; only failing all three does it assume 1e-8 increments
  and no minimum, and it says so on stderr (see :func:`backtest_markets`).

Records of all captures are merged by time, so venues interleave as they did. Each valid book change is
evaluated at its recorded receive time; each opportunity is paper-filled leg by leg at ``leg_latency_ms``
intervals against the books as they stood then. Output is deterministic (sorted by detection time, then id)
so two runs on the same input are byte-identical.
"""

from __future__ import annotations

import contextlib
import heapq
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

from common.config import DetectorSettings
from common.markets import MarketInfo
from consumers.detector.engine import TriangleDetector
from consumers.detector.episodes import EpisodeRules, EpisodeState, Observation, lapsed, observe_batch, step
from consumers.detector.evaluate import Book
from consumers.detector.graph import Market, Triangle, tradable_markets
from consumers.detector.service import build_detectors, episode_rules
from consumers.paper import PaperSimulation
from producers.capture import CaptureFormatError, CaptureRecord, header_markets, read_capture
from producers.feed import PARSERS, BookChanged, Venue, VenueFeed
from producers.replay import header_precisions, subscribed_depth, venue_of
from producers.venues import kraken
from producers.venues.events import BookSnapshot, VenueProtocolError
from producers.versions import BookVersions
from schemas import Episode, Opportunity, Snapshot

ASSUMED_SIZE_INCREMENT = 1e-8
"""What a market without a known list gets: finer than any venue's, so it never hides an opportunity, and
therefore overstates what is executable on coarser markets (the warning says so)."""

Warn = Callable[[str], None]


def warn_on_stderr(message: str) -> None:
    print(f"triarb backtest: warning: {message}", file=sys.stderr, flush=True)


@dataclass
class CaptureFile:
    """One capture, read once: its header, its connection records in file order, the books it holds."""

    path: Path
    venue: Venue
    header: dict[str, Any]
    records: list[CaptureRecord]
    book_symbols: set[str]


def read_capture_file(path: Path) -> CaptureFile:
    header: dict[str, Any] = {}
    records: list[CaptureRecord] = []
    for record in read_capture(path):
        if record.kind == "header" and not header:
            header = record.raw
        elif record.kind in ("connect", "send", "recv"):
            records.append(record)
    venue = venue_of(header)
    return CaptureFile(path, venue, header, records, _book_symbols(venue, records))


def _book_symbols(venue: Venue, records: Sequence[CaptureRecord]) -> set[str]:
    """Symbols whose book snapshots the capture holds (what ``triarb replay`` subscribes to)."""
    parse = PARSERS[venue]
    symbols: set[str] = set()
    for record in records:
        frame = record.data
        if record.kind == "recv" and frame and ("snapshot" in frame or '"as"' in frame):
            with contextlib.suppress(VenueProtocolError):
                symbols.update(e.symbol for e in parse(frame).events if isinstance(e, BookSnapshot))
    return symbols


# --- markets ------------------------------------------------------------------------------------------


def instrument_markets(venue: Venue, header: Mapping[str, Any]) -> list[MarketInfo] | None:
    """Markets from a header's Kraken ``instruments`` precisions: increments known, minimum sizes not (0)."""
    instruments = header.get("instruments")
    if not instruments:
        return None
    markets = []
    try:
        for venue_symbol, info in sorted(instruments.items()):
            symbol = kraken.canonical(venue_symbol)
            base, quote = symbol.split("-")
            markets.append(MarketInfo(
                venue.value, symbol, base, quote, venue_symbol, _increment(int(info["price_precision"])),
                _increment(int(info["qty_precision"])), "0", True))
    except (AttributeError, KeyError, TypeError, ValueError) as exc:  # VenueProtocolError is a ValueError
        raise CaptureFormatError(f"capture header: 'instruments' is not a map of Kraken pair precisions ({exc})") \
            from exc
    return markets


def _increment(decimals: int) -> str:
    return format(Decimal(1).scaleb(-decimals), "f")


def backtest_markets(
    captures: Sequence[CaptureFile], settings: DetectorSettings, given: Mapping[str, Sequence[MarketInfo]],
    warn: Warn = warn_on_stderr,
) -> dict[Venue, list[Market]]:
    """Per venue, the markets of its captured books with their increments and minimum sizes, from the first
    source that has them: ``given`` (``--markets FILE``), a capture header's ``markets``, a header's Kraken
    ``instruments`` (minimum sizes unknown). Warns for every venue where something had to be assumed."""
    symbols: dict[Venue, set[str]] = {}
    headers: dict[Venue, list[dict[str, Any]]] = {}
    for capture in captures:
        symbols.setdefault(capture.venue, set()).update(capture.book_symbols)
        headers.setdefault(capture.venue, []).append(capture.header)
    for venue in sorted(set(given) - {v.value for v in symbols}):
        warn(f"{venue}: --markets lists {len(given[venue])} markets but no capture is of {venue}: ignored")
    markets: dict[Venue, list[Market]] = {}
    for venue, books in symbols.items():
        fee = settings.taker_fees.get(venue.value, 0.0)
        infos, source = _market_list(venue, given, headers[venue])
        if infos is None:
            warn(f"{venue.value}: no market list for its {len(books)} captured markets (none in the capture header, "
                 f"no --markets FILE): assuming size increment {ASSUMED_SIZE_INCREMENT:g} and no minimum size, "
                 "which overstates what is executable on coarser markets")
            markets[venue] = [_assumed_market(venue, symbol, fee) for symbol in sorted(books)]
            continue
        listed = {m.symbol: m for m in tradable_markets(infos, fee)}
        markets[venue] = [listed[s] for s in sorted(books) if s in listed]
        if source == "instruments":
            warn(f"{venue.value}: {len(markets[venue])} markets: size increments from the capture header's "
                 "instrument precisions, minimum sizes unknown (assumed 0); --markets FILE gives the venue's list")
        unlisted = sorted(books - set(listed))
        if unlisted:
            warn(f"{venue.value}: {len(unlisted)} captured markets are not tradable markets of the list from "
                 f"{source} ({', '.join(unlisted[:5])}{', ...' if len(unlisted) > 5 else ''}): left out of triangles")
    return markets


def _assumed_market(venue: Venue, symbol: str, fee: float) -> Market:
    base, quote = symbol.split("-")
    return Market(venue.value, symbol, base, quote, ASSUMED_SIZE_INCREMENT, 0.0, fee)


def _market_list(venue: Venue, given: Mapping[str, Sequence[MarketInfo]],
                 headers: Sequence[Mapping[str, Any]]) -> tuple[list[MarketInfo] | None, str]:
    if venue.value in given:
        return list(given[venue.value]), "--markets"
    for header in headers:
        listed = header_markets(header)
        if listed is not None:
            wrong = sorted({m.venue for m in listed} - {venue.value})
            if wrong:
                raise ValueError(f"a {venue.value} capture header lists markets of {', '.join(wrong)}")
            return listed, "the capture header"
    for header in headers:
        derived = instrument_markets(venue, header)
        if derived is not None:
            return derived, "instruments"
    return None, "assumed"


# --- the run ------------------------------------------------------------------------------------------


@dataclass
class BacktestResult:
    opportunities: list[Opportunity]
    """each id once, paper-filled, by detection time"""
    episodes: list[Episode]
    """every episode event in the order the live detector would publish them"""


def run_backtest(
    captures: Sequence[Path], settings: DetectorSettings, *, markets: Mapping[str, Sequence[MarketInfo]] | None = None,
    snapshot_levels: int = 5, warn: Warn = warn_on_stderr, progress: Callable[[float], None] | None = None,
) -> list[Opportunity]:
    """Every opportunity the captures hold, paper-filled (see :func:`backtest`)."""
    return backtest(captures, settings, markets=markets, snapshot_levels=snapshot_levels, warn=warn,
                    progress=progress).opportunities


def backtest(
    captures: Sequence[Path], settings: DetectorSettings, *, markets: Mapping[str, Sequence[MarketInfo]] | None = None,
    snapshot_levels: int = 5, warn: Warn = warn_on_stderr, progress: Callable[[float], None] | None = None,
) -> BacktestResult:
    """Every opportunity the captures hold, paper-filled, and their episodes. ``markets``: venue → its market
    list (the discovery cache format); ``snapshot_levels`` as the producers publish
    (``producers.snapshot_levels``). Episodes still open when the captures end close as stale, when their
    legs went stale, as the live detector's sweep closes them once a feed stops."""
    files = [read_capture_file(path) for path in captures]
    venue_markets = backtest_markets(files, settings, markets or {}, warn)
    detectors = build_detectors({venue.value: ms for venue, ms in venue_markets.items()}, settings)  # as live
    triangles: dict[str, Triangle] = {t.cycle_id: t for d in detectors.values() for t in d.triangles}
    books: dict[str, dict[str, Snapshot]] = {venue: {} for venue in detectors}
    found: dict[str, Opportunity] = {}
    pending: list[PaperSimulation] = []
    episodes = _Episodes(episode_rules(settings), detectors)
    for snapshot in replay_snapshots(files, snapshot_levels=snapshot_levels, progress=progress):
        now_ms, venue = snapshot.ts_ingest, snapshot.exchange
        _advance(pending, books, now_ms, found)  # books change only here, so legs due before now see them as now
        books[venue][snapshot.symbol] = snapshot
        evaluated = detectors[venue].evaluate([snapshot.symbol], books[venue], now_ms)
        for opportunity in evaluated:
            if opportunity.id not in found:
                found[opportunity.id] = opportunity
                pending.append(PaperSimulation.start(opportunity, triangles[opportunity.cycle_id], now_ms,
                                                     settings.leg_latency_ms))
        episodes.observe(venue, snapshot.symbol, books[venue], evaluated, now_ms)
    _advance(pending, books, 2**62, found)
    episodes.end()
    return BacktestResult(sorted(found.values(), key=lambda o: (o.ts_detect, o.id)), episodes.events)


class _Episodes:
    """The live detector's episode steps, applied in evaluation order to states kept here (open ones only:
    one evaluator in time order never needs a closed episode's order to reject a late view)."""

    def __init__(self, rules: EpisodeRules, detectors: Mapping[str, TriangleDetector]) -> None:
        self._rules = rules
        self._detectors = detectors
        self._open: dict[str, dict[str, EpisodeState]] = {venue: {} for venue in detectors}
        self.events: list[Episode] = []

    def observe(self, venue: str, symbol: str, books: Mapping[str, Snapshot], found: Sequence[Opportunity],
                now_ms: int) -> None:
        detector = self._detectors[venue]
        if not found and not self._open[venue]:
            return
        self._apply(venue, observe_batch(detector, detector.affected([symbol]), books, found, self._open[venue],
                                         now_ms))

    def end(self) -> None:
        for venue, states in self._open.items():
            self._apply(venue, [lapse for state in list(states.values())
                                if (lapse := lapsed(state, 2**62)) is not None])

    def _apply(self, venue: str, observations: Sequence[Observation]) -> None:
        states = self._open[venue]
        for observation in observations:
            transition = step(states.get(observation.cycle_id), observation, self._rules)
            if transition is None:
                continue
            if transition.state.open:
                states[observation.cycle_id] = transition.state
            else:
                states.pop(observation.cycle_id, None)
            if transition.event is not None:
                self.events.append(transition.event)


def replay_snapshots(
    files: Sequence[CaptureFile], *, snapshot_levels: int = 5, progress: Callable[[float], None] | None = None,
) -> Iterator[Snapshot]:
    """Every snapshot a producer that started at the beginning of the captures would publish, in order, with
    its ``book_seq``; ``ts_ingest`` is the frame's recorded receive time."""
    versions: dict[Venue, BookVersions] = {}
    connections = _Connections(snapshot_levels)
    total = sum(len(f.records) for f in files)
    for done, (ts, _, capture, record) in enumerate(_merged(files)):
        feed = connections.feed(capture, record)
        if record.kind == "recv" and record.data is not None:
            numbering = versions.setdefault(capture.venue, BookVersions(capture.venue.value))
            for output in feed.on_frame(record.data):
                if isinstance(output, BookChanged):
                    yield numbering.snapshot(output, int(ts * 1000))
        if progress is not None and done % 5000 == 0:
            progress(done / max(total, 1))
    if progress is not None:
        progress(1.0)


def _merged(files: Sequence[CaptureFile]) -> Iterator[tuple[float, int, CaptureFile, CaptureRecord]]:
    """All records by receive time; each file keeps its own order, ties go to the file named first."""
    streams = [[(record.ts or 0.0, number, capture, record) for record in capture.records]
               for number, capture in enumerate(files)]
    return heapq.merge(*streams, key=lambda item: (item[0], item[1]))


class _Connections:
    """The feeds of every captured connection, keyed by venue and connection name (rotated files of one run
    continue the same connection), each new at its ``connect`` record, as the producer's is on a reconnect."""

    def __init__(self, snapshot_levels: int) -> None:
        self._top_n = snapshot_levels
        self._feeds: dict[tuple[Venue, str], VenueFeed] = {}

    def feed(self, capture: CaptureFile, record: CaptureRecord) -> VenueFeed:
        key = (capture.venue, record.conn or "default")
        feed = self._feeds.get(key)
        if feed is None or record.kind == "connect":
            depth = kraken.DEFAULT_BOOK_DEPTH if capture.venue is Venue.KRAKEN else None
            feed = self._feeds[key] = VenueFeed(capture.venue, depth=depth, top_n=self._top_n,
                                                precisions=header_precisions(capture.header))
        if record.kind == "send" and record.data is not None:
            depth = subscribed_depth(record.data)
            if depth is not None:
                feed.depth = depth
        return feed


def _advance(pending: list[PaperSimulation], books: Mapping[str, Mapping[str, Snapshot]], now_ms: int,
             found: dict[str, Opportunity]) -> None:
    """Execute every paper leg that is due by ``now_ms`` against the books as they are now."""
    still: list[PaperSimulation] = []
    for sim in pending:
        while not sim.done and sim.due_ms <= now_ms:
            venue_books = books[sim.opportunity.exchange]
            levels: dict[str, Book] = {s: (snap.bids, snap.asks) for s, snap in venue_books.items()}
            sim.step(levels, min(now_ms, sim.due_ms))
        if sim.done:
            found[sim.opportunity.id] = sim.opportunity.model_copy(update={"sim_id": sim.sim_id, "fill": sim.trace()})
        else:
            still.append(sim)
    pending[:] = still


def write_ndjson(records: Sequence[Opportunity | Episode], out: Path) -> None:
    with out.open("wb") as file:
        for record in records:
            file.write(orjson.dumps(record.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS) + b"\n")


def progress_bar(fraction: float) -> None:
    width = 30
    filled = int(fraction * width)
    sys.stderr.write(f"\rbacktest [{'#' * filled}{'.' * (width - filled)}] {fraction:6.1%}")
    if fraction >= 1.0:
        sys.stderr.write("\n")
    sys.stderr.flush()
