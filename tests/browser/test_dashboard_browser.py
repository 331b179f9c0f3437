"""The dashboard in a real browser (Debian's Chromium via Playwright).

First against episodes, opportunities, fills and books the test writes itself (the dashboard in-process on the
session's redis-server): one row per episode, changed in place, with its first opportunity's paper result.
Then during a demo replay: the stack runs as `triarb up --demo`; the dashboard under test runs as its own
`triarb dashboard` process on a fixed port, so the test can kill and restart it while the page stays open.
After the restart the page must hold every opportunity of the stream exactly once (the browser resumed with
Last-Event-ID) and every episode once, in its newest state.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio

from common.config import Role, Settings
from schemas import FillTrace
from schemas.codec import encode_fields
from schemas.episode import CloseReason
from schemas.health import Channel, FeedStatus, Health
from schemas.opportunity import FillStatus
from tests import samples
from tests.integration.test_dashboard_http import episode_event, publish, running_dashboard

CHROMIUM = "/usr/bin/chromium"
REPO = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium is not installed (make test installs it)"),
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed"),
]
async_api = pytest.importorskip("playwright.async_api", reason="playwright is not installed (pip install -e .[dev])")


FLOAT_NOISE = re.compile(r"\.\d*(0{6,}[1-9]|9{6,}\d)")
"""What binary float sums look like when printed whole: 0.41130096000000005, 5.6948725399999995."""
CLOCK_LABEL = re.compile(r"^\d\d:\d\d(:\d\d)?$")


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Any]:
    async with async_api.async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"],
        )
        try:
            yield browser
        finally:
            await browser.close()


def watch_for_problems(page: Any) -> list[str]:
    """Console errors and warnings, uncaught exceptions and answers >= 400 the page meets, as they happen."""
    problems: list[str] = []
    page.on("console", lambda message: problems.append(f"console {message.type}: {message.text}")
            if message.type in ("error", "warning") else None)
    page.on("pageerror", lambda error: problems.append(f"uncaught: {error}"))
    page.on("response", lambda response: problems.append(f"{response.status} {response.url}")
            if response.status >= 400 else None)
    return problems


async def cell_text(page: Any, row: str, cell: str) -> str:
    return str(await page.inner_text(f"{row} td.{cell}"))


async def test_an_episode_is_one_row_that_updates_and_closes_in_place_with_its_first_paper_result(
    settings: Settings, connect_as: Callable[..., redis.asyncio.Redis], admin_sync: redis.Redis  # empty database
) -> None:
    now = time.time_ns() // 1_000_000
    detector, paper = connect_as(Role.DETECTOR), connect_as(Role.PAPER)
    # kraken holds BTC-USD, ETH-USD and ETH-BTC by default: a live book whose bid side sums to float noise,
    # and one with the demo session's venue time (2026-01-01)
    await publish(connect_as(Role.PRODUCER), settings,
                  samples.snapshot("BTC-USD", exchange="kraken", ts_event=now - 30, ts_ingest=now,
                                   bids=[(60_000.5, 0.25, 0.25), (60_000.0, 0.16130096, 0.41130096000000005)]),
                  samples.snapshot("ETH-USD", exchange="kraken", ts_event=samples.T0_MS, ts_ingest=now))
    row = "#episodes tbody tr[data-id='ep-1']"
    fresh_for_a_minute = settings.model_copy(update={"detector": settings.detector.model_copy(
        update={"max_age_ms": 60_000})})  # the live book stays fresh however long the steps before take
    async with running_dashboard(fresh_for_a_minute, connect_as, token=None) as url, chromium() as browser:
        page = await browser.new_page()
        problems = watch_for_problems(page)
        await page.goto(url)
        await page.wait_for_selector("#connection.online")

        # one publish each: the detector's ACL grants the two streams in separate selectors, as the detector
        # itself writes them (opportunities, then episode events)
        await publish(detector, settings, samples.opportunity(id="opp-first", sim_id="sim-first", ts_detect=now))
        await publish(detector, settings, episode_event("ep-1", 0, opened_ms=now, first="opp-first"))
        await page.wait_for_selector(f"{row}[data-status=open]")
        await page.eval_on_selector(row, "row => { row.dataset.marker = 'the first element' }")
        assert await cell_text(page, row, "status") == "open"
        assert await cell_text(page, row, "cycle") == "coinbase BTC-USD buy → ETH-BTC buy → ETH-USD sell"
        assert await cell_text(page, row, "paper") == "pending"  # no fill for sim-first yet
        ticking = await cell_text(page, row, "duration")
        await page.wait_for_function(f"document.querySelector(\"{row} td.duration\").textContent !== '{ticking}'")

        await publish(paper, settings, samples.fill(opportunity_id="opp-first", trace=FillTrace(
            sim_id="sim-first", status=FillStatus.FILLED, legs=[], expected_pnl=0.72, realized_pnl=0.53)))
        await page.wait_for_function(f"document.querySelector(\"{row} td.paper\").textContent === 'filled +0.53 USD'")

        await publish(detector, settings, episode_event("ep-1", 1, opened_ms=now, first="opp-first", roi_net=0.0025,
                                                        peak_roi_net=0.0025, best_notional=412.5, best_profit=1.03,
                                                        opportunity_id="opp-second"))
        await page.wait_for_selector(f"{row}[data-seq='1']")
        assert [await cell_text(page, row, cell) for cell in ("roi", "peak", "size", "profit", "count")] == [
            "25.0 bps", "25.0 bps", "412.5 USD", "+1.03 USD", "2"]
        assert await cell_text(page, row, "paper") == "filled +0.53 USD"  # still the first opportunity's

        await publish(detector, settings, episode_event("ep-1", 2, opened_ms=now, first="opp-first", roi_net=0.0009,
                                                        peak_roi_net=0.0025, close_reason=CloseReason.BELOW_MIN_ROI))
        await page.wait_for_selector(f"{row}[data-status=closed]")
        assert await cell_text(page, row, "status") == "closed (ROI below min)"
        assert await cell_text(page, row, "duration") == "2.0 s"  # the episode's duration_ms, no longer ticking
        assert await cell_text(page, row, "roi") == "9.0 bps"
        assert await page.locator("#episodes tbody tr").count() == 1
        assert await page.get_attribute(row, "data-marker") == "the first element"  # changed in place

        await page.wait_for_selector("#book-kraken-BTC-USD[data-state=fresh]")
        live_book = await page.inner_text("#book-kraken-BTC-USD")
        assert "venue → ingest 30 ms" in live_book and "(Σ2 0.41130096)" in live_book
        await page.wait_for_selector("#book-kraken-ETH-USD[data-replayed=true]")
        replayed_book = await page.inner_text("#book-kraken-ETH-USD .latency")
        assert replayed_book.startswith("replayed data: venue time") and "ms" not in replayed_book
        assert await page.is_visible("#replayed")
        assert "no book in the hot cache" in await page.inner_text("#book-kraken-ETH-BTC")

        x_ticks = await page.eval_on_selector_all("#chart .x-tick", "ticks => ticks.map(t => t.textContent)")
        assert len(x_ticks) >= 2 and all(CLOCK_LABEL.match(tick) for tick in x_ticks), x_ticks
        assert await page.text_content("#chart .y-unit") == "net ROI (bps)"
        assert await page.text_content("#chart .x-unit") == "detected at (UTC)"
        assert await page.locator("#chart circle[data-id='opp-first']").count() == 1

        await page.reload()  # the connect snapshot: the episode's state, its paper result joined by the server
        await page.wait_for_selector(f"{row}[data-status=closed]")
        assert await cell_text(page, row, "paper") == "filled +0.53 USD"
        assert await page.locator("#episodes tbody tr").count() == 1

        for icon in ("/favicon.ico", "/static/favicon.svg"):
            answer = await page.request.get(url + icon)
            assert (answer.status, answer.headers["content-type"]) == (200, "image/svg+xml"), icon
        assert FLOAT_NOISE.search(await page.inner_text("body")) is None
        assert problems == []


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def env_for(var_dir: Path, dashboard_port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIARB_") and k != "REDIS_URL"}
    return env | {"TRIARB_VAR_DIR": str(var_dir), "TRIARB_EMBEDDED_PORT": "0", "TRIARB_SERVICE_PORT": "0",
                  "TRIARB_DASHBOARD_PORT": str(dashboard_port), "TRIARB_LOG_FORMAT": "json"}


def start(args: list[str], env: dict[str, str], cwd: Path, ready: str) -> subprocess.Popen[str]:
    process = subprocess.Popen([sys.executable, "-m", "triarb.cli", *args], env=env, cwd=cwd,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert process.stdout is not None
    for _ in range(5):
        line = process.stdout.readline()
        if ready in line:
            return process
    process.kill()
    raise AssertionError(f"{args} did not print {ready!r}")


@pytest.fixture
def demo_stack(tmp_path: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    var_dir = tmp_path / "var"
    stack = start(["up", "--demo"], env_for(var_dir, free_port()), tmp_path, "triarb is up")
    yield var_dir, env_for(var_dir, free_port())
    stack.send_signal(signal.SIGINT)
    stack.wait(timeout=30)


def client_as(var_dir: Path, role: str) -> redis.Redis:
    runtime = json.loads((var_dir / "redis.json").read_text())
    return redis.Redis(port=runtime["port"], username=role, password=runtime["passwords"][role])


def stream_opportunity_ids(var_dir: Path) -> list[str]:
    return [fields[b"id"].decode() for _, fields in client_as(var_dir, "dashboard").xrange("strategy.opportunity")]


def publish_degraded_feed(var_dir: Path) -> None:
    """A health record of a feed holding no symbols, for a venue name no demo producer uses (so no live
    record replaces it)."""
    health = Health(exchange="testvenue", channel=Channel.WS, status=FeedStatus.DEGRADED, ts=int(time.time() * 1000),
                    detail="holds no symbols: add some with triarb symbols")
    fields = encode_fields(health)
    client_as(var_dir, "producer").xadd("md.health", dict(zip(fields[::2], fields[1::2], strict=True)))


async def border_color(page: Any, selector: str) -> str:
    return str(await page.eval_on_selector(selector, "tile => getComputedStyle(tile).borderLeftColor"))


def stream_episode_states(var_dir: Path) -> dict[str, int]:
    """Episode id → the highest seq on strategy.episode (its current state)."""
    states: dict[str, int] = {}
    for _, fields in client_as(var_dir, "dashboard").xrange("strategy.episode"):
        episode_id, seq = fields[b"id"].decode(), int(fields[b"seq"])
        states[episode_id] = max(seq, states.get(episode_id, -1))
    return states


async def page_episode_states(page: Any) -> list[tuple[str, int]]:
    rows = await page.eval_on_selector_all("#episodes tbody tr", "rows => rows.map(r => [r.dataset.id, r.dataset.seq])")
    return [(episode_id, int(seq)) for episode_id, seq in rows]


async def test_page_shows_feeds_books_and_episodes_and_resumes_after_a_server_restart(
    demo_stack: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    var_dir, env = demo_stack
    url = f"http://127.0.0.1:{env['TRIARB_DASHBOARD_PORT']}"
    dashboard = start(["dashboard"], env, tmp_path, "dashboard: http")
    async with chromium() as browser:
        page = await browser.new_page()
        await page.goto(url)
        await page.wait_for_selector("#feed-coinbase-ws[data-status=up]", timeout=30_000)
        await page.wait_for_selector("#feed-kraken-ws[data-status=up]", timeout=30_000)
        await page.wait_for_selector("#feed-coinbase-ws .lag[data-lag-ms]", timeout=15_000)
        await page.wait_for_selector("#episodes tbody tr", timeout=45_000)  # the first planted mispricing
        await page.wait_for_selector("#connection.online")
        await page.wait_for_function(  # the paper broker's fill (strategy.fill) of each episode's first opportunity
            "[...document.querySelectorAll('#episodes tbody td.paper')]"
            ".some(td => /^(filled|partial|failed) [+-]/.test(td.textContent))", timeout=30_000)

        # the demo replays a session recorded on 2026-01-01: its books are marked replayed, with no latency
        await page.wait_for_selector("#book-kraken-ETH-USD[data-replayed=true]", timeout=15_000)
        assert (await page.inner_text("#book-kraken-ETH-USD .latency")).startswith("replayed data")
        assert "Σ5 " in await page.inner_text("#book-kraken-ETH-USD .depth")  # cumulative sizes, L5
        assert FLOAT_NOISE.search(await page.inner_text("body")) is None  # the session's sums carry noise

        status = await (await page.request.get(f"{url}/api/status")).json()
        for venue, sets in status["symbols"].items():  # one tile per venue: what it holds, and both sets
            await page.wait_for_selector(f"#venue-{venue}[data-holds='{len(sets['holds'])}']", timeout=15_000)
            assert await page.get_attribute(f"#venue-{venue} .user", "data-count") == str(len(sets["user"]))
            assert await page.get_attribute(f"#venue-{venue} .detector", "data-count") == str(len(sets["detector"]))
        assert set(status["symbols"]) == {"coinbase", "kraken"}
        publish_degraded_feed(var_dir)
        await page.wait_for_selector("#feed-testvenue-ws[data-status=degraded]", timeout=15_000)
        assert "0 symbols" in await page.inner_text("#feed-testvenue-ws")
        assert await border_color(page, "#feed-testvenue-ws") not in {
            await border_color(page, "#feed-coinbase-ws"), "rgb(160, 174, 192)"}  # neither up's nor the default

        dashboard.send_signal(signal.SIGKILL)
        dashboard.wait(timeout=10)
        await page.wait_for_selector("#connection.offline", timeout=15_000)
        time.sleep(2)  # opportunities keep arriving in the stream while the dashboard is down
        dashboard = start(["dashboard"], env, tmp_path, "dashboard: http")
        await page.wait_for_selector("#connection.online", timeout=30_000)

        points_before = await page.locator("#chart circle").count()
        await page.wait_for_function(f"document.querySelectorAll('#chart circle').length > {points_before}",
                                     timeout=60_000)  # the next planted mispricing, after the restart
        shown = await page.eval_on_selector_all("#chart circle", "points => points.map(p => p.dataset.id)")
        for _ in range(100):  # each episode once, in its newest state (compared while no event is in flight)
            episodes_shown, episodes_in_stream = await page_episode_states(page), stream_episode_states(var_dir)
            if dict(episodes_shown) == episodes_in_stream:
                break
            await page.wait_for_timeout(200)
        await page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
    dashboard.send_signal(signal.SIGINT)
    dashboard.wait(timeout=10)

    in_stream = stream_opportunity_ids(var_dir)
    assert len(shown) == len(set(shown))  # nothing doubled
    newest_shown = max(in_stream.index(opportunity_id) for opportunity_id in shown)
    assert set(shown) == set(in_stream[: newest_shown + 1])  # nothing missed, across the restart
    assert len(episodes_shown) == len({episode_id for episode_id, _ in episodes_shown})  # one row per episode
    assert dict(episodes_shown) == episodes_in_stream
    print(f"screenshot: {tmp_path / 'dashboard.png'}")
