"""A real scrape of `triarb up --demo`: promtool accepts it, it holds every metric the alert rules and the
Grafana dashboard read, every labelled series exists before its first event, and the process serves it once."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.test_cli_stack import Stack, interrupt, start_stack
from tests.unit.test_monitoring import needs_promtool, referenced_metrics

pytestmark = pytest.mark.integration

VENUES = ("coinbase", "kraken")
GROUPS = {"detector": "md.snapshot", "paper": "strategy.opportunity"}
ALWAYS_ZERO_IN_THE_DEMO = (
    "triarb_book_checksum_failures_total", "triarb_book_gaps_total", "triarb_ws_parse_errors_total",
    "triarb_bus_handler_errors_total", "triarb_bus_deadlettered_entries_total",
)
"""Error counters the clean demo never increments: a sample of 0 exists only because it was created at start."""
CREATED_ON_FIRST_EVENT = {"triarb_detector_skips_total"}
"""Skip reasons are named by the detector's engine as it skips; no list of them exists to create from."""


@dataclass
class Scrape:
    text: str
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float]
    empty_families: set[str]
    dashboard_metrics: urllib.error.HTTPError | None

    def value(self, name: str, **labels: str) -> float | None:
        return self.samples.get((name, frozenset(labels.items())))

    def names(self) -> set[str]:
        return {name for name, _ in self.samples}


def scrape(stack: Stack, dashboard_port: int) -> Scrape:
    with urllib.request.urlopen(f"http://127.0.0.1:{stack.service_port}/metrics", timeout=10) as response:
        text = response.read().decode()
    families = list(text_string_to_metric_families(text))
    samples = {(s.name, frozenset(s.labels.items())): s.value for f in families for s in f.samples}
    empty = {f.name for f in families if f.name.startswith("triarb_") and not f.samples}
    refused = None
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{dashboard_port}/metrics", timeout=10).close()
    except urllib.error.HTTPError as exc:
        refused = exc
    return Scrape(text, samples, empty, refused)


@pytest.fixture(scope="module")
def settled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scrape]:
    """The stack's scrape once snapshots have gone through the detector group (every component is running)."""
    stack = start_stack(tmp_path_factory.mktemp("monitoring"))
    try:
        assert stack.process.stdout is not None
        stack.process.stdout.readline()  # "watch it: ..."
        dashboard = re.search(r"dashboard: http://127\.0\.0\.1:(\d+)", stack.process.stdout.readline())
        assert dashboard is not None
        deadline = time.monotonic() + 30
        while True:
            current = scrape(stack, int(dashboard[1]))
            consumed = current.value("triarb_bus_consumed_entries_total", stream="md.snapshot", group="detector")
            if (consumed or 0) > 0 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        yield current
    finally:
        if stack.process.poll() is None:
            interrupt(stack)


@needs_promtool
def test_promtool_check_metrics_accepts_the_scrape(settled: Scrape) -> None:
    assert shutil.which("promtool") is not None
    result = subprocess.run(["promtool", "check", "metrics"], input=settled.text, capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_metric_the_alerts_and_the_dashboard_read_is_in_the_scrape(settled: Scrape) -> None:
    assert referenced_metrics() - settled.names() == set()


def test_every_labelled_series_exists_from_the_start(settled: Scrape) -> None:
    expected: list[tuple[str, dict[str, str]]] = [("triarb_service_up", {"service": "triarb"})]
    for venue in VENUES:
        for name in ("triarb_ws_messages_total", "triarb_ws_reconnects_total", "triarb_book_gaps_total",
                     "triarb_book_checksum_failures_total", "triarb_ws_parse_errors_total",
                     "triarb_ws_unrequested_updates_total", "triarb_book_staleness_seconds",
                     "triarb_opportunities_total", "triarb_detector_untrusted_books_total"):
            expected.append((name, {"venue": venue}))
        expected += [("triarb_episode_events_total", {"venue": venue, "event": event})
                     for event in ("open", "update", "close")]
    for group, stream in GROUPS.items():
        for name in ("triarb_bus_consumed_entries_total", "triarb_bus_acked_entries_total",
                     "triarb_bus_claimed_entries_total", "triarb_bus_handler_errors_total",
                     "triarb_bus_group_lag_entries"):
            expected.append((name, {"stream": stream, "group": group}))
        expected += [("triarb_bus_deadlettered_entries_total", {"stream": stream, "reason": reason})
                     for reason in ("max_deliveries", "codec")]
        expected.append(("triarb_bus_consumers_removed_total", {"group": group}))
    expected += [("triarb_bus_dropped_entries_total", {"stream": "md.snapshot", "reason": reason})
                 for reason in ("overflow", "closed")]
    expected += [("triarb_persistence_batch_retries_total", {"reason": reason}) for reason in ("redis", "handler")]
    missing = [(name, labels) for name, labels in expected if settled.value(name, **labels) is None]
    assert missing == []
    nonzero = [(name, labels) for name, labels in expected
               if name in ALWAYS_ZERO_IN_THE_DEMO and settled.value(name, **labels) != 0]
    assert nonzero == []
    assert settled.empty_families - CREATED_ON_FIRST_EVENT == set()


def test_the_process_serves_its_metrics_once_on_the_service_port(settled: Scrape) -> None:
    """The dashboard's own series (SSE clients) are in the service port's scrape; its port refuses /metrics."""
    assert settled.value("triarb_sse_clients") is not None
    assert settled.dashboard_metrics is not None and settled.dashboard_metrics.code == 404
    assert "served once, by triarb on port" in settled.dashboard_metrics.read().decode()
