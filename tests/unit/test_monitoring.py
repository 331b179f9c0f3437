"""The monitoring kit: alert rules, the Prometheus config and the Grafana dashboard are valid and agree with
each other, every alert is proven by a `promtool test rules` case, and a process exposes its metrics once.

A real scrape of a running stack is checked in tests/integration/test_monitoring_scrape.py."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from fastapi import FastAPI
from fastapi.routing import APIRoute
from prometheus_client import REGISTRY
from redis.asyncio import Redis

from common.bus import Delivery, GroupConsumer
from common.config import BusSettings
from common.service import CheckResult, ServiceEndpoint, mount_on_fastapi
from schemas import Subject
from schemas.streams import StreamNames

REPO = Path(__file__).resolve().parents[2]
MONITORING = REPO / "scripts" / "monitoring"
ALERTS = MONITORING / "alerts.yml"
ALERT_TESTS = Path(__file__).with_name("monitoring_alerts_test.yml")
PROMETHEUS_CONFIG = REPO / "scripts" / "prometheus.yml"
GRAFANA = MONITORING / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "triarb.json"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool is not installed: run `make monitoring-deps` (apt-get install prometheus)")


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *map(str, args)], capture_output=True, text=True, timeout=60)


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]]


def dashboard_panels() -> list[dict[str, Any]]:
    return [panel for panel in json.loads(DASHBOARD.read_text())["panels"] if panel["type"] != "row"]


def dashboard_queries() -> list[str]:
    return [target["expr"] for panel in dashboard_panels() for target in panel["targets"]]


def referenced_metrics() -> set[str]:
    """Every ``triarb_*`` name the alert rules and the dashboard's queries read (the integration test looks
    each one up in a real scrape)."""
    expressions = [rule["expr"] for rule in alert_rules()] + dashboard_queries()
    return {name for expression in expressions for name in re.findall(r"\btriarb_\w+", expression)}


@needs_promtool
def test_alert_rules_pass_promtool_check_rules() -> None:
    result = promtool("check", "rules", ALERTS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in result.stdout


@needs_promtool
def test_prometheus_config_loads_the_alert_rules_and_passes_promtool_check_config() -> None:
    result = promtool("check", "config", PROMETHEUS_CONFIG)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 1 rule files found" in result.stdout
    assert f"Checking {ALERTS}\n  SUCCESS: {len(alert_rules())} rules found" in result.stdout  # next to the config


@needs_promtool
def test_each_alert_fires_on_its_condition_and_not_otherwise() -> None:
    result = promtool("test", "rules", ALERT_TESTS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_firing_case_and_a_quiet_case() -> None:
    cases = [case for test in yaml.safe_load(ALERT_TESTS.read_text())["tests"] for case in test["alert_rule_test"]]
    fired = {case["alertname"] for case in cases if case["exp_alerts"]}
    quiet = {case["alertname"] for case in cases if not case["exp_alerts"]}
    names = {rule["alert"] for rule in alert_rules()}
    assert names == {"TriarbTargetDown", "TriarbServiceUnhealthy", "TriarbFeedDown", "TriarbBookChecksumFailures",
                     "TriarbConsumerGroupLag", "TriarbRedisDown", "TriarbEntriesDeadLettered",
                     "TriarbPublisherDroppedEntries", "TriarbHandlerErrors", "TriarbArchiveWriteFailing"}
    assert (names - fired, names - quiet) == (set(), set())


@needs_promtool
def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    """Grafana's ``$__rate_interval`` becomes 1m; each query is then checked as a recording rule."""
    queries = [query.replace("$__rate_interval", "1m") for query in dashboard_queries()]
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query_{index}", "expr": query} for index, query in enumerate(queries)]}]}
    (tmp_path / "dashboard_rules.yml").write_text(yaml.safe_dump(rules))
    result = promtool("check", "rules", tmp_path / "dashboard_rules.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboard_has_the_panels_an_operator_needs() -> None:
    read = {name for panel in dashboard_panels() for target in panel["targets"]
            for name in re.findall(r"\btriarb_\w+", target["expr"])}
    assert {"triarb_ws_messages_total", "triarb_book_staleness_seconds", "triarb_book_gaps_total",
            "triarb_book_checksum_failures_total", "triarb_bus_group_lag_entries", "triarb_opportunities_total",
            "triarb_episode_events_total", "triarb_detect_latency_seconds_bucket", "triarb_redis_up",
            "triarb_service_up", "triarb_build_info"} <= read
    assert {"triarb_book_staleness_seconds", "triarb_book_checksum_failures_total", "triarb_bus_group_lag_entries",
            "triarb_redis_up"} <= referenced_metrics()


def test_dashboard_panels_query_the_provisioned_datasource_and_the_provider_loads_them() -> None:
    datasource = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    uid = datasource["datasources"][0]["uid"]
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090"  # compose's service name
    for panel in dashboard_panels():
        assert panel["datasource"]["uid"] == uid, panel["title"]
        assert all(target["datasource"]["uid"] == uid for target in panel["targets"]), panel["title"]
    provider = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "triarb.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    ids = [panel["id"] for panel in json.loads(DASHBOARD.read_text())["panels"]]
    assert len(ids) == len(set(ids))


def test_build_info_names_the_installed_version_and_python() -> None:
    import importlib.metadata
    import platform

    labels = {"version": importlib.metadata.version("triarb"), "python": platform.python_version()}
    assert REGISTRY.get_sample_value("triarb_build_info", labels) == 1


async def test_service_up_follows_the_health_checks_at_each_scrape() -> None:
    healthy = {"now": True}
    async with ServiceEndpoint("unit-service-up") as endpoint:
        endpoint.add_check("feed", lambda: CheckResult(healthy["now"], "ok" if healthy["now"] else "stale"))
        async with aiohttp.ClientSession(f"http://127.0.0.1:{endpoint.port}") as http:
            async with http.get("/metrics") as response:
                assert 'triarb_service_up{service="unit-service-up"} 1.0' in await response.text()
            healthy["now"] = False
            async with http.get("/metrics") as response:
                assert 'triarb_service_up{service="unit-service-up"} 0.0' in await response.text()


def fastapi_metrics(app: FastAPI) -> Any:
    route = next(r for r in app.routes if isinstance(r, APIRoute) and r.path == "/metrics")
    return route.endpoint()


async def test_a_fastapi_app_serves_metrics_only_while_no_service_endpoint_in_its_process_does() -> None:
    """`triarb dashboard` alone serves its registry; inside `triarb up` the service port serves it once."""
    app = FastAPI()
    mount_on_fastapi(app, "dashboard", {"redis": lambda: CheckResult(True, "PING ok")})
    alone = fastapi_metrics(app)
    assert alone.status_code == 200 and b"triarb_build_info" in alone.body
    async with ServiceEndpoint("triarb") as endpoint:
        inside = fastapi_metrics(app)
        assert inside.status_code == 404
        assert f"by triarb on port {endpoint.port}".encode() in inside.body
    assert fastapi_metrics(app).status_code == 200


async def test_a_group_worker_creates_its_series_before_its_first_entry() -> None:
    """A unique stream prefix and group (no other test uses them), so these series can only come from the
    constructor; it does not touch Redis."""
    async def handle(batch: list[Delivery]) -> None:
        return None

    client = Redis()
    GroupConsumer(client, StreamNames(prefix="unitfresh:"), BusSettings(), group="unit-fresh-group",
                  subjects=[Subject.SNAPSHOT], handler=handle)
    await client.aclose()
    series = {"stream": "unitfresh:md.snapshot", "group": "unit-fresh-group"}
    for name in ("triarb_bus_consumed_entries_total", "triarb_bus_acked_entries_total",
                 "triarb_bus_claimed_entries_total", "triarb_bus_handler_errors_total", "triarb_bus_group_lag_entries"):
        assert REGISTRY.get_sample_value(name, series) == 0, name
    for reason in ("max_deliveries", "codec"):
        assert REGISTRY.get_sample_value("triarb_bus_deadlettered_entries_total",
                                         {"stream": "unitfresh:md.snapshot", "reason": reason}) == 0
    assert REGISTRY.get_sample_value("triarb_bus_consumers_removed_total", {"group": "unit-fresh-group"}) == 0
