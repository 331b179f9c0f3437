"""compose.yaml cannot run here (no Docker engine), so it is checked by reading it: every service runs a real
CLI command, listens only on loopback from the host, finds Redis and its own credentials, and scales."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from triarb.cli import build_parser

REPO = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((REPO / "compose.yaml").read_text())
SERVICES = COMPOSE["services"]
TRIARB_SERVICES = {"producer-coinbase": "producer", "producer-kraken": "producer", "detector": "detector",
                   "persistence": "persistence", "dashboard": "dashboard"}


def test_the_stack_has_every_part() -> None:
    assert set(SERVICES) == {"redis", "redis-acl", *TRIARB_SERVICES, "prometheus"}


@pytest.mark.parametrize("service", sorted(TRIARB_SERVICES))
def test_each_service_runs_an_existing_cli_command(service: str) -> None:
    command = SERVICES[service]["command"]
    assert command[0] == "triarb"
    build_parser().parse_args(command[1:])  # raises SystemExit on an unknown command or option


@pytest.mark.parametrize(("service", "role"), sorted(TRIARB_SERVICES.items()))
def test_each_service_reaches_redis_with_a_password_for_its_user(service: str, role: str) -> None:
    env = SERVICES[service]["environment"]
    assert env["REDIS_URL"] == "redis://redis:6379/0"
    assert f"TRIARB_REDIS_PASSWORDS__{role.upper()}" in env
    assert env["TRIARB_SERVICE_PORT"] == "9464"


def test_published_ports_bind_loopback_only_and_detector_can_scale() -> None:
    for name, service in SERVICES.items():
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), name
    assert "ports" not in SERVICES["detector"] and "container_name" not in SERVICES["detector"]


def test_redis_uses_our_config_and_acl_users_get_their_passwords() -> None:
    assert "./redis.conf:/etc/triarb/redis.conf:ro" in SERVICES["redis"]["volumes"]
    script = " ".join(SERVICES["redis-acl"]["command"])
    for role in ("producer", "detector", "persistence", "dashboard", "control"):
        assert role in script
    assert "ACL SETUSER" in script


def test_prometheus_scrapes_every_triarb_service() -> None:
    config = yaml.safe_load((REPO / "scripts" / "prometheus.yml").read_text())
    targets = {name for job in config["scrape_configs"] for sd in job.get("dns_sd_configs", []) for name in sd["names"]}
    targets |= {t.split(":")[0] for job in config["scrape_configs"] for s in job.get("static_configs", [])
                for t in s["targets"]}
    assert targets == set(TRIARB_SERVICES)
