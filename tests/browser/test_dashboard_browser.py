"""The dashboard in a real browser (Debian's Chromium via Playwright) during a demo replay.

The stack runs as `triarb up --demo`; the dashboard under test runs as its own `triarb dashboard` process on
a fixed port, so the test can kill and restart it while the page stays open. After the restart the page must
hold every opportunity of the stream exactly once (the browser resumed with Last-Event-ID).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from schemas.codec import encode_fields
from schemas.health import Channel, FeedStatus, Health

CHROMIUM = "/usr/bin/chromium"
REPO = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium is not installed (make test installs it)"),
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed"),
]
async_api = pytest.importorskip("playwright.async_api", reason="playwright is not installed (pip install -e .[dev])")


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


async def test_page_shows_feeds_and_opportunities_and_resumes_after_a_server_restart(
    demo_stack: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    var_dir, env = demo_stack
    url = f"http://127.0.0.1:{env['TRIARB_DASHBOARD_PORT']}"
    dashboard = start(["dashboard"], env, tmp_path, "dashboard: http")
    async with async_api.async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"],
        )
        page = await browser.new_page()
        await page.goto(url)
        await page.wait_for_selector("#feed-coinbase-ws[data-status=up]", timeout=30_000)
        await page.wait_for_selector("#feed-kraken-ws[data-status=up]", timeout=30_000)
        await page.wait_for_selector("#opportunities tbody tr", timeout=45_000)  # the first planted mispricing
        await page.wait_for_selector("#connection.online")
        await page.wait_for_function(  # the paper broker's fill (strategy.fill) lands in its opportunity's row
            "[...document.querySelectorAll('#opportunities tbody tr td:last-child')]"
            ".some(td => /^(filled|partial|failed) /.test(td.textContent))", timeout=30_000)

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

        rows_before = await page.locator("#opportunities tbody tr").count()
        await page.wait_for_function(f"document.querySelectorAll('#opportunities tbody tr').length > {rows_before}",
                                     timeout=60_000)  # the next planted mispricing, after the restart
        shown = await page.eval_on_selector_all("#opportunities tbody tr", "rows => rows.map(r => r.dataset.id)")
        await page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
        await browser.close()
    dashboard.send_signal(signal.SIGINT)
    dashboard.wait(timeout=10)

    in_stream = stream_opportunity_ids(var_dir)
    assert len(shown) == len(set(shown))  # nothing doubled
    newest_shown = max(in_stream.index(opportunity_id) for opportunity_id in shown)
    assert set(shown) == set(in_stream[: newest_shown + 1])  # nothing missed, across the restart
    print(f"screenshot: {tmp_path / 'dashboard.png'}")
