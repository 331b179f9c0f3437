"""Prometheus metrics shared by the runtime, defined once on the default registry.

Names carry the ``triarb_`` prefix and their unit. Component-specific metrics live in their component.
Label names mean one thing everywhere: ``venue`` (an exchange), ``stream``, ``group`` (a consumer group),
``reason``, ``component`` (a :class:`~common.redis_link.RedisLink`'s owner) and ``service``. A component
creates its series when it starts (the ``prepare_*`` functions), so every series a dashboard or an alert
reads exists at 0 before its first increment: ``increase()`` over a series that appears at 1 sees none.
"""

from __future__ import annotations

import importlib.metadata
import platform
from collections.abc import Iterable

from prometheus_client import Counter, Gauge, Histogram

from schemas.episode import EpisodeEvent


def installed_version() -> str:
    """triarb's version as installed (``triarb --version`` and ``triarb_build_info`` say the same)."""
    try:
        return importlib.metadata.version("triarb")
    except importlib.metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


BUILD_INFO = Gauge("triarb_build_info", "Always 1; the labels say which triarb and Python this process runs",
                   ["version", "python"])
BUILD_INFO.labels(version=installed_version(), python=platform.python_version()).set(1)

BUS_PUBLISHED = Counter(
    "triarb_bus_published_entries_total", "Entries written to a stream by a publisher", ["stream"]
)
BUS_FLUSHES = Counter("triarb_bus_publish_flushes_total", "Publisher round trips that wrote a batch")
BUS_FLUSH_ERRORS = Counter(
    "triarb_bus_publish_flush_errors_total", "Publisher flushes that failed (retried or fatal)"
)
BUS_BATCH_SIZE = Histogram(
    "triarb_bus_publish_batch_entries", "Entries per publisher round trip",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096),
)
BUS_FLUSH_SECONDS = Histogram(
    "triarb_bus_publish_flush_seconds", "Publisher round trip of one batch, from send to reply",
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5),
)
BUS_CONSUMED = Counter(
    "triarb_bus_consumed_entries_total", "Entries delivered to a group worker", ["stream", "group"]
)
BUS_ACKED = Counter(
    "triarb_bus_acked_entries_total", "Entries acknowledged by a group worker", ["stream", "group"]
)
BUS_DEADLETTERED = Counter(
    "triarb_bus_deadlettered_entries_total", "Entries moved to the dead-letter stream", ["stream", "reason"]
)
BUS_CLAIMED = Counter(
    "triarb_bus_claimed_entries_total", "Idle pending entries taken over with XAUTOCLAIM", ["stream", "group"]
)
BUS_HANDLER_ERRORS = Counter(
    "triarb_bus_handler_errors_total", "Entries whose batch handler raised (left pending)", ["stream", "group"]
)
BUS_CONSUMER_LAG = Gauge(
    "triarb_bus_group_lag_entries", "Entries not yet delivered to the group", ["stream", "group"]
)
BUS_INVALID_SKIPPED = Counter(
    "triarb_bus_invalid_entries_skipped_total", "Undecodable entries a fan-out reader skipped", ["stream"]
)
SERVICE_UP = Gauge(
    "triarb_service_up", "1 while every /healthz check of the service passes, 0 while one fails (set per scrape)",
    ["service"],
)

# --- Redis connection (common.redis_link) ---------------------------------------------------------------
REDIS_UP = Gauge("triarb_redis_up", "1 while a component's last Redis call succeeded", ["component"])
REDIS_RECONNECTS = Counter(
    "triarb_redis_reconnects_total", "Times a component got Redis back after losing it", ["component"]
)
REDIS_DISCONNECTED_SECONDS = Counter(
    "triarb_redis_disconnected_seconds_total", "Time a component spent without Redis (ended outages)", ["component"]
)
REDIS_SERVER_RESTARTS = Counter(
    "triarb_redis_server_restarts_total", "Times `triarb up` restarted its embedded redis-server after it died"
)
BUS_CONSUMERS_REMOVED = Counter(
    "triarb_bus_consumers_removed_total", "Idle consumers without pending entries removed from a group", ["group"]
)

# --- producers ------------------------------------------------------------------------------------------
WS_MESSAGES = Counter("triarb_ws_messages_total", "WebSocket frames received", ["venue"])
WS_RECONNECTS = Counter("triarb_ws_reconnects_total", "WebSocket reconnections", ["venue"])
BOOK_GAPS = Counter("triarb_book_gaps_total", "Sequence gaps that invalidated books", ["venue"])
BOOK_CHECKSUM_FAILURES = Counter("triarb_book_checksum_failures_total", "Book checksum mismatches", ["venue"])
BOOK_STALENESS = Gauge("triarb_book_staleness_seconds",
                       "Time since the venue's last WebSocket message (before the first: since the producer started)",
                       ["venue"])
PARSE_ERRORS = Counter("triarb_ws_parse_errors_total", "Frames that could not be parsed", ["venue"])
UNREQUESTED = Counter("triarb_ws_unrequested_updates_total",
                      "Book changes and trades for symbols the producer does not hold: not published", ["venue"])

# --- detector -------------------------------------------------------------------------------------------
OPPORTUNITIES = Counter("triarb_opportunities_total", "Opportunities published", ["venue"])
EPISODE_EVENTS = Counter("triarb_episode_events_total", "Episode events published", ["venue", "event"])
DETECTOR_SKIPS = Counter("triarb_detector_skips_total", "Triangle evaluations skipped, by reason", ["reason"])
DETECTOR_UNTRUSTED_BOOKS = Counter(
    "triarb_detector_untrusted_books_total", "Hot-cache books left out of evaluation: unreadable or impossible",
    ["venue"])
DETECT_LATENCY = Histogram(
    "triarb_detect_latency_seconds", "From the newest leg's ingest to the opportunity's publication",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)

# --- dashboard ------------------------------------------------------------------------------------------
SSE_CLIENTS = Gauge("triarb_sse_clients", "Browsers connected to the event stream")

# --- publisher outage ---
BUS_CONFLATED = Counter(
    "triarb_bus_conflated_snapshots_total",
    "Snapshots a publisher replaced with a newer one of the same book while Redis was away", ["stream"],
)
BUS_DROPPED = Counter(
    "triarb_bus_dropped_entries_total", "Entries a publisher dropped unwritten, by reason", ["stream", "reason"]
)


# --- series that exist from the start -------------------------------------------------------------------
GROUP_DEADLETTER_REASONS = ("max_deliveries", "codec")
"""Why a group worker dead-letters an entry (``GroupConsumer``: delivered too often, or undecodable)."""
PUBLISH_DROP_REASONS = ("overflow", "closed")
"""Why a publisher drops an entry unwritten (Redis away past the high-water mark, or closed before a flush)."""


def prepare_venue(venue: str) -> None:
    """A producer's series for ``venue``."""
    for metric in (WS_MESSAGES, WS_RECONNECTS, BOOK_GAPS, BOOK_CHECKSUM_FAILURES, PARSE_ERRORS, UNREQUESTED,
                   BOOK_STALENESS):
        metric.labels(venue=venue)


def prepare_group(group: str, streams: Iterable[str]) -> None:
    """A group worker's series for each stream it reads."""
    for stream in streams:
        for metric in (BUS_CONSUMED, BUS_ACKED, BUS_CLAIMED, BUS_HANDLER_ERRORS, BUS_CONSUMER_LAG):
            metric.labels(stream=stream, group=group)
        prepare_deadletters([stream], GROUP_DEADLETTER_REASONS)
    BUS_CONSUMERS_REMOVED.labels(group=group)


def prepare_deadletters(streams: Iterable[str], reasons: Iterable[str]) -> None:
    """The dead-letter series of a component that rejects entries of ``streams`` for ``reasons``."""
    reasons = tuple(reasons)
    for stream in streams:
        for reason in reasons:
            BUS_DEADLETTERED.labels(stream=stream, reason=reason)


def prepare_publishing(stream: str) -> None:
    """A publisher's series for a stream it writes (created on its first write: a publisher serves any)."""
    BUS_PUBLISHED.labels(stream=stream)
    BUS_CONFLATED.labels(stream=stream)
    for reason in PUBLISH_DROP_REASONS:
        BUS_DROPPED.labels(stream=stream, reason=reason)


def prepare_detector(venues: Iterable[str]) -> None:
    """The detector's series for each venue it has triangles on."""
    for venue in venues:
        OPPORTUNITIES.labels(venue=venue)
        DETECTOR_UNTRUSTED_BOOKS.labels(venue=venue)
        for event in EpisodeEvent:
            EPISODE_EVENTS.labels(venue=venue, event=event.value)
