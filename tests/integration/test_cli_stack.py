"""`triarb up --demo` as a user runs it: a real process with its private redis-server, driven by the CLI."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.processes import is_running

pytestmark = pytest.mark.integration

if shutil.which("redis-server") is None:
    pytest.skip("redis-server is not installed: run `make test` (it installs it with apt)", allow_module_level=True)

UP_LINE = re.compile(r"triarb is up: embedded redis-server on 127\.0\.0\.1:(\d+); .* http://127\.0\.0\.1:(\d+)")


@dataclass
class Stack:
    process: subprocess.Popen[str]
    env: dict[str, str]
    cwd: Path
    redis_port: int
    service_port: int
    runtime: dict[str, object]
    up_line: str
    """the banner's first line, as printed"""

    def triarb(self, *args: str, timeout_s: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "triarb.cli", *args], env=self.env, cwd=self.cwd, capture_output=True,
            text=True, timeout=timeout_s,
        )


def clean_env(var_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIARB_") and k != "REDIS_URL"}
    env |= {
        "TRIARB_VAR_DIR": str(var_dir), "TRIARB_EMBEDDED_PORT": "0", "TRIARB_SERVICE_PORT": "0",
        "TRIARB_DASHBOARD_PORT": "0",
        "TRIARB_LOG_FORMAT": "json", "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
    }
    return env


def start_stack(workdir: Path) -> Stack:
    env = clean_env(workdir / "var")
    process = subprocess.Popen(
        [sys.executable, "-m", "triarb.cli", "up", "--demo"], env=env, cwd=workdir, stdout=subprocess.PIPE,
        stderr=(workdir / "up.log").open("w"), text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    match = UP_LINE.search(line)
    if match is None:
        process.kill()
        pytest.fail(f"`triarb up --demo` did not come up; first line: {line!r}")
    runtime = json.loads((workdir / "var" / "redis.json").read_text())
    return Stack(process, env, workdir, int(match[1]), int(match[2]), runtime, line.rstrip("\n"))


def interrupt(stack: Stack, signum: int = signal.SIGINT) -> str:
    """Ctrl-C (or a supervisor's SIGTERM); returns what the process printed on its way out."""
    stack.process.send_signal(signum)
    out, _ = stack.process.communicate(timeout=30)
    return out


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = start_stack(tmp_path_factory.mktemp("stack"))
    yield running
    if running.process.poll() is None:
        interrupt(running)


def test_tail_shows_demo_snapshots_as_readable_lines(stack: Stack) -> None:
    result = stack.triarb("tail", "md.snapshot", "--count", "3")
    lines = result.stdout.strip().splitlines()
    assert result.returncode == 0, result.stderr
    assert len(lines) == 3
    for line in lines:
        assert re.search(r"md\.snapshot  (coinbase|kraken) [A-Z0-9]+-[A-Z0-9]+  bid \S+ x \S+ \| ask \S+ x \S+", line)


def test_tail_last_prints_history_before_following(stack: Stack) -> None:
    result = stack.triarb("tail", "md.health", "--last", "1", "--count", "1")
    assert result.returncode == 0, result.stderr
    assert len(re.findall(r"md\.health  (coinbase|kraken)/ws (up|resyncing)", result.stdout)) == 2


def test_healthz_is_ok_and_metrics_count_published_entries(stack: Stack) -> None:
    base = f"http://127.0.0.1:{stack.service_port}"
    with urllib.request.urlopen(f"{base}/healthz", timeout=10) as response:
        health = json.loads(response.read())
    with urllib.request.urlopen(f"{base}/metrics", timeout=10) as response:
        metrics = response.read().decode()
    assert health["checks"]["redis"]["ok"] is True
    assert health["checks"]["coinbase"]["ok"] is True and health["checks"]["kraken"]["ok"] is True
    published = re.search(r'triarb_bus_published_entries_total\{stream="md.snapshot"\} (\S+)', metrics)
    assert published is not None and float(published[1]) > 0
    for name in ("triarb_ws_messages_total", "triarb_book_staleness_seconds", "triarb_bus_publish_batch_entries",
                 "triarb_detector_skips_total", "triarb_detect_latency_seconds", "triarb_sse_clients",
                 "triarb_bus_group_lag_entries"):
        assert name in metrics, name


def test_symbols_set_changes_one_venue_and_is_shown_back(stack: Stack) -> None:
    assert stack.triarb("symbols", "set", "kraken", "BTC-USD", "ETH-BTC").returncode == 0
    assert stack.triarb("symbols", "add", "kraken", "ETH-USD").returncode == 0
    shown = stack.triarb("symbols", "show").stdout
    assert "kraken:\n  user: BTC-USD, ETH-BTC, ETH-USD\n" in shown
    assert "coinbase:\n  user: not set" in shown
    assert "detector: BTC-EUR, BTC-USD" in shown  # the demo detector's triangles' books, announced at start


@pytest.mark.parametrize("args, exit_code, reason", [
    (("set", "kraken", "btc/usd"), 1, "not canonical BASE-QUOTE"),
    (("add", "coinbase", "XXX-YYY"), 1, "coinbase lists no market XXX-YYY"),
    (("set", "binance", "BTC-USD"), 2, "invalid choice: 'binance'"),
    (("set", "kraken"), 2, "the following arguments are required: SYMBOL"),
], ids=["not canonical", "not listed by the venue", "unknown venue", "no symbols"])
def test_a_bad_symbols_command_is_refused_with_a_reason(
    stack: Stack, args: tuple[str, ...], exit_code: int, reason: str
) -> None:
    before = stack.triarb("symbols", "show").stdout
    result = stack.triarb("symbols", *args)
    assert (result.returncode, reason in result.stderr) == (exit_code, True), result.stderr
    assert stack.triarb("symbols", "show").stdout == before


@pytest.mark.parametrize("command", ["detector", "paper"])
def test_a_group_worker_with_burst_drains_its_backlog_and_exits(stack: Stack, command: str) -> None:
    result = stack.triarb(command, "--from", "0", "--burst", timeout_s=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{'paper broker' if command == 'paper' else 'detector'}:")


def test_a_start_position_that_is_not_a_stream_id_is_refused(stack: Stack) -> None:
    result = stack.triarb("detector", "--from", "yesterday")
    assert (result.returncode, "is not $, 0 or a stream id" in result.stderr) == (2, True), result.stderr


def test_dashboard_user_is_refused_xadd_but_can_xrange(stack: Stack) -> None:
    password = stack.runtime["passwords"]["dashboard"]  # type: ignore[index]
    base = ["redis-cli", "-p", str(stack.redis_port), "--user", "dashboard", "--pass", password, "--no-auth-warning"]
    refused = subprocess.run([*base, "XADD", "md.snapshot", "*", "a", "b"], capture_output=True, text=True)
    allowed = subprocess.run([*base, "XRANGE", "md.snapshot", "-", "+", "COUNT", "1"], capture_output=True, text=True)
    assert "NOPERM" in refused.stdout + refused.stderr
    assert "exchange" in allowed.stdout and ("coinbase" in allowed.stdout or "kraken" in allowed.stdout)


def test_redis_cli_wrapper_logs_in_as_the_chosen_user(stack: Stack) -> None:
    whoami = stack.triarb("redis-cli", "--as", "dashboard", "ACL", "WHOAMI")
    assert whoami.stdout.strip() == "dashboard"


def test_unknown_stream_is_a_clear_error(stack: Stack) -> None:
    result = stack.triarb("tail", "md.orders")
    assert result.returncode == 1
    assert "unknown stream 'md.orders'; one of: md.snapshot" in result.stderr


def test_status_is_one_screen_of_feeds_symbols_groups_episodes_and_paper_pnl(stack: Stack) -> None:
    result = stack.triarb("status")
    assert result.returncode == 0, result.stderr
    screen = result.stdout
    headings = [line.split(" (")[0] for line in screen.splitlines() if line[:1].isupper()]
    assert headings == ["FEEDS", "SYMBOLS HELD", "CONSUMER GROUPS", "EPISODES", "PAPER PnL"]
    assert re.search(r"^  coinbase  ws   up ", screen, re.MULTILINE) and re.search(r"^  kraken    ws   up ", screen,
                                                                                  re.MULTILINE)
    assert re.search(r"^  detector   on md\.snapshot\s+pending \d+\s+lag \d+", screen, re.MULTILINE)


def test_second_up_on_the_same_var_dir_is_refused(stack: Stack) -> None:
    result = stack.triarb("up", "--demo")
    assert result.returncode == 1
    assert "already runs" in result.stderr


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_stop_signal_stops_everything_and_leaves_no_redis_server(tmp_path: Path, signum: int) -> None:
    stack = start_stack(tmp_path)
    redis_pid = int(stack.runtime["pid"])  # type: ignore[call-overload]
    assert is_running(redis_pid)

    out = interrupt(stack, signum)

    assert stack.process.returncode == 0
    assert "embedded redis-server shut down" in out
    logged = (tmp_path / "up.log").read_text()
    assert "draining and stopping" in logged
    assert "second SIGINT" not in logged and "Traceback" not in logged  # one signal drains; uvicorn re-raises none
    assert not is_running(redis_pid)
    assert not (tmp_path / "var" / "redis.json").exists()
    assert (tmp_path / "var" / "redis" / "appendonlydir").is_dir()


def test_help_lists_every_command_with_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "triarb.cli", "--help"], env=clean_env(tmp_path), capture_output=True, text=True
    )
    commands = ["up", "tail", "symbols", "config", "redis-cli", "producer", "replay", "detector", "paper",
                "backtest", "persist", "dashboard"]
    for command in commands:
        assert re.search(rf"^    {re.escape(command)}\s+\S", result.stdout, re.MULTILINE), command


def test_config_prints_effective_settings_with_secrets_masked(tmp_path: Path) -> None:
    env = clean_env(tmp_path) | {"TRIARB_REDIS_PASSWORDS__PRODUCER": "hunter2", "TRIARB_BUS__READ_COUNT": "64",
                                 "REDIS_URL": "redis://ops:s3cret@cache.internal:6379/0"}
    result = subprocess.run([sys.executable, "-m", "triarb.cli", "config"], env=env, capture_output=True, text=True)
    config = json.loads(result.stdout)
    assert config["bus"]["read_count"] == 64
    assert config["redis_passwords"] == {"producer": "***"}
    assert config["redis_url"] == "redis://***@cache.internal:6379/0"
    assert "hunter2" not in result.stdout and "s3cret" not in result.stdout


def test_one_ctrl_c_stops_a_stack_whose_venues_are_unreachable(tmp_path: Path) -> None:
    """Connect attempts and reconnect backoffs are cancelled on stop: nobody waits for a venue that is not there."""
    env = clean_env(tmp_path / "var") | {
        f"TRIARB_PRODUCERS__{venue}__{key}": value for venue in ("COINBASE", "KRAKEN")
        for key, value in (("URL", "ws://127.0.0.1:9"), ("REST_URL", "http://127.0.0.1:9"))}
    process = subprocess.Popen([sys.executable, "-m", "triarb.cli", "up"], env=env, cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=(tmp_path / "up.log").open("w"), text=True)
    assert process.stdout is not None
    assert UP_LINE.search(process.stdout.readline())
    time.sleep(3)  # several failed connects: the producers are in websockets' reconnect backoff
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=15)
    finally:
        process.kill()
    assert process.returncode == 0, (tmp_path / "up.log").read_text()[-2000:]
