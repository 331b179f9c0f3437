"""What a user meets on the command line: every problem they can fix is one line naming what to change (no
traceback), checked before any long work; help and version are there; redis-cli takes any redis-cli option."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from common.config import Role
from common.redis import RedisEndpoint
from producers.simulators.demo import DEMO_DIR
from tests.integration.test_cli_stack import clean_env

pytestmark = pytest.mark.integration

UNREACHABLE = "redis://127.0.0.1:1/0"


def triarb(tmp_path: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 60,
           ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "triarb.cli", *args], env=clean_env(tmp_path) | (env or {}),
                          cwd=tmp_path, capture_output=True, text=True, timeout=timeout)


def one_line_error(result: subprocess.CompletedProcess[str], status: int = 1) -> str:
    assert result.returncode == status, result
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("triarb: "), result.stderr
    return lines[0]


def test_version_and_help_without_a_command(tmp_path: Path) -> None:
    version = triarb(tmp_path, "--version")
    assert version.returncode == 0 and version.stdout.startswith("triarb ")
    bare = triarb(tmp_path)
    assert bare.returncode == 0 and "usage: triarb" in bare.stdout and "COMMAND" in bare.stdout


@pytest.mark.parametrize(("args", "env", "expected"), [
    (["--config", "missing.toml", "config"], {}, "--config missing.toml: no such file"),
    (["config"], {"TRIARB_CONFIG": "missing.toml"}, "TRIARB_CONFIG names missing.toml, which does not exist"),
    (["--config", "bad.toml", "config"], {}, "bad.toml: not valid TOML"),
    (["config"], {"REDIS_URL": "notaurl"}, "REDIS_URL: 'notaurl' is not a Redis URL"),
    (["config"], {"TRIARB_DETECTOR__MIN_ROI": "lots"}, "detector.min_roi: Input should be a valid number"),
], ids=["missing-config", "missing-config-env", "malformed-toml", "not-a-url", "not-a-number"])
def test_configuration_problems_name_the_setting(tmp_path: Path, args: list[str], env: dict[str, str],
                                                 expected: str) -> None:
    (tmp_path / "bad.toml").write_text("x = [\n")
    assert expected in one_line_error(triarb(tmp_path, *args, env=env), status=2)


def test_one_nested_setting_keeps_the_other_defaults_of_its_section(tmp_path: Path) -> None:
    result = triarb(tmp_path, "config", env={"TRIARB_PRODUCERS__COINBASE__SYMBOLS": '["BTC-USD"]',
                                             "TRIARB_DETECTOR__TAKER_FEES__KRAKEN": "0.001"})
    assert result.returncode == 0, result.stderr
    config = json.loads(result.stdout)
    assert config["producers"]["coinbase"]["symbols"] == ["BTC-USD"]
    assert config["producers"]["coinbase"]["url"] == "wss://advanced-trade-ws.coinbase.com"
    assert config["producers"]["kraken"]["symbols"] == ["BTC-USD", "ETH-USD", "ETH-BTC"]
    assert config["detector"]["taker_fees"] == {"coinbase": 0.012, "kraken": 0.001}


@pytest.mark.parametrize("args", [["tail", "md.snapshot"], ["symbols", "show"], ["up", "--demo"]],
                         ids=["tail", "symbols", "up"])
def test_an_unreachable_redis_is_one_line_at_once_and_up_never_says_up(tmp_path: Path, args: list[str]) -> None:
    result = triarb(tmp_path, *args, env={"REDIS_URL": UNREACHABLE}, timeout=30)
    assert "cannot reach Redis at redis://127.0.0.1:1/0" in one_line_error(result)
    assert "is up" not in result.stdout


def test_a_busy_service_port_is_one_line_naming_the_setting(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = triarb(tmp_path, "up", "--demo", env={"TRIARB_SERVICE_PORT": str(port)})
    line = result.stderr.strip().splitlines()[-1]
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert f"127.0.0.1:{port}" in line and "set TRIARB_SERVICE_PORT" in line


@pytest.mark.parametrize(("args", "env"), [(["persist", "--dir", "/proc/nope"], {}),
                                           (["up", "--demo"], {"TRIARB_VAR_DIR": "/proc/nope"})],
                         ids=["persist-dir", "var-dir"])
def test_a_directory_that_cannot_be_made_is_one_line_naming_it(tmp_path: Path, args: list[str],
                                                              env: dict[str, str]) -> None:
    assert "cannot use /proc/nope" in one_line_error(triarb(tmp_path, *args, env=env))


def test_backtest_checks_its_outputs_before_the_run(tmp_path: Path) -> None:
    result = triarb(tmp_path, "backtest", str(DEMO_DIR / "kraken-demo.ndjson"), "--out", "nowhere/out.ndjson",
                    "--quiet")
    assert "no directory nowhere" in one_line_error(result)


def test_redis_cli_passes_any_redis_cli_option_through(tmp_path: Path, redis_server: RedisEndpoint,
                                                       admin_sync: redis.Redis) -> None:
    admin_sync.set("md:book:kraken:BTC-USD", '{"v":1}')
    env = {"REDIS_URL": redis_server.url(), "TRIARB_REDIS_PASSWORDS__ADMIN": redis_server.passwords[Role.ADMIN],
           "TRIARB_REDIS_PASSWORDS__DASHBOARD": redis_server.passwords[Role.DASHBOARD]}
    scan = triarb(tmp_path, "redis-cli", "--scan", "--pattern", "md:book:*", env=env)
    assert scan.returncode == 0, scan.stderr
    assert scan.stdout.split() == ["md:book:kraken:BTC-USD"]
    as_dashboard = triarb(tmp_path, "redis-cli", "--as", "dashboard", "--no-raw", "GET", "md:book:kraken:BTC-USD",
                          env=env)
    assert as_dashboard.stdout.strip() == '"{\\"v\\":1}"', as_dashboard
