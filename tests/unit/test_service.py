"""/healthz answers with every check's verdict; /metrics serves Prometheus text."""

from __future__ import annotations

import aiohttp

from common import metrics
from common.service import CheckResult, ServiceEndpoint, healthz_payload


def failing() -> CheckResult:
    return CheckResult(False, "no message for 12s")


def broken() -> CheckResult:
    raise RuntimeError("lost the socket")


def test_all_checks_passing_is_200_ok() -> None:
    status, body = healthz_payload("detector", {"redis": lambda: CheckResult(True, "PING ok")})
    assert status == 200
    assert body == {"service": "detector", "status": "ok", "checks": {"redis": {"ok": True, "detail": "PING ok"}}}


def test_one_failing_check_is_503_with_its_detail() -> None:
    status, body = healthz_payload("producer", {"redis": lambda: CheckResult(True, "ok"), "kraken": failing})
    assert status == 503
    assert body["status"] == "failing"
    assert body["checks"]["kraken"] == {"ok": False, "detail": "no message for 12s"}


def test_a_check_that_raises_is_a_failing_check_not_a_crash() -> None:
    status, body = healthz_payload("producer", {"coinbase": broken})
    assert status == 503
    assert body["checks"]["coinbase"]["detail"] == "check raised RuntimeError: lost the socket"


async def test_endpoint_serves_healthz_and_metrics_over_http() -> None:
    metrics.BUS_PUBLISHED.labels(stream="test.stream").inc(3)
    async with ServiceEndpoint("triarb-test") as endpoint:
        endpoint.add_check("feed", failing)
        async with aiohttp.ClientSession(f"http://127.0.0.1:{endpoint.port}") as http:
            async with http.get("/healthz") as response:
                assert response.status == 503
                assert (await response.json())["checks"]["feed"]["ok"] is False
            async with http.get("/metrics") as response:
                text = await response.text()
    assert 'triarb_bus_published_entries_total{stream="test.stream"} 3.0' in text
