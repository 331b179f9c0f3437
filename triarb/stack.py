"""``triarb up``: runs the parts of the stack as tasks of one process and stops them in order.

Order matters on the way down: components stop reading and drain first, publishers flush, the HTTP
endpoint closes, and only then does the caller stop the embedded Redis they were all writing to.
While it runs, :func:`supervise_embedded` restarts the embedded redis-server whenever it dies (same port,
data dir and passwords), and every component rides out the gap with its own reconnect loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable
from pathlib import Path

from common import metrics
from common.backoff import backoff_delays
from common.bus import Publisher
from common.config import DetectorSettings, Role, Settings, VenueSettings
from common.markets import cache_path, load_markets, venue_catalog
from common.redis import EmbeddedRedis, EmbeddedRedisError, RedisEndpoint, connect, log_tail
from common.redis_link import RedisProbe
from common.service import CheckResult, ServiceEndpoint
from consumers.detector.graph import Market, tradable_markets
from consumers.detector.service import DetectorService, run_workers
from consumers.paper_broker import PaperBroker, run_paper_workers
from consumers.persistence import ArchiveLock, ArchiveLockedError, PersistenceWriter
from dashboard.server import serve_dashboard
from producers.capture import CaptureWriter
from producers.feed import Venue
from producers.service import VenueProducer
from producers.simulators.demo import DemoVenue, start_demo_venue

log = logging.getLogger(__name__)


def install_stop_signals(stop: asyncio.Event) -> None:
    """SIGINT/SIGTERM set ``stop``; a second signal while stopping exits at once (a stuck shutdown)."""
    loop = asyncio.get_running_loop()

    def request_stop(signum: int) -> None:
        if stop.is_set():
            log.warning("second %s: exiting without draining", signal.Signals(signum).name)
            raise SystemExit(130)
        log.info("%s received: draining and stopping", signal.Signals(signum).name)
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, request_stop, signum)


async def run_stack(
    settings: Settings,
    stop: asyncio.Event,
    *,
    endpoint: RedisEndpoint | None = None,
    demo: bool = False,
    on_ready: Callable[[ServiceEndpoint], None] | None = None,
    on_dashboard: Callable[[int], None] | None = None,
    embedded: EmbeddedRedis | None = None,
) -> None:
    """Run until ``stop`` is set: both venue producers (against local demo venues with ``demo``), the
    detector, the paper broker, persistence, the dashboard and the health endpoint; ``embedded`` is kept
    alive."""
    archive = settings.var_dir / "data"
    lock = ArchiveLock(archive)
    try:
        await lock.acquire(stop, wait=False)
    except ArchiveLockedError as exc:
        raise StackError(str(exc)) from exc
    try:
        await _run_components(settings, stop, endpoint, demo, on_ready, on_dashboard, embedded, archive)
    finally:
        lock.release()


class StackError(RuntimeError):
    """The stack cannot start for a reason the user can fix; the message says what."""


async def _run_components(
    settings: Settings, stop: asyncio.Event, endpoint: RedisEndpoint | None, demo: bool,
    on_ready: Callable[[ServiceEndpoint], None] | None, on_dashboard: Callable[[int], None] | None,
    embedded: EmbeddedRedis | None, archive: Path,
) -> None:
    producer_redis = connect(settings, Role.PRODUCER, endpoint=endpoint)
    detector_redis = connect(settings, Role.DETECTOR, endpoint=endpoint)
    persistence_redis = connect(settings, Role.PERSISTENCE, endpoint=endpoint)
    control_redis = connect(settings, Role.CONTROL, endpoint=endpoint)
    paper_redis = connect(settings, Role.PAPER, endpoint=endpoint)
    writer = PersistenceWriter(settings, persistence_redis, archive)
    monitor_redis = connect(settings, Role.DASHBOARD, endpoint=endpoint)
    service = ServiceEndpoint("triarb", host=settings.service_host, port=settings.service_port)
    redis_ok = RedisProbe()
    service.add_check("redis", redis_ok.result)
    demo_venues: list[DemoVenue] = []
    try:
        venues = {Venue.COINBASE: settings.producers.coinbase, Venue.KRAKEN: settings.producers.kraken}
        if demo:
            for venue in venues:
                served = await start_demo_venue(venue)
                demo_venues.append(served)
                venues[venue] = VenueSettings(url=served.url, symbols=served.symbols, book_depth=served.depth,
                                              rest_fallback=False)  # a demo never reaches a real exchange
                setattr(settings.producers, venue.value, venues[venue])  # what the dashboard shows as defaults
            fit_freshness_to(settings.detector, max(served.quote_interval_ms for served in demo_venues))
        await service.start()
        markets = detector_markets(settings, venues)
        async with (
            Publisher(producer_redis, settings.names, settings.streams, settings.bus,
                      component="producer-publisher") as publisher,
            Publisher(detector_redis, settings.names, settings.streams, settings.bus,
                      component="detector-publisher") as opportunities,
            Publisher(paper_redis, settings.names, settings.streams, settings.bus,
                      component="paper-publisher") as fills,
        ):
            detector = DetectorService(settings, detector_redis, opportunities, markets)
            broker = PaperBroker(settings, paper_redis, fills, markets)
            producers = [
                VenueProducer(venue, venue_settings, settings.producers, publisher, names=settings.names,
                              control_redis=producer_redis, capture=capture_writer(settings, venue),
                              catalog=venue_catalog(venue.value, venue_settings.symbols + venue_settings.markets,
                                                    None if demo else settings.var_dir))
                for venue, venue_settings in venues.items()
            ]
            for producer in producers:
                service.add_check(producer.venue.value, producer_check(producer))
            if on_ready is not None:
                on_ready(service)
            async with asyncio.TaskGroup() as group:
                if embedded is not None:
                    group.create_task(supervise_embedded(embedded, stop))
                group.create_task(redis_ok.watch(monitor_redis, stop))
                for producer in producers:
                    group.create_task(producer.run(stop))
                group.create_task(run_workers(detector, settings.detector.workers, stop))
                group.create_task(run_paper_workers(broker, 1, stop))
                group.create_task(writer.run(stop))
                group.create_task(serve_dashboard(settings, monitor_redis, control_redis, stop, on_ready=on_dashboard))
    finally:
        await service.stop()
        for served in demo_venues:
            await served.stop()
        await producer_redis.aclose()
        await detector_redis.aclose()
        writer.close()
        await persistence_redis.aclose()
        await control_redis.aclose()
        await paper_redis.aclose()
        await monitor_redis.aclose()


def fit_freshness_to(detector: DetectorSettings, quote_interval_ms: int) -> None:
    """The demo venues re-quote every book once per interval, so a leg is a whole interval old just before its
    requote: a freshness limit at or under it would split every episode at each tick. Allow two intervals."""
    needed = 2 * quote_interval_ms
    if detector.max_age_ms < needed:
        log.info("demo: detector.max_age_ms %d → %d (the demo venues re-quote every %d ms)",
                 detector.max_age_ms, needed, quote_interval_ms)
        detector.max_age_ms = needed


def detector_markets(settings: Settings, venues: dict[Venue, VenueSettings]) -> dict[str, list[Market]]:
    """Markets from the discovery cache (``var/discovery/*.json``) when present, else the producers' symbols
    with default increments (the demo)."""
    markets: dict[str, list[Market]] = {}
    for venue, venue_settings in venues.items():
        fee = settings.detector.taker_fees.get(venue.value, 0.0)
        cached = cache_path(settings.var_dir, venue.value)
        if cached.is_file():
            markets[venue.value] = tradable_markets(load_markets(cached), fee)
        else:
            markets[venue.value] = [Market(venue.value, s, *s.split("-"), 1e-8, 0.0, fee)
                                    for s in venue_settings.symbols]
    return markets


def capture_writer(settings: Settings, venue: Venue) -> CaptureWriter | None:
    """``WS_CAPTURE=true``: every raw frame of ``venue`` to ``var/captures/`` (replayable). Each file's header
    carries the venue's markets from the discovery cache when there is one (what the detector used), so
    ``triarb backtest`` rounds sizes to the same increments."""
    if not settings.ws_capture:
        return None
    cached = cache_path(settings.var_dir, venue.value)
    markets = load_markets(cached) if cached.is_file() else None
    return CaptureWriter(settings.var_dir / "captures", venue.value, markets=markets)


def producer_check(producer: VenueProducer) -> Callable[[], CheckResult]:
    def check() -> CheckResult:
        health = producer.health()
        return CheckResult(health.status == "up", f"{health.status}: {health.detail or ''}".rstrip(": "))

    return check


async def supervise_embedded(embedded: EmbeddedRedis, stop: asyncio.Event, *, poll_s: float = 0.1) -> None:
    """Restart the embedded redis-server whenever it exits (kill -9, an operator's SHUTDOWN, the OOM
    killer) until ``stop``: same port, data dir and passwords, so clients reconnect without being told.
    The AOF brings back what it promised (everything but the last second at worst)."""
    while not stop.is_set():
        await _wait(stop, poll_s)
        status = embedded.poll()
        if status is None or stop.is_set():
            continue
        port = embedded.endpoint.port
        log.error("embedded redis-server exited with status %s; restarting it on port %d", status, port,
                  extra={"log_tail": log_tail(embedded.log_file)})
        metrics.REDIS_SERVER_RESTARTS.inc()
        delays = backoff_delays(0.1, 2.0)
        while not stop.is_set():
            try:
                embedded.respawn()  # in the loop's thread: the server's PDEATHSIG follows this thread
                await asyncio.to_thread(embedded.wait_ready, 10.0)
                log.info("embedded redis-server is back on port %d", port)
                break
            except EmbeddedRedisError as exc:
                log.error("restarting redis-server failed, trying again: %s", exc)
                await _wait(stop, next(delays))


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await stop.wait()
