"""The private redis-server: starts with our config and users, stops without leaving a process behind."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import redis
from pydantic import SecretStr

from common.acl import DEFAULT_USER_RULES
from common.config import Role, Settings
from common.redis import RUNTIME_FILE, EmbeddedRedis, EmbeddedRedisError, connect_sync
from tests.processes import is_running, redis_servers_in, wait_until

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def needs_redis_server(redis_server: object) -> None:
    """Skip with the install hint when redis-server is missing (the fixture says so)."""


def test_start_and_stop_leave_no_process_behind(tmp_path: Path) -> None:
    server = EmbeddedRedis(Settings(var_dir=tmp_path), port=0)
    endpoint = server.start()
    assert endpoint.pid is not None
    assert redis_servers_in(server.data_dir) == [endpoint.pid]

    server.stop()

    assert not is_running(endpoint.pid)
    assert redis_servers_in(server.data_dir) == []
    assert not (tmp_path / RUNTIME_FILE).exists()


def test_stop_is_idempotent(tmp_path: Path) -> None:
    server = EmbeddedRedis(Settings(var_dir=tmp_path), port=0)
    server.start()
    server.stop()
    server.stop()
    assert server.pid is None


def test_data_lives_in_an_append_only_file_under_var(tmp_path: Path) -> None:
    settings = Settings(var_dir=tmp_path)
    with EmbeddedRedis(settings, port=0) as endpoint:
        with connect_sync(settings, Role.ADMIN, endpoint=endpoint, decode_responses=True) as admin:
            admin.xadd("md.trade", {"v": "1"})
            assert admin.config_get("appendonly") == {"appendonly": "yes"}
            assert admin.config_get("appendfsync") == {"appendfsync": "everysec"}
            assert admin.config_get("bind") == {"bind": "127.0.0.1 -::1"}
            assert admin.config_get("protected-mode") == {"protected-mode": "yes"}
    assert (tmp_path / "redis" / "appendonlydir").is_dir()

    with EmbeddedRedis(settings, port=0) as endpoint, connect_sync(settings, Role.ADMIN, endpoint=endpoint) as admin:
        assert admin.xlen("md.trade") == 1  # survived the restart


def test_data_files_are_private_even_under_a_permissive_umask(tmp_path: Path) -> None:
    settings = Settings(var_dir=tmp_path)
    data_dir = tmp_path / "redis"
    data_dir.mkdir(mode=0o755)  # left by an older version, world-readable
    (data_dir / "old.aof").write_bytes(b"")
    os.chmod(data_dir / "old.aof", 0o644)
    previous = os.umask(0o022)
    try:
        with EmbeddedRedis(settings, port=0) as endpoint:
            with connect_sync(settings, Role.ADMIN, endpoint=endpoint) as admin:
                admin.xadd("md.trade", {"v": "1"})
                admin.bgrewriteaof()  # a base file and a new incremental file, written by the server itself
                assert wait_until(lambda: admin.info("persistence")["aof_rewrite_in_progress"] == 0)
    finally:
        os.umask(previous)

    written = list(data_dir.rglob("*"))
    assert {"appendonlydir", "redis.log", "users.acl"} <= {path.name for path in written}
    assert any(path.name.endswith(".base.rdb") for path in written)
    for path in [data_dir, *written]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o077 == 0, (path, oct(mode))
        assert not path.is_dir() or mode == 0o700, (path, oct(mode))


def test_runtime_file_is_private_and_lets_other_commands_connect_as_each_role(tmp_path: Path) -> None:
    settings = Settings(var_dir=tmp_path)
    with EmbeddedRedis(settings, port=0):
        runtime = tmp_path / RUNTIME_FILE
        assert stat.S_IMODE(runtime.stat().st_mode) == 0o600
        for role in Role:
            with connect_sync(settings, role) as client:  # no endpoint, no REDIS_URL: the runtime file
                assert client.ping()


def test_second_server_on_the_same_var_dir_is_refused(tmp_path: Path) -> None:
    settings = Settings(var_dir=tmp_path)
    with EmbeddedRedis(settings, port=0) as endpoint:
        with pytest.raises(EmbeddedRedisError, match=rf"pid {endpoint.pid}, port \d+\) already runs"):
            EmbeddedRedis(settings, port=0).start()


def test_a_stale_runtime_file_from_a_dead_server_is_replaced(tmp_path: Path) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    (tmp_path / RUNTIME_FILE).write_text(f'{{"host": "127.0.0.1", "port": 1, "pid": {dead.pid}, "passwords": {{}}}}')
    with EmbeddedRedis(Settings(var_dir=tmp_path), port=0) as endpoint:
        assert f'"pid": {endpoint.pid}' in (tmp_path / RUNTIME_FILE).read_text()


def test_configured_passwords_are_used_and_missing_ones_generated(tmp_path: Path) -> None:
    settings = Settings(var_dir=tmp_path, redis_passwords={Role.PRODUCER: SecretStr("producer-secret")})
    with EmbeddedRedis(settings, port=0) as endpoint:
        assert endpoint.passwords[Role.PRODUCER] == "producer-secret"
        assert len(endpoint.passwords[Role.DASHBOARD]) >= 32
        wrong = redis.Redis(port=endpoint.port, username="producer", password="guess", retry=None)
        with pytest.raises(redis.AuthenticationError):
            wrong.ping()


def test_busy_configured_port_falls_back_to_a_free_one(tmp_path: Path) -> None:
    settings = Settings(var_dir=tmp_path)
    with EmbeddedRedis(settings, port=0) as first:
        with EmbeddedRedis(settings, port=first.port, write_runtime_file=False, data_dir=tmp_path / "b") as second:
            assert second.port != first.port


def test_failing_start_reports_the_server_log(tmp_path: Path) -> None:
    bad_conf = tmp_path / "bad.conf"
    bad_conf.write_text(f"user default {DEFAULT_USER_RULES}\nno-such-directive yes\n")
    with pytest.raises(EmbeddedRedisError, match="exited with status 1 at start-up"):
        EmbeddedRedis(Settings(var_dir=tmp_path, redis_conf=bad_conf), port=0).start()
    assert redis_servers_in((tmp_path / "redis").resolve()) == []


def test_missing_binary_is_an_actionable_error(tmp_path: Path) -> None:
    settings = Settings(var_dir=tmp_path, redis_server_bin="/nonexistent/redis-server")
    with pytest.raises(EmbeddedRedisError, match="apt-get install redis-server"):
        EmbeddedRedis(settings, port=0).start()


def test_server_dies_with_a_parent_killed_by_sigkill(tmp_path: Path) -> None:
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from common.config import Settings\n"
        "from common.redis import EmbeddedRedis\n"
        "endpoint = EmbeddedRedis(Settings(var_dir=Path(sys.argv[1])), port=0).start()\n"
        "print(endpoint.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path)], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    assert parent.stdout is not None
    server_pid = int(parent.stdout.readline())
    assert is_running(server_pid)

    os.kill(parent.pid, signal.SIGKILL)
    parent.wait(timeout=10)

    assert wait_until(lambda: redis_servers_in((tmp_path / "redis").resolve()) == [])
