"""Redis connections for every service, and the private ``redis-server`` that ``triarb up`` runs.

Where a connection goes, in order: an explicit endpoint; ``REDIS_URL`` (as the service's ACL user when a
password for it is configured and the URL carries no credentials); the runtime file ``var/redis.json`` a
running embedded server wrote. Anything else is a configuration error with a message that says what to do.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import redis
import redis.asyncio
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.retry import Retry

from common.acl import AclConfigError, render_config
from common.config import Role, Settings

log = logging.getLogger(__name__)

RUNTIME_FILE = "redis.json"
HOST = "127.0.0.1"
SOCKET_TIMEOUT_S = 10.0
START_ATTEMPTS = 3
"""Tries when the chosen port is taken between our check and redis-server's bind (another process won)."""
PRIVATE_UMASK = 0o077
"""redis-server runs with it: its AOF files, manifest, log and any RDB are 0600, its directories 0700."""


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
        return f"redis://{role.value}:{quote(self.passwords[role], safe='')}@{self.host}:{self.port}/0"


PACKAGED_REDIS_CONF = Path(__file__).resolve().with_name("redis.conf")
"""The copy of the top-level ``redis.conf`` that the build puts in the wheel (see setup.py); only in an install."""
CHECKOUT_REDIS_CONF = Path(__file__).resolve().parent.parent / "redis.conf"
"""The top-level ``redis.conf`` itself, next to this package in a source tree (an editable install)."""


def repo_redis_conf() -> Path:
    """The ``redis.conf`` shipped with triarb: the wheel's copy when installed, else the source tree's file.

    The installed copy is looked for first: a plain ``Path`` next to this module, since the package always
    lives on a file system (the dashboard serves its static files from a directory too).
    """
    return PACKAGED_REDIS_CONF if PACKAGED_REDIS_CONF.is_file() else CHECKOUT_REDIS_CONF


def _server_alive(pid: int, binary: str) -> bool:
    """True when ``pid`` runs ``binary``. The command line is checked, not just the pid: after a reboot or a
    SIGKILLed ``triarb up`` the file outlives the server, and its pid may since belong to anything."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return False
    except OSError:  # no /proc (not Linux): the pid is all there is to go on
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return Path(binary).name.encode() in cmdline  # a zombie's cmdline is empty


def read_runtime_file(path: Path) -> RedisEndpoint | None:
    """The endpoint a live embedded server left in ``path``; ``None`` if there is none or it is stale."""
    try:
        data = json.loads(path.read_text())
        pid, binary = int(data["pid"]), str(data.get("server", "redis-server"))
        if not _server_alive(pid, binary):
            log.warning("ignoring stale %s: its redis-server (pid %d) is no longer running", path, pid)
            return None
        passwords = {Role(role): str(password) for role, password in data["passwords"].items()}
        return RedisEndpoint(str(data["host"]), int(data["port"]), passwords, pid)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise RedisNotConfiguredError(f"; {path} is unreadable ({exc!r}): delete it") from exc


def resolve_endpoint(settings: Settings) -> RedisEndpoint | None:
    """The embedded server to use, or ``None`` when ``REDIS_URL`` names an external Redis (or nothing runs)."""
    if settings.redis_url:
        return None
    return read_runtime_file(settings.var_dir / RUNTIME_FILE)


def _connection_kwargs(settings: Settings, role: Role, endpoint: RedisEndpoint | None) -> dict[str, Any]:
    # RESP2 pinned: the bus parses RESP2 reply shapes. Keepalive and health checks find dead peers; the
    # socket timeout turns a stalled server into an error (every BLOCK we use is far shorter). One quick
    # retry on a fresh connection covers a pooled socket that a restart closed; longer outages surface
    # at once as errors, and each component's own loop (common.redis_link) backs off and carries on.
    kwargs: dict[str, Any] = {
        "client_name": f"triarb-{role.value}", "protocol": 2,
        "socket_connect_timeout": 5, "socket_timeout": SOCKET_TIMEOUT_S, "socket_keepalive": True,
        "health_check_interval": 30, "retry": Retry(ExponentialWithJitterBackoff(base=0.05, cap=0.25), 1),
    }
    if endpoint is None and not settings.redis_url:
        endpoint = resolve_endpoint(settings)
        if endpoint is None:
            runtime = settings.var_dir / RUNTIME_FILE
            stale = f"; {runtime} is stale (its server is gone)" if runtime.exists() else ""
            raise RedisNotConfiguredError(stale)
    if endpoint is not None:
        password = endpoint.passwords.get(role)
        return kwargs | {"host": endpoint.host, "port": endpoint.port, "username": role.value, "password": password}
    assert settings.redis_url is not None
    kwargs["url"] = settings.redis_url
    parts = urlsplit(settings.redis_url)
    password = settings.password(role)
    if password is not None and parts.username is None and parts.password is None:
        kwargs |= {"username": role.value, "password": password}  # credentials in the URL win as given
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
    url = kwargs.pop("url", None)
    if url is not None:
        return redis.Redis.from_url(url, **kwargs)
    return redis.Redis(**kwargs)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int) -> bool:
    """Whether redis-server could bind ``port`` now. SO_REUSEADDR as redis-server sets it: without it a
    port whose old connections sit in TIME_WAIT (a server that just restarted) would look taken."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
        return True


def _die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes Linux SIGTERM the server when the thread that started it dies
    (``prctl(PR_SET_PDEATHSIG)``), so even a SIGKILLed ``triarb up`` leaves no redis-server behind.

    ``prctl`` is looked up here, before the fork: the child must not load libraries between fork and exec.
    The signal follows the *thread* that forks, so start the server from a thread that outlives it.
    """
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def arm() -> None:
        prctl(1, int(signal.SIGTERM), 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the parent died before prctl: no signal would ever come
            os._exit(1)

    return arm


def log_tail(log_file: Path, lines: int = 5) -> list[str]:
    """The last lines of a server log, for error messages (empty if there is none yet)."""
    try:
        return log_file.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return []


def make_private(directory: Path) -> None:
    """Create ``directory`` (0700), or make an existing one and everything under it owner-only: a data dir
    from before files were created private (AOF files were 0644 in 0755 dirs) is fixed on the next start."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    directory.chmod(0o700)
    for root, dirs, files in os.walk(directory):
        for name in dirs + files:
            path = Path(root) / name
            if not path.is_symlink():  # never change what a link points to, outside the data dir perhaps
                path.chmod(0o700 if path.is_dir() else path.stat().st_mode & 0o700)


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically, readable by the owner only (0600) from the first byte."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class EmbeddedRedis:
    """A private redis-server with the repo's ``redis.conf``, data under ``var_dir/redis``.

    It runs in its own session, so a terminal's Ctrl-C reaches only ``triarb up``, which then drains the
    components before it stops the server they write to (redis-server exits on SIGINT at once).
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
            raise EmbeddedRedisError("the embedded redis-server is not running: call start() first")
        return self._endpoint

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def __enter__(self) -> RedisEndpoint:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self, timeout_s: float = 10.0) -> RedisEndpoint:
        """Start the server with every role's password in its ACL file and (by default) write the runtime file."""
        if self._process is not None:
            raise EmbeddedRedisError(f"this embedded redis-server already runs (pid {self._process.pid})")
        if self._write_runtime_file:
            try:
                running = read_runtime_file(self.runtime_file)
            except RedisNotConfiguredError as exc:
                raise EmbeddedRedisError(
                    f"{self.runtime_file} is unreadable: delete it if no `triarb up` runs from "
                    f"{self.runtime_file.parent}"
                ) from exc
            if running is not None:
                raise EmbeddedRedisError(
                    f"an embedded redis-server (pid {running.pid}, port {running.port}) already runs from "
                    f"{self.runtime_file}; stop that `triarb up` first, or set REDIS_URL to share it"
                )
            self.runtime_file.unlink(missing_ok=True)
        passwords = {role: self._settings.password(role) or secrets.token_urlsafe(24) for role in Role}
        make_private(self.data_dir)
        port = self._port if self._port and port_is_free(self._port) else free_port()
        for attempt in range(1, START_ATTEMPTS + 1):
            try:
                self.spawn(port, passwords)
                self.wait_ready(timeout_s)
                break
            except EmbeddedRedisError as exc:
                self.stop()
                if "Address already in use" not in str(exc) or attempt == START_ATTEMPTS:
                    raise
                port = free_port()
            except BaseException:
                self.stop()
                raise
        try:
            if self._write_runtime_file:
                self._save_runtime_file()
        except BaseException:
            self.stop()
            raise
        return self.endpoint

    def poll(self) -> int | None:
        """The server's exit status once it has exited (reaped), else None (running or never started)."""
        return self._process.poll() if self._process is not None else None

    def respawn(self) -> None:
        """Start a server again after it died: same port, data dir and passwords, so every client's
        reconnect loop finds it where it was and logs in as before. Call :meth:`wait_ready` next."""
        endpoint = self.endpoint
        if self._process is not None and self._process.poll() is None:
            raise EmbeddedRedisError(f"the embedded redis-server (pid {self._process.pid}) still runs")
        self.spawn(endpoint.port, endpoint.passwords)
        if self._write_runtime_file:
            self._save_runtime_file()

    def spawn(self, port: int, passwords: Mapping[Role, str]) -> None:
        """Write the ACL file, then start redis-server on ``port`` without waiting for it.

        Call from a thread that lives as long as the server should (see :func:`_die_with_parent`).
        """
        binary = self._settings.redis_server_bin
        conf_path = self._settings.redis_conf or repo_redis_conf()
        try:
            server_conf, acl = render_config(conf_path.read_text(), passwords)
        except OSError as exc:
            raise EmbeddedRedisError(f"cannot read {conf_path}: {exc.strerror}; set TRIARB_REDIS_CONF") from exc
        except AclConfigError as exc:
            raise EmbeddedRedisError(f"{conf_path}: {exc}") from exc
        write_private(self.acl_file, acl)
        command = [
            binary, "--port", str(port), "--dir", str(self.data_dir), "--logfile", str(self.log_file),
            "--daemonize", "no", "--aclfile", str(self.acl_file), "-",
        ]
        try:
            self._process = subprocess.Popen(
                command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True, preexec_fn=_die_with_parent(), umask=PRIVATE_UMASK,
            )
        except FileNotFoundError as exc:
            raise EmbeddedRedisError(
                f"{binary} not found: install it (`make bootstrap` or `apt-get install redis-server`) "
                "or set REDIS_URL to use an existing Redis"
            ) from exc
        assert self._process.stdin is not None
        with contextlib.suppress(BrokenPipeError):  # exited already: wait_ready reports why
            self._process.stdin.write(server_conf.encode())
            self._process.stdin.close()
        self._endpoint = RedisEndpoint(HOST, port, dict(passwords), self._process.pid)

    @property
    def acl_file(self) -> Path:
        return self.data_dir / "users.acl"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "redis.log"

    def _admin(self, endpoint: RedisEndpoint | None = None, timeout_s: float | None = None) -> redis.Redis:
        """An admin client that fails fast: redis-py's default retries with backoff would turn "not up
        yet" and "just shut down" into seconds of waiting."""
        endpoint = endpoint or self.endpoint
        return redis.Redis(
            host=endpoint.host, port=endpoint.port, username=Role.ADMIN.value,
            password=endpoint.passwords[Role.ADMIN], socket_connect_timeout=5, socket_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),
        )

    def wait_ready(self, timeout_s: float = 10.0) -> None:
        """Poll PING until it answers, the process exits (reported with its log's tail) or time runs out.

        PING as admin succeeds only once the AOF is loaded (LOADING before) and the ACL file is in force.
        """
        assert self._process is not None
        log_file = self.log_file
        deadline = time.monotonic() + timeout_s
        with self._admin(timeout_s=1.0) as client:
            while True:
                if self._process.poll() is not None:
                    tail = log_tail(log_file)
                    raise EmbeddedRedisError(
                        f"redis-server exited with status {self._process.returncode} at start-up: "
                        + (" | ".join(tail) or f"see {log_file}")
                    )
                # AuthenticationError is a ConnectionError: another server that won our port says WRONGPASS
                with contextlib.suppress(redis.ConnectionError, redis.BusyLoadingError):
                    if client.ping():
                        return
                if time.monotonic() > deadline:
                    raise EmbeddedRedisError(f"redis-server did not answer within {timeout_s}s; see {log_file}")
                time.sleep(0.02)

    def _save_runtime_file(self) -> None:
        """Written atomically and private (0600): it holds every password, the admin's included."""
        endpoint = self.endpoint
        data = {
            "host": endpoint.host, "port": endpoint.port, "pid": endpoint.pid, "data_dir": str(self.data_dir),
            "server": Path(self._settings.redis_server_bin).name,
            "passwords": {role.value: password for role, password in endpoint.passwords.items()},
        }
        self.runtime_file.parent.mkdir(parents=True, exist_ok=True)
        write_private(self.runtime_file, json.dumps(data))

    def stop(self, timeout_s: float = 10.0) -> None:
        """SHUTDOWN (the AOF is fsynced), then SIGTERM, then SIGKILL; always reaps. Idempotent."""
        process, self._process = self._process, None
        endpoint, self._endpoint = self._endpoint, None
        if process is None:
            return
        if self._write_runtime_file:  # first, so nothing new connects to a stopping server
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                if json.loads(self.runtime_file.read_text())["pid"] == process.pid:  # ours, never another's
                    self.runtime_file.unlink()
        if process.poll() is not None:
            return
        if endpoint is not None:
            with contextlib.suppress(redis.RedisError, OSError):
                with self._admin(endpoint, timeout_s=timeout_s / 2) as admin:
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
