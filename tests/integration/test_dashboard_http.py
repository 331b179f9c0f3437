"""The dashboard over real HTTP: SSE resume by Last-Event-ID, the JSON API (episodes folded to one state each,
with the paper result of their first opportunity; book freshness), the guarded symbol endpoint, and what every
bad input gets back (``test_bad_input_gets_a_4xx_with_its_reason`` is the README's "Security" table).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import hypothesis
import orjson
import pytest
from hypothesis import strategies as st
from pydantic import SecretStr
from redis.asyncio import Redis

from common.bus import Publisher
from common.config import Role, Settings
from common.markets import register_markets
from dashboard.app import REPLAYED_AFTER_MS, create_app
from dashboard.server import serve_dashboard
from schemas import Episode, EpisodeEvent, FillTrace, SymbolControl
from schemas.codec import decode_as
from schemas.control import MAX_ENTRY_BYTES, ControlOp, ControlSource
from schemas.episode import CloseReason
from schemas.opportunity import FillStatus
from tests import samples

pytestmark = pytest.mark.integration
TOKEN = "s3cret-token"
CATALOGS = {"coinbase": ["BTC-EUR", "BTC-USD", "ETH-BTC", "ETH-USD"], "kraken": ["BTC-USD", "ETH-BTC", "ETH-USD"]}
"""The markets each venue's producer registers in these tests (``md:markets:{venue}``)."""


@pytest.fixture
async def catalogs(admin: Redis, settings: Settings) -> dict[str, list[str]]:
    """Both producers' market catalogs registered (as admin: the test plays the producers)."""
    for venue, symbols in CATALOGS.items():
        await register_markets(admin, settings.names, venue, symbols)
    return CATALOGS


@contextlib.asynccontextmanager
async def running_dashboard(settings: Settings, connect_as: Callable[..., Redis], token: str | None,
                            reader: Redis | None = None) -> AsyncIterator[str]:
    settings = settings.model_copy(update={"dashboard_port": 0,
                                           "dashboard_token": SecretStr(token) if token is not None else None})
    control = connect_as(Role.CONTROL) if token is not None else None
    stop, ready = asyncio.Event(), asyncio.get_running_loop().create_future()
    task = asyncio.create_task(serve_dashboard(settings, reader or connect_as(Role.DASHBOARD), control, stop,
                                               on_ready=ready.set_result))
    port = await asyncio.wait_for(ready, 10)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


@pytest.fixture
async def dashboard(settings: Settings, connect_as: Callable[..., Redis], catalogs: dict[str, list[str]]
                    ) -> AsyncIterator[str]:
    async with running_dashboard(settings, connect_as, TOKEN) as url:
        yield url


async def publish_opportunities(redis: Redis, settings: Settings, count: int, first: int = 0) -> None:
    async with Publisher(redis, settings.names, settings.streams, settings.bus) as pub:
        for n in range(first, first + count):
            await pub.publish(samples.opportunity(id=f"opp-{n}"))


def episode_event(episode_id: str, seq: int, *, opened_ms: int, first: str = "opp-1", **overrides: Any) -> Episode:
    """Event ``seq`` of an episode (``seq`` 0 is its open; with a ``close_reason`` it is its close, else an
    update), one second after the one before, carrying the whole episode as the detector writes it."""
    closing = overrides.get("close_reason") is not None
    event = EpisodeEvent.OPEN if seq == 0 else EpisodeEvent.CLOSE if closing else EpisodeEvent.UPDATE
    ts = opened_ms + 1000 * seq
    fields: dict[str, Any] = {
        "id": episode_id, "event": event, "seq": seq, "exchange": "coinbase", "start_asset": "USD",
        "cycle_id": "coinbase:BTC-USD:buy|ETH-BTC:buy|ETH-USD:sell", "opened_ms": opened_ms, "ts": ts,
        "duration_ms": ts - opened_ms, "roi_net": 0.0012, "peak_roi_net": 0.0012, "peak_ms": opened_ms,
        "best_notional": 400.0, "best_profit": 0.5, "opportunities": seq + 1, "first_opportunity_id": first,
        "opportunity_id": first,
    }
    return Episode(**(fields | overrides))


async def publish(redis: Redis, settings: Settings, *models: Any) -> None:
    """Through the real publisher, as the role ``redis`` is connected as (the detector for episodes)."""
    async with Publisher(redis, settings.names, settings.streams, settings.bus) as pub:
        for model in models:
            await pub.publish(model)


async def sse_events(response: aiohttp.ClientResponse) -> AsyncIterator[tuple[str, str, str]]:
    """(event, id, data) of each event, parsed from the raw SSE text."""
    event, event_id, data = "", "", ""
    async for raw in response.content:
        line = raw.decode().rstrip("\r\n")
        if line.startswith("event:"):
            event = line.split(":", 1)[1].strip()
        elif line.startswith("id:"):
            event_id = line.split(":", 1)[1].strip()
        elif line.startswith("data:"):
            data = line.split(":", 1)[1].strip()
        elif line == "" and event:
            yield event, event_id, data
            event, event_id, data = "", "", ""


async def read_opportunity_events(
    http: aiohttp.ClientSession, url: str, count: int, headers: dict[str, str] | None = None
) -> list[tuple[str, str]]:
    """(event id, opportunity id) of the first ``count`` opportunity events."""
    found: list[tuple[str, str]] = []
    async with http.get(url, headers=headers or {}) as response:
        async for event, event_id, data in sse_events(response):
            if event == "opportunity":
                found.append((event_id, orjson.loads(data)["id"]))
                if len(found) == count:
                    break
    return found


async def test_reconnect_with_last_event_id_resumes_exactly_after_it(
    dashboard: str, connect_as: Callable[..., Redis], settings: Settings
) -> None:
    await publish_opportunities(connect_as(Role.DETECTOR), settings, 10)
    async with aiohttp.ClientSession() as http:
        first = await read_opportunity_events(http, f"{dashboard}/events?since=0", 4)
        rest = await read_opportunity_events(http, f"{dashboard}/events", 6, headers={"Last-Event-ID": first[-1][0]})
    assert [o for _, o in first] == ["opp-0", "opp-1", "opp-2", "opp-3"]
    assert [o for _, o in rest] == [f"opp-{n}" for n in range(4, 10)]  # exactly the rest: none missed or doubled


async def test_a_valid_but_old_last_event_id_replays_from_there(
    dashboard: str, admin: Redis, connect_as: Callable[..., Redis], settings: Settings
) -> None:
    await publish_opportunities(connect_as(Role.DETECTOR), settings, 5)
    ids = [entry_id.decode() for entry_id, _ in await admin.xrange("strategy.opportunity")]
    async with aiohttp.ClientSession() as http:  # the second entry's id: the replay starts with the third
        replayed = await read_opportunity_events(http, f"{dashboard}/events", 3, headers={"Last-Event-ID": ids[1]})
    assert replayed == [(ids[2], "opp-2"), (ids[3], "opp-3"), (ids[4], "opp-4")]


@pytest.mark.parametrize("start", ["99999999999999-0", str(2**64 - 1), f"{2**64 - 1}-{2**64 - 1}"],
                         ids=["year-5138", "2^64-1", "2^64-1-2^64-1"])
@pytest.mark.parametrize("empty_stream", [False, True], ids=["stream-with-entries", "empty-stream"])
async def test_an_id_newer_than_the_stream_follows_new_entries(
    dashboard: str, connect_as: Callable[..., Redis], settings: Settings, start: str, empty_stream: bool
) -> None:
    """XREAD after a future id would skip everything until the clock reached it: the start is clamped to the
    stream's last entry (or 0-0), so the entries published after connecting arrive."""
    if not empty_stream:
        await publish_opportunities(connect_as(Role.DETECTOR), settings, 2)
    async with Publisher(connect_as(Role.PRODUCER), settings.names, settings.streams, settings.bus) as pub:
        await pub.publish(samples.health())  # its event tells the test the stream has started
    received: list[str] = []
    async with aiohttp.ClientSession() as http, http.get(f"{dashboard}/events",
                                                         headers={"Last-Event-ID": start}) as response:
        assert response.status == 200
        async for event, _, data in sse_events(response):
            if event == "health" and not received:
                received.append("health")
                await publish_opportunities(connect_as(Role.DETECTOR), settings, 2, first=10)
            elif event == "opportunity":
                received.append(orjson.loads(data)["id"])
                if len(received) == 3:
                    break
    assert received == ["health", "opp-10", "opp-11"]


async def test_api_lists_opportunities_and_status(
    dashboard: str, connect_as: Callable[..., Redis], settings: Settings
) -> None:
    await publish_opportunities(connect_as(Role.DETECTOR), settings, 3)
    async with Publisher(connect_as(Role.PRODUCER), settings.names, settings.streams, settings.bus) as pub:
        await pub.publish(samples.health(status="degraded", symbol_count=0))
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{dashboard}/api/opportunities?limit=2") as response:
            newest = await response.json()
        async with http.get(f"{dashboard}/api/status") as response:
            status = await response.json()
        async with http.get(f"{dashboard}/healthz") as response:
            assert response.status == 200
    assert [o["id"] for o in newest] == ["opp-2", "opp-1"]
    assert status["streams"]["strategy.opportunity"]["length"] == 3
    feed = status["feeds"][0]
    assert (feed["exchange"], feed["status"], feed["symbol_count"]) == ("kraken", "degraded", 0)
    assert "symbols" not in feed


async def test_status_shows_each_venues_folded_symbol_sets(
    dashboard: str, connect_as: Callable[..., Redis], settings: Settings
) -> None:
    """user set (configured until a user `set`) ∪ detector set, per venue, as the producers fold it."""
    async with Publisher(connect_as(Role.DETECTOR), settings.names, settings.streams, settings.bus) as pub:
        await pub.publish(SymbolControl(source=ControlSource.DETECTOR, symbols={"kraken": ["ETH-BTC", "BTC-USD"]}))
        await pub.publish(SymbolControl(op=ControlOp.SET, symbols={"coinbase": ["BTC-EUR"]}))
    async with aiohttp.ClientSession() as http, http.get(f"{dashboard}/api/status") as response:
        symbols = (await response.json())["symbols"]
    assert symbols == {
        "coinbase": {"user": ["BTC-EUR"], "user_is_default": False, "detector": [], "holds": ["BTC-EUR"]},
        "kraken": {"user": ["BTC-USD", "ETH-USD", "ETH-BTC"], "user_is_default": True,  # settings' default
                   "detector": ["ETH-BTC", "BTC-USD"], "holds": ["BTC-USD", "ETH-USD", "ETH-BTC"]},
    }


async def test_episodes_are_listed_once_each_as_their_newest_event_newest_opened_first(
    dashboard: str, admin: Redis, connect_as: Callable[..., Redis], settings: Settings
) -> None:
    """Six events of three episodes: A opened first but changed last, so neither stream order nor last activity
    gives the order; each episode is its newest event (highest seq), with that event's stream id."""
    t0 = samples.T0_MS
    await publish(connect_as(Role.DETECTOR), settings,
                  episode_event("A", 0, opened_ms=t0 + 10),
                  episode_event("B", 0, opened_ms=t0 + 20),
                  episode_event("A", 1, opened_ms=t0 + 10, roi_net=0.0020, peak_roi_net=0.0020),
                  episode_event("C", 0, opened_ms=t0 + 30),
                  episode_event("B", 1, opened_ms=t0 + 20, close_reason=CloseReason.STALE),
                  episode_event("A", 2, opened_ms=t0 + 10, roi_net=0.0015, peak_roi_net=0.0020,
                                close_reason=CloseReason.BELOW_MIN_ROI))
    stream_ids = [entry_id.decode() for entry_id, _ in await admin.xrange("strategy.episode")]
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{dashboard}/api/episodes") as response:
            assert response.status == 200
            rows = await response.json()
        async with http.get(f"{dashboard}/api/episodes?count=2") as response:
            newest_two = await response.json()
    assert [(r["id"], r["event"], r["seq"], r["close_reason"]) for r in rows] == [
        ("C", "open", 0, None), ("B", "close", 1, "stale"), ("A", "close", 2, "below_min_roi")]
    assert [r["stream_id"] for r in rows] == [stream_ids[3], stream_ids[4], stream_ids[5]]
    a = rows[2]
    assert (a["roi_net"], a["peak_roi_net"], a["duration_ms"], a["opportunities"]) == (0.0015, 0.0020, 2000, 3)
    assert [r["id"] for r in newest_two] == ["C", "B"]


async def test_an_episode_carries_the_paper_result_of_its_first_opportunity_joined_by_sim_id(
    dashboard: str, connect_as: Callable[..., Redis], settings: Settings
) -> None:
    """first opportunity → its sim_id → the fill with that sim_id on strategy.fill: not the latest opportunity's
    fill, "no result yet" while unfilled, and no sim_id for an opportunity the stream does not hold."""
    t0 = samples.T0_MS
    await publish(connect_as(Role.DETECTOR), settings,
                  samples.opportunity(id="opp-first", sim_id="sim-first"),
                  samples.opportunity(id="opp-later", sim_id="sim-later"),
                  samples.opportunity(id="opp-unfilled", sim_id="sim-unfilled"))
    await publish(connect_as(Role.PAPER), settings,
                  samples.fill(opportunity_id="opp-first", trace=FillTrace(
                      sim_id="sim-first", status=FillStatus.FILLED, legs=[], expected_pnl=0.72, realized_pnl=0.5)),
                  samples.fill(opportunity_id="opp-later", trace=FillTrace(
                      sim_id="sim-later", status=FillStatus.FAILED, legs=[], expected_pnl=0.7, realized_pnl=-0.25)))
    await publish(connect_as(Role.DETECTOR), settings,
                  episode_event("filled", 1, opened_ms=t0 + 30, first="opp-first", opportunity_id="opp-later"),
                  episode_event("unfilled", 0, opened_ms=t0 + 20, first="opp-unfilled"),
                  episode_event("unknown", 0, opened_ms=t0 + 10, first="opp-not-on-the-stream"))
    async with aiohttp.ClientSession() as http, http.get(f"{dashboard}/api/episodes") as response:
        paper = {row["id"]: row["paper"] for row in await response.json()}
    assert paper["filled"]["sim_id"] == "sim-first"
    assert (paper["filled"]["result"]["status"], paper["filled"]["result"]["realized_pnl"]) == ("filled", 0.5)
    assert paper["unfilled"] == {"sim_id": "sim-unfilled", "result": None}
    assert paper["unknown"] == {"sim_id": None, "result": None}


async def test_events_start_with_each_episodes_state_then_send_its_new_events(
    dashboard: str, connect_as: Callable[..., Redis], settings: Settings
) -> None:
    """On connect: the newest state of each episode (oldest opened first, with its paper result), never an
    older event of it; then each new event as it is written."""
    t0 = samples.T0_MS
    detector = connect_as(Role.DETECTOR)
    await publish(detector, settings, episode_event("A", 0, opened_ms=t0 + 10),
                  episode_event("B", 0, opened_ms=t0 + 20), episode_event("A", 1, opened_ms=t0 + 10, roi_net=0.002))
    received: list[dict[str, Any]] = []
    async with aiohttp.ClientSession() as http, http.get(f"{dashboard}/events") as response:
        async for event, event_id, data in sse_events(response):
            if event != "episode":
                continue
            assert event_id == ""  # only opportunities carry ids: Last-Event-ID stays an opportunity's
            received.append(orjson.loads(data))
            if len(received) == 2:
                await publish(detector, settings,
                              episode_event("A", 2, opened_ms=t0 + 10, close_reason=CloseReason.BELOW_MIN_ROI))
            if len(received) == 3:
                break
    assert [(e["id"], e["seq"], e["event"]) for e in received] == [("A", 1, "update"), ("B", 0, "open"),
                                                                    ("A", 2, "close")]
    assert received[0]["roi_net"] == 0.002
    assert received[0]["paper"] == {"sim_id": None, "result": None}  # opp-1 is not on the stream
    assert "paper" not in received[2]  # live events: the page joins them from opportunity and fill events


async def test_status_shows_each_held_books_depth_time_age_and_latency_and_flags_replayed_ones(
    settings: Settings, connect_as: Callable[..., Redis], admin: Redis  # admin: an empty database
) -> None:
    """Per held book (both venues hold BTC-USD, ETH-USD, ETH-BTC by default), from the hot cache. A venue time
    more than REPLAYED_AFTER_MS behind receipt is replayed data: flagged, so the page shows no latency."""
    now = time.time_ns() // 1_000_000
    books = [
        samples.snapshot("BTC-USD", exchange="kraken", ts_event=now - 40, ts_ingest=now - 25),  # live: 15 ms
        samples.snapshot("ETH-USD", exchange="kraken", ts_event=samples.T0_MS, ts_ingest=now),  # the demo's session
        samples.snapshot("BTC-USD", ts_event=now - REPLAYED_AFTER_MS, ts_ingest=now),  # exactly at the limit
        samples.snapshot("ETH-USD", ts_event=now - REPLAYED_AFTER_MS - 1, ts_ingest=now),  # 1 ms past it
        samples.snapshot("ETH-BTC", ts_event=now - 700_000, ts_ingest=now - 600_000),  # received 10 min ago
    ]
    await publish(connect_as(Role.PRODUCER), settings, *books)
    fresh_for_a_minute = settings.model_copy(update={"detector": settings.detector.model_copy(
        update={"max_age_ms": 60_000})})
    async with running_dashboard(fresh_for_a_minute, connect_as, TOKEN) as url, aiohttp.ClientSession() as http, \
            http.get(f"{url}/api/status") as response:
        status = await response.json()
    shown = {(book["exchange"], book["symbol"]): book for book in status["books"]}
    assert set(shown) == {(venue, symbol) for venue in ("coinbase", "kraken") for symbol in ("BTC-USD", "ETH-USD",
                                                                                           "ETH-BTC")}
    live = shown["kraken", "BTC-USD"]
    assert (live["ts_event"], live["venue_to_ingest_ms"], live["replayed"], live["stale"]) == (now - 40, 15, False,
                                                                                                False)
    assert live["age_ms"] >= 25 and live["source"] == "ws"
    assert (live["best_bid"], live["best_ask"], live["bid_levels"], live["bid_cumulative"]) == (
        [60_000.5, 0.25], [60_001.5, 0.4], 2, 1.75)  # samples.snapshot: mid 60,000 + book_seq 1
    assert (shown["kraken", "ETH-USD"]["replayed"], shown["kraken", "ETH-USD"]["venue_to_ingest_ms"]) == (
        True, now - samples.T0_MS)
    assert [shown["coinbase", s]["replayed"] for s in ("BTC-USD", "ETH-USD")] == [False, True]
    assert (shown["coinbase", "ETH-BTC"]["stale"], shown["coinbase", "ETH-BTC"]["age_ms"] >= 600_000) == (True, True)
    assert shown["kraken", "ETH-BTC"] == {"exchange": "kraken", "symbol": "ETH-BTC",
                                          "detail": "no book in the hot cache (never received, or expired)"}


async def test_the_favicon_is_served(dashboard: str) -> None:
    async with aiohttp.ClientSession() as http, http.get(f"{dashboard}/favicon.ico") as response:
        assert (response.status, response.content_type) == (200, "image/svg+xml")
        assert (await response.text()).startswith("<svg")


async def test_a_valid_symbol_change_is_published_and_answered_with_the_entry(
    dashboard: str, admin: Redis
) -> None:
    body = {"op": "add", "symbols": {"coinbase": ["BTC-EUR"], "kraken": ["ETH-BTC"]}}
    async with aiohttp.ClientSession() as http, http.post(
            f"{dashboard}/api/symbols", json=body, headers={"Authorization": f"Bearer {TOKEN}"}) as response:
        assert response.status == 202
        published = (await response.json())["published"]
    [(_, fields)] = await admin.xrange("strategy.ctrl.symbols")
    on_stream = decode_as(SymbolControl, fields)
    assert on_stream.model_dump(mode="json") == published
    assert (on_stream.op, on_stream.source, on_stream.issued_by) == (ControlOp.ADD, ControlSource.USER, "dashboard")
    assert on_stream.symbols == {"coinbase": ["BTC-EUR"], "kraken": ["ETH-BTC"]}


async def test_symbol_changes_are_refused_when_no_token_is_configured(
    settings: Settings, connect_as: Callable[..., Redis], catalogs: dict[str, list[str]], admin: Redis
) -> None:
    async with running_dashboard(settings, connect_as, token=None) as url, aiohttp.ClientSession() as http:
        async with http.post(f"{url}/api/symbols", json={"symbols": {"coinbase": ["BTC-USD"]}},
                             headers={"Authorization": f"Bearer {TOKEN}"}) as response:
            assert response.status == 403
            assert "TRIARB_DASHBOARD_TOKEN" in (await response.json())["detail"]
    assert await admin.xlen("strategy.ctrl.symbols") == 0


async def test_redis_away_is_a_503_to_retry_and_any_other_failure_a_bare_500(
    settings: Settings, connect_as: Callable[..., Redis]
) -> None:
    """No traceback or Redis reply text reaches the client: an outage says "retry", a bug says nothing."""
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        dead_port = sock.getsockname()[1]
    unreachable = Redis(port=dead_port, socket_connect_timeout=1)
    not_allowed = connect_as(Role.CONTROL)  # a real user the dashboard's reads are refused to (NOPERM)
    async with aiohttp.ClientSession() as http:
        async with running_dashboard(settings, connect_as, TOKEN, reader=unreachable) as url, \
                http.get(f"{url}/api/opportunities") as response:
            assert (response.status, response.headers["Retry-After"]) == (503, "1")
            assert (await response.json())["detail"] == "Redis is unavailable, retry shortly: ConnectionError"
        async with running_dashboard(settings, connect_as, TOKEN, reader=not_allowed) as url, \
                http.get(f"{url}/api/opportunities") as response:
            assert (response.status, await response.text()) == (500, "Internal Server Error")
    await unreachable.aclose()


# --- every bad input: its answer and reason, and nothing written --------------------------------------


@dataclass(frozen=True)
class Sent:
    """One request as raw bytes on the wire, so header octets are exactly what the row says."""

    method: str
    target: str
    headers: tuple[tuple[str, bytes], ...] = ()
    body: bytes | None = None
    chunked: bool = False
    declared_length: int | None = None
    """Content-Length to claim while sending no body (the server must answer without waiting for it)."""


def auth(value: bytes = b"Bearer " + TOKEN.encode()) -> tuple[str, bytes]:
    return "Authorization", value


def post_json(body: Any, *, token: bytes | None = b"Bearer " + TOKEN.encode()) -> Sent:
    headers = (("Content-Type", b"application/json"),) + ((auth(token),) if token is not None else ())
    return Sent("POST", "/api/symbols", headers, orjson.dumps(body) if not isinstance(body, bytes) else body)


def last_event_id(value: str) -> Sent:
    return Sent("GET", "/events", (("Last-Event-ID", value.encode()),))


VALID = {"symbols": {"coinbase": ["BTC-USD"]}}
OVER_LIMIT = b'{"symbols": {"coinbase": ["BTC-USD"]}}'.ljust(MAX_ENTRY_BYTES + 1)  # JSON allows trailing spaces

BAD_INPUTS = [
    # (id, request, status, text in the answer)
    ("no-token", post_json(VALID, token=None), 401, "valid bearer token"),
    ("wrong-token", post_json(VALID, token=b"Bearer nope"), 401, "valid bearer token"),
    ("non-ascii-token", post_json(VALID, token="Bearer é\xff".encode("latin-1")), 401, "valid bearer token"),
    ("utf8-token", post_json(VALID, token="Bearer s3cret-tokén".encode()), 401, "valid bearer token"),
    ("10kb-token", post_json(VALID, token=b"Bearer " + b"a" * 10_000), 401, "valid bearer token"),
    ("basic-scheme", post_json(VALID, token=b"Basic " + TOKEN.encode()), 401, "valid bearer token"),
    ("control-char-token", post_json(VALID, token=b"Bearer \x01\x7f" + TOKEN.encode()), 401, "valid bearer token"),
    ("bad-json-no-token", post_json(b"{not json", token=None), 401, "valid bearer token"),  # auth before parsing
    ("30mb-declared-no-token", Sent("POST", "/api/symbols", (), declared_length=30_000_000), 401, "bearer token"),
    ("30mb-declared", Sent("POST", "/api/symbols", (auth(),), declared_length=30_000_000), 413, "limit of 65536"),
    ("over-limit-by-1", post_json(OVER_LIMIT), 413, "limit of 65536"),
    ("over-limit-chunked", Sent("POST", "/api/symbols", (auth(),), OVER_LIMIT, chunked=True), 413, "limit of 65536"),
    ("not-json", post_json(b"{not json"), 422, "Invalid JSON"),
    ("empty-body", post_json(b""), 422, "Invalid JSON"),
    ("unknown-venue", post_json({"symbols": {"coinbase": ["BTC-EUR"], "notavenue": ["BTC-USD"]}}), 422,
     "unknown venue 'notavenue'"),
    ("unlisted-market", post_json({"symbols": {"coinbase": ["NOPE-USD"]}}), 422, "coinbase lists no market NOPE-USD"),
    ("market-of-another-venue", post_json({"symbols": {"kraken": ["BTC-EUR"]}}), 422,
     "kraken lists no market BTC-EUR"),
    ("flat-list", post_json({"symbols": ["BTC-USD"]}), 422, "symbols: Input should be an object"),
    ("unknown-op", post_json({"op": "replace", **VALID}), 422, "op: Input should be 'set', 'add' or 'remove'"),
    ("extra-field", post_json({"source": "detector", **VALID}), 422, "source: Extra inputs are not permitted"),
    ("empty-list", post_json({"symbols": {"coinbase": []}}), 422, "coinbase: names no symbols"),
    ("lower-case-symbol", post_json({"symbols": {"coinbase": ["btc-usd"]}}), 422, "is not canonical BASE-QUOTE"),
    ("1001-symbols", post_json({"symbols": {"coinbase": [f"A{n}-USD" for n in range(1001)]}}), 422,
     "more than the limit of 1000"),
    ("sse-id-trailing-dash", last_event_id("1-"), 422, "string_pattern_mismatch"),
    ("sse-id-30-digits", last_event_id("1" * 30), 422, "string_pattern_mismatch"),
    ("sse-id-5000-digits", last_event_id("1" * 5_000), 422, "string_pattern_mismatch"),
    ("sse-since-100000-digits", Sent("GET", "/events?since=" + "1" * 100_000), 422, "string_pattern_mismatch"),
    ("sse-since-2^64", Sent("GET", f"/events?since={2**64}-0"), 422, "each part must be at most"),
    ("sse-id-seq-2^64", last_event_id(f"1-{2**64}"), 422, "each part must be at most"),
    ("sse-id-signed", last_event_id("-1"), 422, "string_pattern_mismatch"),
    ("sse-since-plus", Sent("GET", "/events?since=%2B1"), 422, "string_pattern_mismatch"),
    ("sse-since-space", Sent("GET", "/events?since=%201"), 422, "string_pattern_mismatch"),
    ("sse-since-three-parts", Sent("GET", "/events?since=1-2-3"), 422, "string_pattern_mismatch"),
    ("sse-since-arabic-digit", Sent("GET", "/events?since=%D9%A1"), 422, "string_pattern_mismatch"),
    ("sse-since-empty", Sent("GET", "/events?since="), 422, "string_pattern_mismatch"),
    ("min-roi-nan", Sent("GET", "/api/opportunities?min_roi=nan"), 422, "finite_number"),
    ("min-roi-inf", Sent("GET", "/api/opportunities?min_roi=inf"), 422, "finite_number"),
    ("min-roi-2", Sent("GET", "/api/opportunities?min_roi=2"), 422, "less_than_equal"),
    ("limit-0", Sent("GET", "/api/opportunities?limit=0"), 422, "greater_than_equal"),
    ("limit-huge", Sent("GET", "/api/opportunities?limit=" + "9" * 5000), 422, "int_parsing"),
    ("episodes-count-0", Sent("GET", "/api/episodes?count=0"), 422, "greater_than_equal"),
    ("episodes-count-negative", Sent("GET", "/api/episodes?count=-1"), 422, "greater_than_equal"),
    ("episodes-count-1001", Sent("GET", "/api/episodes?count=1001"), 422, "less_than_equal"),
    ("episodes-count-fraction", Sent("GET", "/api/episodes?count=1.5"), 422, "int_parsing"),
    ("episodes-count-empty", Sent("GET", "/api/episodes?count="), 422, "int_parsing"),
    ("episodes-count-huge", Sent("GET", "/api/episodes?count=" + "9" * 5000), 422, "int_parsing"),
]


async def send_raw(base_url: str, sent: Sent) -> tuple[int, str]:
    """Send ``sent`` on a fresh connection; (status, body text) of the answer."""
    host, port = base_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    head = [f"{sent.method} {sent.target} HTTP/1.1".encode(), f"Host: {host}".encode(), b"Connection: close"]
    head += [name.encode() + b": " + value for name, value in sent.headers]
    if sent.chunked:
        head.append(b"Transfer-Encoding: chunked")
    elif sent.declared_length is not None:
        head.append(f"Content-Length: {sent.declared_length}".encode())
    elif sent.body is not None:
        head.append(f"Content-Length: {len(sent.body)}".encode())
    payload = b"\r\n".join(head) + b"\r\n\r\n"
    if sent.chunked and sent.body is not None:
        for start in range(0, len(sent.body), 8192):
            chunk = sent.body[start:start + 8192]
            payload += f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
        payload += b"0\r\n\r\n"
    elif sent.declared_length is None and sent.body is not None:
        payload += sent.body
    with contextlib.suppress(ConnectionError):  # the server may answer and close before reading everything
        writer.write(payload)
        await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    status_line, _, rest = answer.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2].decode("latin-1")


@pytest.mark.parametrize(("sent", "status", "reason"), [row[1:] for row in BAD_INPUTS],
                         ids=[row[0] for row in BAD_INPUTS])
async def test_bad_input_gets_a_4xx_with_its_reason(
    dashboard: str, admin: Redis, sent: Sent, status: int, reason: str
) -> None:
    """Each row: the answer's status and a reason in it; no bad input writes a control entry or gets a 5xx.
    (400 rows are refused by the HTTP server itself, uvicorn's h11, before the app sees them.)"""
    got_status, body = await send_raw(dashboard, sent)
    assert (got_status, reason in body) == (status, True), body[:500]
    assert await admin.xlen("strategy.ctrl.symbols") == 0


@pytest.mark.parametrize("body_size", [MAX_ENTRY_BYTES, MAX_ENTRY_BYTES + 1], ids=["exactly-the-limit", "one-over"])
@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_a_body_of_exactly_the_limit_is_read_and_one_byte_more_is_refused(
    dashboard: str, admin: Redis, body_size: int, chunked: bool
) -> None:
    body = orjson.dumps(VALID).ljust(body_size)
    sent = Sent("POST", "/api/symbols", (auth(), ("Content-Type", b"application/json")), body, chunked=chunked)
    status, _ = await send_raw(dashboard, sent)
    assert (status, await admin.xlen("strategy.ctrl.symbols")) == ((202, 1) if body_size == MAX_ENTRY_BYTES
                                                                     else (413, 0))


async def test_a_streamed_body_is_refused_as_soon_as_it_passes_the_limit(dashboard: str, admin: Redis) -> None:
    """A chunked body with no end in sight: the answer comes once 64 KiB + 1 have arrived, not at its end."""
    host, port = dashboard.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(f"POST /api/symbols HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {TOKEN}\r\n"
                 "Transfer-Encoding: chunked\r\n\r\n".encode())
    chunk = b" " * 8192
    for _ in range(MAX_ENTRY_BYTES // len(chunk) + 1):  # 72 KiB sent; the terminating 0-chunk never is
        writer.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
    await writer.drain()
    status_line = await asyncio.wait_for(reader.readline(), 5)
    writer.close()
    assert status_line.split()[1] == b"413"
    assert await admin.xlen("strategy.ctrl.symbols") == 0


async def test_a_venue_whose_producer_has_not_registered_its_markets_is_refused(
    dashboard: str, admin: Redis, settings: Settings
) -> None:
    await admin.delete(settings.names.markets_key("kraken"))
    body = {"symbols": {"coinbase": ["BTC-USD"], "kraken": ["BTC-USD"]}}
    async with aiohttp.ClientSession() as http, http.post(
            f"{dashboard}/api/symbols", json=body, headers={"Authorization": f"Bearer {TOKEN}"}) as response:
        assert response.status == 422
        assert "kraken: no market list registered (is the kraken producer running?)" in (await response.json())[
            "detail"]
    assert await admin.xlen("strategy.ctrl.symbols") == 0  # coinbase's part is not written either


# --- any Authorization octets, straight into the ASGI app ----------------------------------------------


async def call_app(app: Any, headers: list[tuple[bytes, bytes]], body: bytes, *, hang_up: bool = False) -> int:
    """POST /api/symbols to the ASGI ``app`` in this event loop (``hang_up``: the client disconnects after
    the first part of the body); the answer's status."""
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/api/symbols", "raw_path": b"/api/symbols", "query_string": b"", "root_path": "",
             "headers": headers, "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}
    messages = [{"type": "http.request", "body": body, "more_body": hang_up}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return int(sent[0]["status"])


@hypothesis.settings(max_examples=300, deadline=None,
                     suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture])
@hypothesis.given(value=st.binary(max_size=2_000) | st.binary(max_size=2_000).map(lambda rest: b"Bearer " + rest))
@hypothesis.example(value=b"Bearer \x00\x01\x1f\x7f" + TOKEN.encode())  # control characters
@hypothesis.example(value=b"Bearer s3cret-\r\ntoken")  # a line break inside
@hypothesis.example(value=b"Bearer\t" + TOKEN.encode())  # tab instead of space
@hypothesis.example(value=b"Bearer " + bytes(range(256)))  # every octet
@hypothesis.example(value=b"Bearer " + b"\xff" * 1_000_000)  # 1 MB
@hypothesis.example(value="Bearer é\xff".encode("latin-1"))  # the one that was a 500
async def test_any_authorization_value_but_the_token_gets_401_from_the_app_itself(
    settings: Settings, connect_as: Callable[..., Redis], value: bytes
) -> None:
    """Octets no HTTP server would pass on, straight into the ASGI app: 401, never a 500."""
    hypothesis.assume(TOKEN.encode() not in value)
    app = create_app(settings.model_copy(update={"dashboard_token": SecretStr(TOKEN)}), connect_as(Role.DASHBOARD),
                     connect_as(Role.CONTROL))
    assert await call_app(app, [(b"authorization", value)], orjson.dumps(VALID)) == 401


async def test_a_client_that_hangs_up_mid_body_gets_400_not_an_error(
    settings: Settings, connect_as: Callable[..., Redis], admin: Redis
) -> None:
    app = create_app(settings.model_copy(update={"dashboard_token": SecretStr(TOKEN)}), connect_as(Role.DASHBOARD),
                     connect_as(Role.CONTROL))
    assert await call_app(app, [(b"authorization", b"Bearer " + TOKEN.encode())], b'{"symbols": ', hang_up=True) == 400
    assert await admin.xlen("strategy.ctrl.symbols") == 0
