"""compose.yaml run as local processes (there is no Docker engine here): every triarb service's `command` with
the `environment` compose would give it, against one redis-server started as compose starts it, proves the
services cooperate: snapshots → opportunities → fills → NDJSON → the page's API, each healthy, each stopped
cleanly by SIGTERM.

The YAML is read, not restated: `${VAR}` is filled from a generated `.env` (a random value for every name in
.env.example), the `redis-config` one-shot renders the ACL file, and the `redis` service's command runs with
only its paths, bind address and port made local. Each app process gets exactly its compose environment
(plus PATH/PYTHONPATH/HOME, which the image provides) with what a container's own network namespace and
volumes would make different here: Redis at 127.0.0.1:PORT, a free service and dashboard port per process,
loopback instead of 0.0.0.0, a temporary directory for each named volume and as each process's working
directory, and the producers' venues pointed at two local demo venues (their REST fallback at a closed local
port), so nothing ever connects to a live exchange.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson
import pytest
import redis
import yaml

from common.redis import free_port
from tests.processes import wait_until

pytestmark = pytest.mark.integration

if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
    pytest.skip("redis-server is not installed: run `make test` (it installs it with apt)", allow_module_level=True)

REPO = Path(__file__).resolve().parents[2]
SERVICES: dict[str, Any] = yaml.safe_load((REPO / "compose.yaml").read_text())["services"]
APP_SERVICES = sorted(name for name, service in SERVICES.items()
                      if service.get("command", [""])[0] == "triarb" and name != "redis-config")
SECRETS_OF = {
    "producer-coinbase": {"TRIARB_REDIS_PASSWORDS__PRODUCER"},
    "producer-kraken": {"TRIARB_REDIS_PASSWORDS__PRODUCER"},
    "detector": {"TRIARB_REDIS_PASSWORDS__DETECTOR"},
    "paper": {"TRIARB_REDIS_PASSWORDS__PAPER"},
    "persistence": {"TRIARB_REDIS_PASSWORDS__PERSISTENCE"},
    "dashboard": {"TRIARB_REDIS_PASSWORDS__DASHBOARD", "TRIARB_REDIS_PASSWORDS__CONTROL", "TRIARB_DASHBOARD_TOKEN"},
}
"""What each service needs from .env: its role's password (the dashboard also publishes symbol changes as
`control`, with the bearer token); compose must give it nothing more."""
CLOSED_PORT_URL = "http://127.0.0.1:9"
"""The producers' REST fallback: a local port where nothing answers, never the venue's real API."""
OPPORTUNITY_TIMEOUT_S = 45
"""The demo session plants an ETH-BTC mispricing 8 s after a producer connects, then every ~20 s."""
STOP_TIMEOUT_S = 20

VARIABLE = re.compile(r"\$\$|\$\{(\w+)(?:(:?[-?])([^}]*))?\}|\$(\w+)")


def interpolate(text: str, dotenv: Mapping[str, str]) -> str:
    """Compose's variable syntax: ``${VAR}``, ``${VAR:-default}``, ``${VAR:?error}``, ``$VAR``; ``$$`` is ``$``."""

    def value(match: re.Match[str]) -> str:
        if match[0] == "$$":
            return "$"
        name, operator, argument = match[1] or match[4], match[2] or "", match[3] or ""
        given = dotenv.get(name)
        missing = given is None or (given == "" and operator.startswith(":"))
        if missing and operator.endswith("-"):
            return argument
        if given is None or (missing and operator.endswith("?")):
            raise AssertionError(f"compose.yaml reads {name}, which .env.example does not name")
        return given

    return VARIABLE.sub(value, text)


def generated_dotenv() -> dict[str, str]:
    """The `.env` a user makes from .env.example: every name, each a fresh random secret."""
    lines = (REPO / ".env.example").read_text().splitlines()
    return {line.split("=", 1)[0]: secrets.token_hex(24) for line in lines if line and not line.startswith("#")}


@dataclass
class Process:
    service: str
    popen: subprocess.Popen[str]
    env: dict[str, str]
    log: Path
    stdout: list[str] = field(default_factory=list)

    def environ(self) -> dict[str, str]:
        """What the running process actually holds (/proc), not what the test meant to give it."""
        raw = Path(f"/proc/{self.popen.pid}/environ").read_bytes().decode()
        return dict(item.split("=", 1) for item in raw.split("\0") if "=" in item)

    def cmdline(self) -> str:
        return Path(f"/proc/{self.popen.pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


class ComposeAsProcesses:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.dotenv = generated_dotenv()
        self.redis_port = free_port()
        self.processes: dict[str, Process] = {}
        self.venues: dict[str, tuple[str, list[str]]] = {}

    # --- compose → local ---------------------------------------------------------------------------------

    def volume(self, service: str, container_path: str) -> Path | None:
        """The temporary directory standing in for the named volume ``service`` mounts at ``container_path``."""
        wanted = PurePosixPath(container_path)
        for spec in SERVICES[service].get("volumes", []):
            source, target = spec.split(":")[:2]
            mounted = wanted == PurePosixPath(target) or PurePosixPath(target) in wanted.parents
            if mounted and not source.startswith("."):  # a named volume, not a bind mount of the checkout
                directory = self.workdir / "volumes" / source / wanted.relative_to(target)
                directory.parent.mkdir(parents=True, exist_ok=True)
                return directory
        return None

    def command(self, service: str) -> list[str]:
        words = [interpolate(str(word), self.dotenv) for word in SERVICES[service]["command"]]
        if words[0] == "triarb":
            words[:1] = [sys.executable, "-m", "triarb.cli"]
        return [str(self.volume(service, word) or word) if word.startswith("/") else word for word in words]

    def environment(self, service: str) -> dict[str, str]:
        """The service's compose environment, with only what a container namespace makes different changed."""
        env = {name: interpolate(str(value), self.dotenv) for name, value in SERVICES[service]["environment"].items()}
        if "REDIS_URL" in env:
            url = urlsplit(env["REDIS_URL"])
            env["REDIS_URL"] = urlunsplit(url._replace(netloc=f"127.0.0.1:{self.redis_port}"))
        for name in ("TRIARB_SERVICE_PORT", "TRIARB_DASHBOARD_PORT"):
            if name in env:
                env[name] = str(free_port())
        for name in ("TRIARB_SERVICE_HOST", "TRIARB_DASHBOARD_HOST"):
            if env.get(name) == "0.0.0.0":
                env[name] = "127.0.0.1"
        if service.startswith("producer-"):
            venue = SERVICES[service]["command"][2]
            url, symbols = self.venues[venue]
            env |= {f"TRIARB_PRODUCERS__{venue.upper()}__URL": url,
                    f"TRIARB_PRODUCERS__{venue.upper()}__SYMBOLS": json.dumps(symbols),
                    f"TRIARB_PRODUCERS__{venue.upper()}__REST_URL": CLOSED_PORT_URL}
        return env

    def base_env(self, cwd: Path) -> dict[str, str]:
        """What the image gives every container besides compose's environment."""
        return {"PATH": "/usr/local/bin:/usr/bin:/bin", "PYTHONPATH": str(REPO), "HOME": str(cwd), "LANG": "C.UTF-8"}

    def spawn(self, name: str, command: list[str], env: dict[str, str]) -> Process:
        cwd = self.workdir / "cwd" / name
        cwd.mkdir(parents=True)
        log = self.workdir / f"{name}.log"
        popen = subprocess.Popen(command, env=self.base_env(cwd) | env, cwd=cwd, stdout=subprocess.PIPE,
                                 stderr=log.open("w"), text=True)
        process = Process(name, popen, env, log)
        threading.Thread(target=lambda: process.stdout.extend(popen.stdout or ()), daemon=True).start()
        self.processes[name] = process
        return process

    # --- the stack -----------------------------------------------------------------------------------------

    def start_redis(self) -> None:
        config = self.spawn("redis-config", self.command("redis-config"), self.environment("redis-config"))
        assert config.popen.wait(timeout=30) == 0, config.log.read_text()
        command = self.command("redis")
        command[command.index("--bind") + 1] = "127.0.0.1"
        data = self.volume("redis", "/data")  # the redis image's working directory
        assert data is not None
        data.mkdir()
        self.spawn("redis", [*command, "--port", str(self.redis_port), "--dir", str(data)],
                   self.environment("redis"))
        assert wait_until(lambda: self.passes_healthcheck("redis"), timeout_s=20), "redis: healthcheck fails"

    def start_demo_venues(self) -> None:
        """The exchanges, played by `triarb demo-venue` (as tests/chaos/harness.py starts them)."""
        started = {venue: self.spawn(f"venue-{venue}", [sys.executable, "-m", "triarb.cli", "demo-venue", venue], {})
                   for venue in ("coinbase", "kraken")}
        for venue, process in started.items():
            assert wait_until(lambda p=process: bool(p.stdout), timeout_s=30), process.log.read_text()
            banner = process.stdout[0]
            served = banner.split(" serving ")[1].split(" (")[0].split(", ")
            self.venues[venue] = (banner.split()[3], served)

    def start(self) -> None:
        self.start_redis()
        self.start_demo_venues()
        for service in APP_SERVICES:  # compose starts them together once Redis is healthy
            self.spawn(service, self.command(service), self.environment(service))
        for service in APP_SERVICES:
            process = self.processes[service]
            assert wait_until(lambda p=process: bool(p.stdout) or p.popen.poll() is not None, timeout_s=30)
            assert process.popen.poll() is None, f"{service} exited: {process.log.read_text()[-2000:]}"

    def passes_healthcheck(self, service: str) -> bool:
        """Runs the service's compose healthcheck, its URL's port made the one this process listens on."""
        kind, *test = [interpolate(str(word), self.dotenv) for word in SERVICES[service]["healthcheck"]["test"]]
        env = self.base_env(self.workdir)
        if kind == "CMD-SHELL":  # redis: `REDISCLI_AUTH=$ADMIN redis-cli ... ping`, ADMIN from its environment
            command = ["sh", "-c", test[0].replace("redis-cli", f"redis-cli -p {self.redis_port}")]
            env |= self.processes[service].env
        else:
            compose_env = SERVICES[service]["environment"]
            local_env = self.processes[service].env
            ports = {compose_env[name]: local_env[name] for name in ("TRIARB_SERVICE_PORT", "TRIARB_DASHBOARD_PORT")
                     if name in compose_env}
            code = re.sub(r"127\.0\.0\.1:(\d+)", lambda m: f"127.0.0.1:{ports[m[1]]}", test[-1])
            command = [sys.executable if word == "python" else word for word in test[:-1]] + [code]
        return subprocess.run(command, env=env, capture_output=True, timeout=10).returncode == 0

    def admin(self) -> redis.Redis:
        return redis.Redis(port=self.redis_port, username="admin", password=self.dotenv[
            "TRIARB_REDIS_PASSWORDS__ADMIN"])

    def dashboard_api(self, path: str) -> Any:
        port = self.processes["dashboard"].env["TRIARB_DASHBOARD_PORT"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return json.loads(response.read())

    def stop(self) -> None:
        """Whatever still runs (Redis, the venues, or everything after a failure): SIGTERM, then SIGKILL."""
        running = [process.popen for process in self.processes.values() if process.popen.poll() is None]
        for popen in running:
            popen.terminate()
        for popen in running:
            if exit_status(popen, 10) is None:
                popen.kill()
                popen.wait(timeout=10)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComposeAsProcesses]:
    running = ComposeAsProcesses(tmp_path_factory.mktemp("compose"))
    try:
        running.start()
        yield running
    finally:
        running.stop()


def test_compose_runs_each_triarb_service_as_a_process() -> None:
    assert APP_SERVICES == sorted(SECRETS_OF)


@pytest.mark.parametrize("service", APP_SERVICES)
def test_each_process_holds_only_its_own_roles_secrets_and_none_on_a_command_line(
        stack: ComposeAsProcesses, service: str) -> None:
    process = stack.processes[service]
    held = {name for name, secret in stack.dotenv.items() if secret in process.environ().values()}
    assert held == SECRETS_OF[service]
    for running in stack.processes.values():  # redis-server and the venues too
        if running.popen.poll() is None:
            assert not any(secret in running.cmdline() for secret in stack.dotenv.values()), running.service


@pytest.mark.parametrize("service", ["redis", *APP_SERVICES])
def test_every_process_passes_its_compose_healthcheck(stack: ComposeAsProcesses, service: str) -> None:
    assert wait_until(lambda: stack.passes_healthcheck(service), timeout_s=20), stack.processes[service].log.read_text()


def test_snapshots_become_opportunities_fills_ndjson_lines_and_page_rows(stack: ComposeAsProcesses) -> None:
    with stack.admin() as admin:
        def exchanges() -> set[bytes]:
            return {fields[b"exchange"] for _, fields in admin.xrevrange("md.snapshot", count=500)}

        assert wait_until(lambda: exchanges() >= {b"coinbase", b"kraken"}, timeout_s=20), "no snapshots from both"
        assert wait_until(lambda: admin.xlen("strategy.opportunity") > 0, timeout_s=OPPORTUNITY_TIMEOUT_S), (
            "the detector found no opportunity: " + stack.processes["detector"].log.read_text()[-2000:])
        first = {entry_id.decode() for entry_id, _ in admin.xrange("strategy.opportunity")}
        assert wait_until(lambda: admin.xlen("strategy.fill") > 0, timeout_s=10), "the paper broker filled nothing"

    archive = stack.volume("persistence", "/data")
    assert archive is not None

    def archived() -> set[str]:
        return {orjson.loads(line)["_id"] for path in (archive / "strategy.opportunity").glob("*.ndjson")
                for line in path.read_bytes().splitlines() if line.strip()}

    assert wait_until(lambda: archived() >= first, timeout_s=15), "persistence did not write the opportunities"
    rows = stack.dashboard_api("/api/opportunities?limit=1000")
    assert {row["stream_id"] for row in rows} >= first
    assert all("ETH-BTC" in row["cycle_id"] for row in rows)  # the demo's planted dislocation, nothing else
    assert any(row["fill"] is not None for row in rows), "no opportunity on the page has its paper fill"
    assert stack.dashboard_api("/api/episodes"), "the page shows no episode"


def test_sigterm_stops_every_process_with_status_0_and_no_traceback(stack: ComposeAsProcesses) -> None:
    for name in APP_SERVICES:  # what `docker compose stop` sends each container
        stack.processes[name].popen.send_signal(signal.SIGTERM)
    statuses = {name: exit_status(stack.processes[name].popen, STOP_TIMEOUT_S) for name in APP_SERVICES}
    logs = {name: stack.processes[name].log.read_text() for name in APP_SERVICES}
    assert statuses == dict.fromkeys(APP_SERVICES, 0), {name: logs[name][-1500:] for name in APP_SERVICES}
    assert [name for name, log in logs.items() if "Traceback" in log] == []


def exit_status(popen: subprocess.Popen[str], timeout_s: float) -> int | None:
    """The exit status, or None while it is still running after ``timeout_s``."""
    try:
        return popen.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return None
