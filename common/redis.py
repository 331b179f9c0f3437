"""Redis connections for every service, and the private ``redis-server`` that ``triarb up`` runs.

Where a connection goes, in order: an explicit endpoint; ``REDIS_URL`` (as the service's ACL user when a
password for it is configured and the URL carries no credentials); the runtime file ``var/redis.json`` a
running embedded server wrote. Anything else is a configuration error with a message that says what to do.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import redis
import redis.asyncio
from redis.backoff import NoBackoff
from redis.retry import Retry

from common.config import Role, Settings

RUNTIME_FILE = "redis.json"
HOST = "127.0.0.1"
ROLE_USERS = tuple(role for role in Role if role is not Role.ADMIN)
"""Users ``redis.conf`` defines without a password; the launcher sets one for each at start-up."""


class RedisNotConfiguredError(RuntimeError):
    def __init__(self, detail: str = "") -> None:
        super().__init__(
            "no Redis to connect to: set REDIS_URL, or start the stack with `triarb up` (it runs a private "
            f"redis-server and leaves its address in var/redis.json){detail}"
        )


class EmbeddedRedisError(RuntimeError):
    """The private redis-server could not be started or is already running."""


@dataclass(frozen=True, slots=True)
class RedisEndpoint:
    host: str
    port: int
    passwords: Mapping[Role, str] = field(default_factory=dict)
    pid: int | None = None

    def url(self, role: Role | None = None) -> str:
        """``redis://role:password@host:port/0``, or without credentials when ``role`` is None."""
        if role is None:
            return f"redis://{self.host}:{self.port}/0"
        return f"redis://{role.value}:{self.passwords[role]}@{self.host}:{self.port}/0"


def repo_redis_conf() -> Path:
    return Path(__file__).resolve().parent.parent / "redis.conf"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_runtime_file(path: Path) -> RedisEndpoint | None:
    """The endpoint a live embedded server left in ``path``; ``None`` if absent or its process is gone."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise RedisNotConfiguredError(f"; {path} is unreadable ({exc}), delete it") from exc
    pid = int(data["pid"])
    if not _pid_alive(pid):
        return None
    passwords = {Role(role): password for role, password in data["passwords"].items()}
    return RedisEndpoint(data["host"], int(data["port"]), passwords, pid)


def resolve_endpoint(settings: Settings) -> RedisEndpoint | None:
    """The embedded server to use, or ``None`` when ``REDIS_URL`` names an external Redis (or nothing runs)."""
    if settings.redis_url:
        return None
    return read_runtime_file(settings.var_dir / RUNTIME_FILE)


def _connection_kwargs(settings: Settings, role: Role, endpoint: RedisEndpoint | None) -> dict[str, Any]:
    common: dict[str, Any] = {
        "client_name": f"triarb-{role.value}",
        "socket_connect_timeout": 5,
        "socket_keepalive": True,
        "health_check_interval": 30,
    }
    if endpoint is None and not settings.redis_url:
        endpoint = resolve_endpoint(settings)
        if endpoint is None:
            raise RedisNotConfiguredError()
    if endpoint is not None:
        return common | {
            "host": endpoint.host, "port": endpoint.port, "username": role.value,
            "password": endpoint.passwords.get(role),
        }
    assert settings.redis_url is not None
    kwargs = common | {"url": settings.redis_url}
    password = settings.password(role)
    if password is not None and not urlsplit(settings.redis_url).password:
        kwargs |= {"username": role.value, "password": password}
    return kwargs


def connect(
    settings: Settings, role: Role, *, decode_responses: bool = False, endpoint: RedisEndpoint | None = None
) -> redis.asyncio.Redis:
    """An asyncio client as ACL user ``role`` (RESP2, bytes replies unless ``decode_responses``)."""
    kwargs = _connection_kwargs(settings, role, endpoint) | {"decode_responses": decode_responses}
    url = kwargs.pop("url", None)
    if url is not None:
        return redis.asyncio.Redis.from_url(url, **kwargs)
    return redis.asyncio.Redis(**kwargs)


def connect_sync(
    settings: Settings, role: Role, *, decode_responses: bool = False, endpoint: RedisEndpoint | None = None
) -> redis.Redis:
    """The same rules as :func:`connect`, for synchronous callers (launcher, CLI, tests)."""
    kwargs = _connection_kwargs(settings, role, endpoint) | {"decode_responses": decode_responses}
    kwargs.pop("health_check_interval")
    url = kwargs.pop("url", None)
    if url is not None:
        return redis.Redis.from_url(url, **kwargs)
    return redis.Redis(**kwargs)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
        return True


def _die_with_parent() -> None:
    """Runs in the child before exec: on Linux, SIGTERM the server when the process that started it dies,
    so even a SIGKILLed ``triarb up`` leaves no redis-server behind (prctl PR_SET_PDEATHSIG = 1)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)


class EmbeddedRedis:
    """A private redis-server with the repo's ``redis.conf``, data under ``var_dir/redis``.

    It runs in its own session so a terminal's Ctrl-C reaches only ``triarb up``, which then drains the
    components before stopping the server they write to.
    """

    def __init__(
        self, settings: Settings, *, port: int | None = None, data_dir: Path | None = None,
        write_runtime_file: bool = True,
    ) -> None:
        self._settings = settings
        self._port = settings.embedded_port if port is None else port
        self.data_dir = (data_dir or settings.var_dir / "redis").resolve()
        self.runtime_file = settings.var_dir / RUNTIME_FILE
        self._write_runtime_file = write_runtime_file
        self._process: subprocess.Popen[bytes] | None = None
        self._endpoint: RedisEndpoint | None = None

    @property
    def endpoint(self) -> RedisEndpoint:
        if self._endpoint is None:
            raise EmbeddedRedisError("the embedded redis-server is not running")
        return self._endpoint

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def __enter__(self) -> RedisEndpoint:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self, timeout_s: float = 10.0) -> RedisEndpoint:
        if self._write_runtime_file:
            running = read_runtime_file(self.runtime_file)
            if running is not None:
                raise EmbeddedRedisError(
                    f"an embedded redis-server (pid {running.pid}, port {running.port}) already runs from "
                    f"{self.runtime_file}; stop that `triarb up` first, or set REDIS_URL to share it"
                )
            self.runtime_file.unlink(missing_ok=True)
        passwords = {role: self._settings.password(role) or secrets.token_urlsafe(24) for role in Role}
        port = self._port if self._port and port_is_free(self._port) else free_port()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        conf = self._settings.redis_conf or repo_redis_conf()
        log_file = self.data_dir / "redis.log"
        command = [
            self._settings.redis_server_bin, str(conf), "--port", str(port), "--dir", str(self.data_dir),
            "--logfile", str(log_file), "--daemonize", "no", "-",
        ]
        try:
            self._process = subprocess.Popen(
                command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True, preexec_fn=_die_with_parent,
            )
        except FileNotFoundError as exc:
            raise EmbeddedRedisError(
                f"{self._settings.redis_server_bin} not found: install it (`make bootstrap` or "
                "`apt-get install redis-server`) or set REDIS_URL to use an existing Redis"
            ) from exc
        assert self._process.stdin is not None
        # The admin user is the only one with a password in config; it goes through stdin, never argv.
        self._process.stdin.write(f"user admin on >{passwords[Role.ADMIN]} ~* &* +@all\n".encode())
        self._process.stdin.close()
        self._endpoint = RedisEndpoint(HOST, port, passwords, self._process.pid)
        try:
            self._wait_ready(timeout_s, log_file)
            with self._admin() as admin:
                for role in ROLE_USERS:
                    admin.execute_command("ACL", "SETUSER", role.value, "resetpass", f">{passwords[role]}")
        except BaseException:
            self.stop()
            raise
        if self._write_runtime_file:
            self._save_runtime_file()
        return self._endpoint

    def _admin(self, endpoint: RedisEndpoint | None = None) -> redis.Redis:
        """An admin client that fails fast: redis-py's default retries with backoff would turn "not up
        yet" and "just shut down" into seconds of waiting."""
        endpoint = endpoint or self.endpoint
        return redis.Redis(
            host=endpoint.host, port=endpoint.port, username=Role.ADMIN.value,
            password=endpoint.passwords[Role.ADMIN], socket_connect_timeout=5, retry=Retry(NoBackoff(), 0),
        )

    def _wait_ready(self, timeout_s: float, log_file: Path) -> None:
        assert self._process is not None and self._endpoint is not None
        deadline = time.monotonic() + timeout_s
        client = self._admin()
        try:
            while True:
                if self._process.poll() is not None:
                    tail = log_file.read_text(errors="replace").splitlines()[-5:] if log_file.exists() else []
                    raise EmbeddedRedisError(
                        f"redis-server exited with status {self._process.returncode} at start-up: "
                        + (" | ".join(tail) or f"see {log_file}")
                    )
                with contextlib.suppress(redis.ConnectionError, redis.BusyLoadingError):
                    if client.ping():
                        return
                if time.monotonic() > deadline:
                    raise EmbeddedRedisError(f"redis-server did not answer within {timeout_s}s; see {log_file}")
                time.sleep(0.02)
        finally:
            client.close()

    def _save_runtime_file(self) -> None:
        endpoint = self.endpoint
        data = {
            "host": endpoint.host, "port": endpoint.port, "pid": endpoint.pid, "data_dir": str(self.data_dir),
            "passwords": {role.value: password for role, password in endpoint.passwords.items()},
        }
        self.runtime_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.runtime_file.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(data, out)
        os.replace(tmp, self.runtime_file)

    def stop(self, timeout_s: float = 10.0) -> None:
        """SHUTDOWN (the AOF is fsynced), then SIGTERM, then SIGKILL; always reaps. Idempotent."""
        process, self._process = self._process, None
        endpoint, self._endpoint = self._endpoint, None
        if self._write_runtime_file and process is not None:
            self.runtime_file.unlink(missing_ok=True)
        if process is None or process.poll() is not None:
            return
        if endpoint is not None:
            with contextlib.suppress(redis.RedisError, OSError):
                with self._admin(endpoint) as admin:
                    admin.shutdown()
        for sig in (None, signal.SIGTERM, signal.SIGKILL):
            if sig is not None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(sig)
            try:
                process.wait(timeout=timeout_s / 2 if sig is not signal.SIGKILL else None)
                return
            except subprocess.TimeoutExpired:
                continue
