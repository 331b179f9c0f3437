"""Where a service connects: explicit endpoint, then REDIS_URL, then a running embedded server, else a clear error."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr

from common.config import Role, Settings
from common.redis import RUNTIME_FILE, RedisEndpoint, RedisNotConfiguredError, connect, connect_sync


def kwargs_of(client: object) -> dict[str, object]:
    return dict(client.connection_pool.connection_kwargs)  # type: ignore[attr-defined]


def write_runtime_file(var_dir: Path, pid: int, server: str = "redis-server") -> None:
    var_dir.mkdir(parents=True, exist_ok=True)
    data = {"host": "127.0.0.1", "port": 6391, "pid": pid, "server": server, "passwords": {"producer": "from-file"}}
    (var_dir / RUNTIME_FILE).write_text(json.dumps(data))


def test_explicit_endpoint_wins_and_logs_in_as_the_role(tmp_path: Path) -> None:
    endpoint = RedisEndpoint("127.0.0.1", 7000, {Role.DETECTOR: "pw"})
    settings = Settings(var_dir=tmp_path, redis_url="redis://elsewhere:6379/0")
    kwargs = kwargs_of(connect(settings, Role.DETECTOR, endpoint=endpoint))
    assert (kwargs["host"], kwargs["port"], kwargs["username"], kwargs["password"]) == (
        "127.0.0.1", 7000, "detector", "pw"
    )
    assert kwargs["client_name"] == "triarb-detector"


def test_redis_url_without_credentials_uses_the_role_password(tmp_path: Path) -> None:
    settings = Settings(
        var_dir=tmp_path, redis_url="redis://cache:6379/0", redis_passwords={Role.PRODUCER: SecretStr("pp")}
    )
    kwargs = kwargs_of(connect(settings, Role.PRODUCER))
    assert (kwargs["host"], kwargs["username"], kwargs["password"]) == ("cache", "producer", "pp")


def test_redis_url_with_credentials_is_used_as_given(tmp_path: Path) -> None:
    settings = Settings(
        var_dir=tmp_path, redis_url="redis://ops:secret@cache:6379/0",
        redis_passwords={Role.PRODUCER: SecretStr("ignored")},
    )
    kwargs = kwargs_of(connect_sync(settings, Role.PRODUCER))
    assert (kwargs["username"], kwargs["password"]) == ("ops", "secret")


def test_without_url_the_running_embedded_server_is_found_through_its_runtime_file(tmp_path: Path) -> None:
    write_runtime_file(tmp_path, os.getpid(), Path(sys.executable).name)  # this process stands in for the server
    kwargs = kwargs_of(connect(Settings(var_dir=tmp_path), Role.PRODUCER))
    assert (kwargs["port"], kwargs["username"], kwargs["password"]) == (6391, "producer", "from-file")


def test_runtime_file_of_a_dead_server_is_ignored(tmp_path: Path) -> None:
    write_runtime_file(tmp_path, pid=2**22 + 12345)  # above the default pid_max: never a live process
    with pytest.raises(RedisNotConfiguredError, match="set REDIS_URL, or start the stack with `triarb up`"):
        connect(Settings(var_dir=tmp_path), Role.PRODUCER)


def test_runtime_file_whose_pid_now_runs_another_program_is_ignored(tmp_path: Path) -> None:
    write_runtime_file(tmp_path, os.getpid())  # alive, but this is python, not redis-server (a reused pid)
    with pytest.raises(RedisNotConfiguredError, match="is stale"):
        connect(Settings(var_dir=tmp_path), Role.PRODUCER)


def test_nothing_configured_is_an_actionable_error(tmp_path: Path) -> None:
    with pytest.raises(RedisNotConfiguredError, match="set REDIS_URL, or start the stack with `triarb up`"):
        connect(Settings(var_dir=tmp_path), Role.DASHBOARD)


def test_endpoint_url_carries_the_role_credentials() -> None:
    endpoint = RedisEndpoint("127.0.0.1", 7000, {Role.DASHBOARD: "pw"})
    assert endpoint.url() == "redis://127.0.0.1:7000/0"
    assert endpoint.url(Role.DASHBOARD) == "redis://dashboard:pw@127.0.0.1:7000/0"
