"""The detector service: a worker of consumer group ``detector`` on ``md.snapshot``.

Per batch: the markets that changed (only ``exchange`` and ``symbol`` are decoded from each delivered
snapshot) → the triangles that touch them → one pipelined hot-cache read of all
their legs → each affected triangle evaluated once (conflation: intermediate states in the batch are
skipped) → opportunities published and flushed → the batch acknowledged. Paper fills happen elsewhere
(group ``paper``, ``consumers/paper_broker.py``): their latency waits must not delay detection. State lives
in Redis, so any number of workers (``workers`` here, or more processes) share the stream; opportunity ids
derive from the books' versions and each is written once (the publish script's once-key). After the
opportunities, the batch's episode steps are applied by compare-and-set (``episode_store.py``), and a sweep
closes episodes whose feed went quiet.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence

from redis.asyncio import Redis

from common import metrics
from common.bus import Delivery, GroupConsumer, Publisher
from common.config import DetectorSettings, Settings
from common.redis_link import RedisLink, is_transient
from consumers.detector.book_cache import DecodedBooks
from consumers.detector.engine import SKIP_REASONS, DetectorRules, TriangleDetector
from consumers.detector.episode_store import EpisodeStore, States
from consumers.detector.episodes import EpisodeRules, observe_batch
from consumers.detector.graph import Market, Triangle, enumerate_triangles
from schemas import Episode, Opportunity, Snapshot, Subject, SymbolControl, sim_id_for
from schemas.codec import BookRef, decode_book_ref
from schemas.control import MAX_SYMBOLS_PER_VENUE, ControlOp, ControlSource
from schemas.streams import StreamNames

log = logging.getLogger(__name__)

GROUP = "detector"


def episode_rules(settings: DetectorSettings) -> EpisodeRules:
    return EpisodeRules(settings.episode_update_ms, settings.episode_min_change, settings.max_age_ms)


def build_detectors(markets: Mapping[str, Sequence[Market]], settings: DetectorSettings) -> dict[str, TriangleDetector]:
    rules = DetectorRules(settings.min_roi, settings.max_age_ms, settings.max_skew_ms, settings.start_notional)
    return {venue: TriangleDetector(enumerate_triangles(list(ms), settings.anchors), rules)
            for venue, ms in markets.items()}


class DetectorService:
    """Evaluates batches of snapshot deliveries against the hot cache and publishes opportunities."""

    def __init__(
        self,
        settings: Settings,
        redis: Redis,
        publisher: Publisher,
        markets: Mapping[str, Sequence[Market]],
        *,
        clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    ) -> None:
        self._settings = settings
        self._redis = redis
        self._publisher = publisher
        self._clock_ms = clock_ms
        self.detectors = build_detectors(markets, settings.detector)
        metrics.prepare_detector(self.detectors)
        for reason in SKIP_REASONS:  # every series exists before its first skip
            metrics.DETECTOR_SKIPS.labels(reason=reason)
        self.episodes = EpisodeStore(redis, settings.names, settings.streams, episode_rules(settings.detector))
        self.link = RedisLink("detector-episodes")
        self.decoded = DecodedBooks()
        self.published = 0

    async def announce_symbols(self) -> None:
        """Tell producers which books the triangles need (``strategy.ctrl.symbols``, source ``detector``:
        producers hold it in addition to the user's set)."""
        symbols = {}
        for venue, detector in self.detectors.items():
            needed = detector.symbols()
            if len(needed) > MAX_SYMBOLS_PER_VENUE:
                log.error("triangles need %d %s books, more than a control entry may name (%d): not announced",
                          len(needed), venue, MAX_SYMBOLS_PER_VENUE)
            elif needed:
                symbols[venue] = needed
        if symbols:
            await self._publisher.publish(SymbolControl(op=ControlOp.SET, source=ControlSource.DETECTOR,
                                                        symbols=symbols, ts=self._clock_ms(), issued_by="detector"))
            await self._publisher.flush()

    def consumer(self, name: str | None = None, start_id: str = "$") -> GroupConsumer:
        """A worker; a new group starts at ``$`` (old snapshots are stale for detection) unless told otherwise."""
        bus = self._settings.bus.model_copy(update={"read_count": self._settings.detector.read_count})
        return GroupConsumer(
            self._redis, self._settings.names, bus, group=GROUP, subjects=[Subject.SNAPSHOT],
            handler=self.handle, name=name, start_id=start_id, decoder=lambda _, fields: decode_book_ref(fields),
        )

    async def handle(self, batch: list[Delivery]) -> None:
        updated: dict[str, set[str]] = defaultdict(set)
        for delivery in batch:  # which books changed; a batch's updates of one book count once (conflation)
            book = delivery.model
            assert isinstance(book, BookRef)
            if book.exchange in self.detectors:
                updated[book.exchange].add(book.symbol)
        affected = {venue: self.detectors[venue].affected(symbols) for venue, symbols in updated.items()}
        books, states = await fetch_books_and_episodes(self._redis, self._settings.names, affected, self.episodes,
                                                       self.decoded)
        now_ms = self._clock_ms()
        found: list[Opportunity] = []
        for venue, symbols in updated.items():
            detector = self.detectors[venue]
            for snapshot in books[venue].values():  # other workers may have seen these books' updates
                detector.observe(snapshot)
            found.extend(detector.evaluate(symbols, books[venue], now_ms))
        latency = self._settings.detector.leg_latency_ms
        for opportunity in found:
            published_ms = self._clock_ms()
            await self._publisher.publish(opportunity.model_copy(update={
                "ts_publish": published_ms, "sim_id": sim_id_for(opportunity.id, latency)}))
            metrics.OPPORTUNITIES.labels(venue=opportunity.exchange).inc()
            newest_ingest = max(books[opportunity.exchange][leg.symbol].ts_ingest for leg in opportunity.legs
                                if leg.symbol in books[opportunity.exchange])
            metrics.DETECT_LATENCY.observe(max(0.0, (published_ms - newest_ingest) / 1000))
        await self._publisher.flush()  # published before the batch is acknowledged
        self.published += len(found)
        for venue in updated:  # after the opportunities: episodes must not delay them
            observations = observe_batch(self.detectors[venue], affected[venue], books[venue],
                                         [o for o in found if o.exchange == venue],
                                         {cycle: state for cycle, (_, state) in states[venue].items()}, now_ms)
            if observations:
                await self.episodes.apply(venue, observations, states[venue])
        for detector in self.detectors.values():
            for reason, count in detector.skips.items():
                metrics.DETECTOR_SKIPS.labels(reason=reason).inc(count)
            detector.skips.clear()

    async def sweep_episodes(self, stop: asyncio.Event) -> None:
        """Close episodes whose legs went stale while no update came (a feed that stopped says nothing), every
        quarter of ``max_age_ms``; every process sweeps, the compare-and-set lets one close each."""
        interval_s = max(0.05, self._settings.detector.max_age_ms / 4000)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval_s):
                    await stop.wait()
            try:
                await self.sweep_once()
            except Exception as exc:  # Redis away: the next sweep catches up
                if not is_transient(exc):
                    raise
                await self.link.pause(exc, stop)
            else:
                self.link.ok()

    async def sweep_once(self) -> list[Episode]:
        closed: list[Episode] = []
        for venue in self.detectors:
            closed.extend(await self.episodes.sweep(venue, self._clock_ms()))
        return closed


async def fetch_books(
    redis: Redis, names: StreamNames, affected: Mapping[str, Sequence[Triangle]]
) -> dict[str, dict[str, Snapshot]]:
    """Every leg of every affected triangle from the hot cache, in one ``MGET``; a book that does not decode,
    is filed under another market or cannot exist is left out (and counted)."""
    return (await fetch_books_and_episodes(redis, names, affected, None))[0]


async def fetch_books_and_episodes(
    redis: Redis, names: StreamNames, affected: Mapping[str, Sequence[Triangle]], episodes: EpisodeStore | None,
    decoded: DecodedBooks | None = None,
) -> tuple[dict[str, dict[str, Snapshot]], dict[str, States]]:
    """:func:`fetch_books`, and with ``episodes`` each venue's episode states, in the same round trip;
    ``decoded`` (a worker's) spares decoding the legs that have not changed since it last read them.

    One ``MGET`` per venue, never across venues: every multi-key command touches one venue's keys, so a
    venue can be pinned to one Redis Cluster slot (design: "Beyond one machine")."""
    legs = {venue: sorted({symbol for t in ts for symbol in t.symbols}) for venue, ts in sorted(affected.items())}
    legs = {venue: symbols for venue, symbols in legs.items() if symbols}
    books: dict[str, dict[str, Snapshot]] = {venue: {} for venue in affected}
    states: dict[str, States] = {venue: {} for venue in affected}
    if not legs:
        return books, states
    pipe = redis.pipeline(transaction=False)
    for venue, symbols in legs.items():
        pipe.mget([names.book_key(venue, symbol) for symbol in symbols])
    venues = sorted(affected) if episodes is not None else []
    for venue in venues:
        assert episodes is not None
        episodes.queue_read(pipe, venue)
    replies = await pipe.execute()
    for venue, reply in zip(venues, replies[len(legs):], strict=True):
        assert episodes is not None
        states[venue] = episodes.parse(venue, reply)
    decoded = decoded if decoded is not None else DecodedBooks()
    stored = ((venue, symbol, document)
              for (venue, symbols), documents in zip(legs.items(), replies[:len(legs)], strict=True)
              for symbol, document in zip(symbols, documents, strict=True))
    for venue, symbol, document in stored:
        if document is None:
            continue
        book = decoded.trusted(venue, symbol, document)
        if isinstance(book, Snapshot):
            books[venue][symbol] = book
        else:
            metrics.DETECTOR_UNTRUSTED_BOOKS.labels(venue=venue).inc()
            log.warning("untrusted hot-cache book left out", extra={"venue": venue, "symbol": symbol,
                                                                     "reason": book})
    return books, states


async def run_workers(
    service: DetectorService, workers: int, stop: asyncio.Event, *, burst: bool = False, start_id: str = "$"
) -> None:
    """``workers`` consumers of the group in this process (more processes scale the same way)."""
    await service.announce_symbols()
    async with asyncio.TaskGroup() as tasks:
        for _ in range(workers):
            tasks.create_task(service.consumer(start_id=start_id).run(stop, burst=burst))
        if not burst:
            tasks.create_task(service.sweep_episodes(stop))
    if burst:  # what the drained backlog left open and stale by now
        await service.sweep_once()
