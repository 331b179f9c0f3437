"""``triarb up``: runs the parts of the stack as tasks of one process and stops them in order.

Order matters on the way down: components stop reading and drain first, publishers flush, the HTTP
endpoint closes, and only then does the caller stop the embedded Redis they were all writing to.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable

from redis.asyncio import Redis
from redis.exceptions import RedisError

from common.bus import Publisher
from common.config import Role, Settings, VenueSettings
from common.markets import cache_path, load_markets
from common.redis import RedisEndpoint, connect
from common.service import CheckResult, ServiceEndpoint
from consumers.detector.graph import Market, tradable_markets
from consumers.detector.service import DetectorService, run_workers
from consumers.persistence import PersistenceWriter
from dashboard.server import serve_dashboard
from producers.capture import CaptureWriter
from producers.demo import DemoVenue, start_demo_venue
from producers.feed import Venue
from producers.service import VenueProducer

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
) -> None:
    """Run until ``stop`` is set: both venue producers (against local demo venues with ``demo``) and the
    health endpoint. Components of later issues (detector, persistence, dashboard) join here."""
    producer_redis = connect(settings, Role.PRODUCER, endpoint=endpoint)
    detector_redis = connect(settings, Role.DETECTOR, endpoint=endpoint)
    persistence_redis = connect(settings, Role.PERSISTENCE, endpoint=endpoint)
    control_redis = connect(settings, Role.CONTROL, endpoint=endpoint)
    writer = PersistenceWriter(settings, persistence_redis, settings.var_dir / "data")
    monitor_redis = connect(settings, Role.DASHBOARD, endpoint=endpoint)
    service = ServiceEndpoint("triarb", host=settings.service_host, port=settings.service_port)
    redis_ok = RedisCheck()
    service.add_check("redis", redis_ok.result)
    demo_venues: list[DemoVenue] = []
    try:
        venues = {Venue.COINBASE: settings.producers.coinbase, Venue.KRAKEN: settings.producers.kraken}
        if demo:
            for venue in venues:
                served = await start_demo_venue(venue)
                demo_venues.append(served)
                venues[venue] = VenueSettings(url=served.url, symbols=served.symbols, book_depth=served.depth)
        await service.start()
        markets = detector_markets(settings, venues)
        async with (
            Publisher(producer_redis, settings.names, settings.streams, settings.bus) as publisher,
            Publisher(detector_redis, settings.names, settings.streams, settings.bus) as opportunities,
        ):
            detector = DetectorService(settings, detector_redis, opportunities, markets)
            producers = [
                VenueProducer(venue, venue_settings, settings.producers, publisher, names=settings.names,
                              control_redis=producer_redis, capture=capture_writer(settings, venue))
                for venue, venue_settings in venues.items()
            ]
            for producer in producers:
                service.add_check(producer.venue.value, producer_check(producer))
            if on_ready is not None:
                on_ready(service)
            async with asyncio.TaskGroup() as group:
                group.create_task(redis_ok.watch(monitor_redis, stop))
                for producer in producers:
                    group.create_task(producer.run(stop))
                group.create_task(run_workers(detector, settings.detector.workers, stop))
                group.create_task(writer.consumer().run(stop))
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
        await monitor_redis.aclose()


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
    """``WS_CAPTURE=true``: every raw frame of ``venue`` to ``var/captures/`` (replayable)."""
    return CaptureWriter(settings.var_dir / "captures", venue.value) if settings.ws_capture else None


def producer_check(producer: VenueProducer) -> Callable[[], CheckResult]:
    def check() -> CheckResult:
        health = producer.health()
        return CheckResult(health.status == "up", f"{health.status}: {health.detail or ''}".rstrip(": "))

    return check


class RedisCheck:
    """``/healthz`` check: Redis answered a PING within the last few seconds."""

    def __init__(self) -> None:
        self._ok = False
        self._detail = "not checked yet"

    def result(self) -> CheckResult:
        return CheckResult(ok=self._ok, detail=self._detail)

    async def watch(self, redis: Redis, stop: asyncio.Event, interval_s: float = 2.0) -> None:
        while not stop.is_set():
            try:
                async with asyncio.timeout(interval_s):
                    await redis.ping()
                self._ok, self._detail = True, "PING ok"
            except (RedisError, OSError, TimeoutError) as exc:
                self._ok, self._detail = False, f"PING failed: {exc!r}"
            try:
                async with asyncio.timeout(interval_s):
                    await stop.wait()
            except TimeoutError:
                pass
