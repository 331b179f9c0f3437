"""compose.yaml cannot run here (no Docker engine), so it is checked by reading it: every service runs a real
CLI command, listens only on loopback from the host, finds Redis and its own credentials, and scales."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import redis
import yaml

from common.config import Role
from common.redis import free_port
from tests.processes import wait_until
from triarb.cli import build_parser

REPO = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((REPO / "compose.yaml").read_text())
SERVICES = COMPOSE["services"]
TRIARB_SERVICES = {"producer-coinbase": "producer", "producer-kraken": "producer", "detector": "detector",
                   "paper": "paper", "persistence": "persistence", "dashboard": "dashboard"}


def test_the_stack_has_every_part() -> None:
    assert set(SERVICES) == {"redis-config", "redis", *TRIARB_SERVICES, "prometheus"}


@pytest.mark.parametrize("service", sorted(TRIARB_SERVICES))
def test_each_service_runs_an_existing_cli_command(service: str) -> None:
    command = SERVICES[service]["command"]
    assert command[0] == "triarb"
    build_parser().parse_args(command[1:])  # raises SystemExit on an unknown command or option


@pytest.mark.parametrize(("service", "role"), sorted(TRIARB_SERVICES.items()))
def test_each_service_reaches_redis_with_only_its_own_roles_password(service: str, role: str) -> None:
    env = SERVICES[service]["environment"]
    assert env["REDIS_URL"] == "redis://redis:6379/0"
    passwords = {name for name in env if name.startswith("TRIARB_REDIS_PASSWORDS__")}
    own = {f"TRIARB_REDIS_PASSWORDS__{role.upper()}"}
    if service == "dashboard":
        own.add("TRIARB_REDIS_PASSWORDS__CONTROL")  # POST /api/symbols publishes as `control`
    assert passwords == own
    assert env["TRIARB_SERVICE_PORT"] == "9464"
    assert "healthz" in " ".join(SERVICES[service]["healthcheck"]["test"])


def test_published_ports_bind_loopback_only_and_detector_can_scale() -> None:
    for name, service in SERVICES.items():
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), name
    assert "ports" not in SERVICES["detector"] and "container_name" not in SERVICES["detector"]


def test_redis_starts_from_the_rendered_acl_file_and_no_password_is_on_a_command_line() -> None:
    config = SERVICES["redis-config"]
    assert config["command"][:2] == ["triarb", "redis-config"]
    build_parser().parse_args(config["command"][1:])
    assert {f"TRIARB_REDIS_PASSWORDS__{role.upper()}" for role in
            tuple(Role)} <= set(config["environment"])
    redis = SERVICES["redis"]
    assert redis["depends_on"]["redis-config"]["condition"] == "service_completed_successfully"
    assert "--aclfile" in redis["command"] and "/run/triarb/users.acl" in redis["command"]
    for service in SERVICES.values():
        assert "PASSWORDS" not in " ".join(map(str, service.get("command", []))) and ">" not in " ".join(
            map(str, service.get("command", [])))


def test_redis_config_renders_a_config_the_real_server_accepts(tmp_path: Path) -> None:
    """What the compose init step runs, then a real redis-server on those files: every role logs in."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed: run `make test` (it installs it with apt)")
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)} | {
        f"TRIARB_REDIS_PASSWORDS__{role.upper()}": f"pw-{role}"
        for role in tuple(Role)}
    subprocess.run([sys.executable, "-m", "triarb.cli", "redis-config", "--out", str(tmp_path / "run")], env=env,
                   check=True, capture_output=True, cwd=tmp_path, umask=0o022)
    assert (tmp_path / "run").stat().st_mode & 0o777 == 0o700  # `triarb` makes what it writes private
    port = free_port()
    server = subprocess.Popen(["redis-server", str(tmp_path / "run" / "redis.conf"), "--aclfile",
                               str(tmp_path / "run" / "users.acl"), "--port", str(port), "--dir", str(tmp_path)],
                              stdout=subprocess.DEVNULL)
    try:
        for role in tuple(Role):
            with redis.Redis(port=port, username=role, password=f"pw-{role}") as client:
                assert wait_until(lambda c=client: answers(c)), role
        assert (tmp_path / "run" / "users.acl").stat().st_mode & 0o777 == 0o600
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_prometheus_scrapes_every_triarb_service() -> None:
    config = yaml.safe_load((REPO / "scripts" / "prometheus.yml").read_text())
    targets = {name for job in config["scrape_configs"] for sd in job.get("dns_sd_configs", []) for name in sd["names"]}
    targets |= {t.split(":")[0] for job in config["scrape_configs"] for s in job.get("static_configs", [])
                for t in s["targets"]}
    assert targets == set(TRIARB_SERVICES)


def answers(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False
