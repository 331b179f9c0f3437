"""compose.yaml cannot run here (no Docker engine), so it is checked by reading it: every service runs a real
CLI command, listens only on loopback from the host, finds Redis and its own credentials, and scales; the
monitoring services find their files; .env.example names what compose reads; the build context is the
Dockerfile's. (tests/integration/test_compose_processes.py runs the triarb services as processes.)"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

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
    assert set(SERVICES) == {"redis-config", "redis", *TRIARB_SERVICES, "prometheus", "grafana"}


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


@pytest.mark.parametrize("service", sorted(TRIARB_SERVICES))
def test_each_services_healthcheck_asks_healthz_on_the_port_it_serves_it_on(service: str) -> None:
    """The dashboard serves /healthz on its own port (8000); every other service on TRIARB_SERVICE_PORT."""
    env = SERVICES[service]["environment"]
    url = urlsplit(re.findall(r"http://[^'\"\s]+", " ".join(SERVICES[service]["healthcheck"]["test"]))[0])
    served_on = env["TRIARB_DASHBOARD_PORT"] if service == "dashboard" else env["TRIARB_SERVICE_PORT"]
    assert (url.hostname, str(url.port), url.path) == ("127.0.0.1", served_on, "/healthz")


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


# --- monitoring: Prometheus loads the alert rules, Grafana is provisioned ------------------------------------

def host_path(service: str, container_path: str) -> Path:
    """The repository file or directory a bind mount of ``service`` shows at ``container_path``."""
    wanted = PurePosixPath(container_path)
    for volume in SERVICES[service].get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("./") and (wanted == PurePosixPath(target) or PurePosixPath(target) in wanted.parents):
            return REPO / source / wanted.relative_to(target)
    raise AssertionError(f"{service} mounts nothing from the repository at {container_path}")


def test_prometheus_loads_the_alert_rules_from_where_its_config_names_them() -> None:
    config_in_container = "/etc/prometheus/prometheus.yml"
    assert host_path("prometheus", config_in_container) == REPO / "scripts" / "prometheus.yml"
    config = yaml.safe_load((REPO / "scripts" / "prometheus.yml").read_text())
    rule_files = [PurePosixPath(config_in_container).parent / name for name in config["rule_files"]]
    assert [host_path("prometheus", str(path)) for path in rule_files] == [REPO / "scripts/monitoring/alerts.yml"]


def test_grafana_is_pinned_on_loopback_and_takes_its_admin_password_from_the_environment() -> None:
    grafana = SERVICES["grafana"]
    image, _, tag = grafana["image"].partition(":")
    assert image == "grafana/grafana-oss" and tag not in {"", "latest"}
    assert grafana["ports"] == ["127.0.0.1:3000:3000"]
    assert grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD"].startswith("${")
    assert grafana["environment"]["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
    assert "command" not in grafana


def test_grafana_provisions_the_triarb_dashboard_from_where_its_provider_file_reads() -> None:
    provisioning = host_path("grafana", "/etc/grafana/provisioning")
    assert provisioning == REPO / "scripts/monitoring/grafana/provisioning"
    [provider] = yaml.safe_load((provisioning / "dashboards" / "triarb.yml").read_text())["providers"]
    dashboards = host_path("grafana", provider["options"]["path"])
    assert dashboards == REPO / "scripts/monitoring/grafana/dashboards"
    assert (dashboards / "triarb.json").is_file()
    home = SERVICES["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert host_path("grafana", home) == dashboards / "triarb.json"


def test_grafanas_datasource_is_compose_prometheus() -> None:
    datasources = yaml.safe_load(
        (host_path("grafana", "/etc/grafana/provisioning") / "datasources" / "prometheus.yml").read_text())
    [prometheus] = [d for d in datasources["datasources"] if d["type"] == "prometheus"]
    url = urlsplit(prometheus["url"])
    assert url.hostname == "prometheus" and url.hostname in SERVICES
    assert f"127.0.0.1:{url.port}:{url.port}" in SERVICES["prometheus"]["ports"]
    assert SERVICES["grafana"]["depends_on"] == ["prometheus"]


# --- .env.example: every variable compose reads, nothing else ------------------------------------------------

COMPOSE_VARIABLE = re.compile(r"(?<!\$)\$\{?([A-Za-z_][A-Za-z0-9_]*)")
"""``${VAR}``, ``${VAR:?msg}``, ``${VAR:-default}`` or ``$VAR``; ``$$`` is a literal ``$`` (a shell variable)."""


def strings_in(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield str(key)
            yield from strings_in(value)
    elif isinstance(node, list):
        for item in node:
            yield from strings_in(item)
    elif isinstance(node, str):
        yield node


def env_example_lines() -> list[str]:
    return (REPO / ".env.example").read_text().splitlines()


def test_env_example_names_exactly_the_variables_compose_reads() -> None:
    read_by_compose = {name for text in strings_in(COMPOSE) for name in COMPOSE_VARIABLE.findall(text)}
    assigned = {line.split("=", 1)[0] for line in env_example_lines() if line and not line.startswith("#")}
    assert read_by_compose == assigned
    assert {f"TRIARB_REDIS_PASSWORDS__{role.upper()}" for role in tuple(Role)} <= assigned


def test_env_example_explains_each_variable_and_how_to_generate_passwords() -> None:
    lines = env_example_lines()
    for before, line in zip(lines, lines[1:], strict=False):
        if line and not line.startswith("#"):
            assert before.startswith("# "), f"{line.split('=')[0]} needs a one-line comment above it"
    assert "openssl rand -hex 24" in "\n".join(lines)


# --- .dockerignore: the build context is what the Dockerfile copies ------------------------------------------

def dockerignore_rules() -> list[tuple[bool, re.Pattern[str]]]:
    """(is an exception ``!``, pattern) in file order; Docker's syntax: ``*`` and ``?`` stay within a path
    segment, ``**`` spans any number of them, patterns are relative to the context root."""
    rules = []
    for line in (REPO / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = line.removeprefix("!").strip("/")
        regex = ""
        for token in re.split(r"(\*\*/|\*\*|\*|\?)", pattern):
            regex += {"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}.get(token, re.escape(token))
        rules.append((negated, re.compile(regex + r"\Z")))
    return rules


def sent_to_docker(path: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parent directories decides."""
    parts = path.split("/")
    prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    excluded = False
    for negated, pattern in rules:
        if any(pattern.match(prefix) for prefix in prefixes):
            excluded = not negated
    return not excluded


def dockerfile_copy_sources() -> list[str]:
    sources = []
    for line in (REPO / "Dockerfile").read_text().splitlines():
        words = line.split()
        if words[:1] == ["COPY"]:
            sources += [word for word in words[1:-1] if not word.startswith("--")]
    return sources


def test_the_build_context_keeps_every_path_the_dockerfile_copies() -> None:
    rules = dockerignore_rules()
    sources = dockerfile_copy_sources()
    assert {"pyproject.toml", "redis.conf", "schemas", "dashboard", "triarb"} <= set(sources)
    for source in sources:
        assert sent_to_docker(source, rules), source
        files = [p for p in (REPO / source).rglob("*") if p.is_file() and "__pycache__" not in p.parts]
        for file in files:
            assert sent_to_docker(file.relative_to(REPO).as_posix(), rules), file
    assert sent_to_docker("dashboard/static/index.html", rules)
    assert sent_to_docker("producers/simulators/data/demo/coinbase-demo.ndjson", rules)


@pytest.mark.parametrize("path", [
    ".venv", ".venv/lib/python3.11/site-packages/redis/client.py", "var", "var/data/md.snapshot/0.ndjson", ".git",
    ".git/HEAD", ".env", "build/lib/common/redis.conf", "dist/triarb-0.1.0-py3-none-any.whl",
    "triarb.egg-info/PKG-INFO", ".pytest_cache/v/cache/lastfailed", ".mypy_cache/3.11/common", ".ruff_cache/x",
    ".hypothesis/examples/x", "tests/unit/test_compose.py", "common/__pycache__/config.cpython-311.pyc",
    "schemas/codec.pyc",
])
def test_the_build_context_leaves_out_local_state(path: str) -> None:
    assert not sent_to_docker(path, dockerignore_rules())
