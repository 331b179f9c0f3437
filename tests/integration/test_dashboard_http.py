"""The dashboard over real HTTP: SSE resume by Last-Event-ID, the JSON API, the guarded symbol endpoint."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import aiohttp
import pytest
from pydantic import SecretStr
from redis.asyncio import Redis

from common.bus import Publisher
from common.config import Role, Settings
from dashboard.server import serve_dashboard
from tests import samples

pytestmark = pytest.mark.integration
TOKEN = "s3cret-token"


@pytest.fixture
async def dashboard(settings: Settings, connect_as: Callable[..., Redis]) -> AsyncIterator[str]:
    settings = settings.model_copy(update={"dashboard_port": 0, "dashboard_token": SecretStr(TOKEN)})
    stop, ready = asyncio.Event(), asyncio.get_running_loop().create_future()
    task = asyncio.create_task(serve_dashboard(settings, connect_as(Role.DASHBOARD), connect_as(Role.CONTROL), stop,
                                               on_ready=ready.set_result))
    port = await asyncio.wait_for(ready, 10)
    yield f"http://127.0.0.1:{port}"
    stop.set()
    await asyncio.wait_for(task, 10)


async def publish_opportunities(redis: Redis, settings: Settings, count: int) -> None:
    async with Publisher(redis, settings.names, settings.streams, settings.bus) as pub:
        for n in range(count):
            await pub.publish(samples.opportunity(id=f"opp-{n}"))


async def read_opportunity_events(
    http: aiohttp.ClientSession, url: str, count: int, headers: dict[str, str] | None = None
) -> list[tuple[str, str]]:
    """(event id, opportunity id) of the first ``count`` opportunity events, parsed from the raw SSE text."""
    found: list[tuple[str, str]] = []
    event, event_id = "", ""
    async with http.get(url, headers=headers or {}) as response:
        async for raw in response.content:
            line = raw.decode().rstrip("\r\n")
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("id:"):
                event_id = line.split(":", 1)[1].strip()
            elif line.startswith("data:") and event == "opportunity":
                found.append((event_id, line.split('"id":"', 1)[1].split('"', 1)[0]))
                if len(found) == count:
                    return found
    return found


async def test_reconnect_with_last_event_id_resumes_exactly_after_it(
    admin: Redis, dashboard: str, connect_as: Callable[..., Redis], settings: Settings
) -> None:
    await publish_opportunities(connect_as(Role.DETECTOR), settings, 10)
    async with aiohttp.ClientSession() as http:
        first = await read_opportunity_events(http, f"{dashboard}/events?since=0", 4)
        rest = await read_opportunity_events(http, f"{dashboard}/events", 6, headers={"Last-Event-ID": first[-1][0]})
    assert [o for _, o in first] == ["opp-0", "opp-1", "opp-2", "opp-3"]
    assert [o for _, o in rest] == [f"opp-{n}" for n in range(4, 10)]  # exactly the rest: none missed or doubled


async def test_api_lists_opportunities_and_status(
    admin: Redis, dashboard: str, connect_as: Callable[..., Redis], settings: Settings
) -> None:
    await publish_opportunities(connect_as(Role.DETECTOR), settings, 3)
    async with Publisher(connect_as(Role.PRODUCER), settings.names, settings.streams, settings.bus) as pub:
        await pub.publish(samples.health())
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{dashboard}/api/opportunities?limit=2") as response:
            newest = await response.json()
        async with http.get(f"{dashboard}/api/status") as response:
            status = await response.json()
        async with http.get(f"{dashboard}/healthz") as response:
            assert response.status == 200
    assert [o["id"] for o in newest] == ["opp-2", "opp-1"]
    assert status["streams"]["strategy.opportunity"]["length"] == 3
    assert status["feeds"][0]["exchange"] == "kraken" and status["feeds"][0]["status"] == "up"


async def test_symbol_changes_need_the_token_and_known_markets(
    admin: Redis, dashboard: str, connect_as: Callable[..., Redis], settings: Settings
) -> None:
    async with Publisher(connect_as(Role.PRODUCER), settings.names, settings.streams, settings.bus) as pub:
        await pub.publish(samples.snapshot("BTC-USD"))
    body = {"symbols": {"coinbase": ["BTC-USD"]}}
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{dashboard}/api/symbols", json=body) as response:
            assert response.status == 401
        auth = {"Authorization": f"Bearer {TOKEN}"}
        async with http.post(f"{dashboard}/api/symbols", json={"symbols": {"coinbase": ["NOPE-USD"]}},
                             headers=auth) as response:
            assert response.status == 422
            assert "unknown markets: NOPE-USD" in (await response.json())["detail"]
        async with http.post(f"{dashboard}/api/symbols", json=body, headers=auth) as response:
            assert response.status == 202
    assert await admin.xlen("strategy.ctrl.symbols") == 1
