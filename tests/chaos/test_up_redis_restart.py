"""`triarb up --demo` supervises its embedded redis-server: after a ``kill -9`` (or an operator's graceful
SHUTDOWN) it restarts it on the same port and data dir, snapshots flow again without any manual step,
nothing written more than a second before the kill is lost (nothing at all after a SHUTDOWN), and the
`triarb up` process itself never exits. The process is driven as a user runs it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import redis

from tests.chaos.conftest import ROWS
from tests.chaos.harness import Row, id_ms
from tests.integration.test_cli_stack import UP_LINE, clean_env
from tests.processes import is_running, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.chaos]


class UpProcess:
    def __init__(self, workdir: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "triarb.cli", "up", "--demo"], env=clean_env(workdir / "var"), cwd=workdir,
            stdout=subprocess.PIPE, stderr=(workdir / "up.log").open("a"), text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        match = UP_LINE.search(line)
        assert match is not None, f"`triarb up --demo` did not come up: {line!r}"
        self.archive = workdir / "var" / "data" / "md.snapshot"
        self.runtime_file = workdir / "var" / "redis.json"
        runtime = json.loads(self.runtime_file.read_text())
        self.port = int(runtime["port"])
        self.admin_password = str(runtime["passwords"]["admin"])

    def archived_duplicates(self) -> int:
        ids = [orjson.loads(line)["_id"] for path in sorted(self.archive.glob("*.ndjson"))
               for line in path.read_bytes().splitlines() if line.strip()]
        return len(ids) - len(set(ids))

    def redis_pid(self) -> int:
        return int(json.loads(self.runtime_file.read_text())["pid"])

    def admin(self) -> redis.Redis:
        return redis.Redis(port=self.port, username="admin", password=self.admin_password, socket_timeout=2)

    def snapshot_ids(self) -> list[str]:
        with self.admin() as admin:
            return [entry_id.decode() for entry_id, _ in admin.xrange("md.snapshot")]

    def newest_ms(self) -> int:
        try:
            with self.admin() as admin:
                newest = admin.xrevrange("md.snapshot", count=1)
        except redis.RedisError:
            return 0
        return id_ms(newest[0][0].decode()) if newest else 0


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory, redis_server: object) -> Iterator[UpProcess]:
    running = UpProcess(tmp_path_factory.mktemp("up"))
    try:
        assert wait_until(lambda: running.newest_ms() > 0, timeout_s=30)
        yield running
    finally:
        running.process.send_signal(signal.SIGINT)
        running.process.wait(timeout=30)


def fault(up: UpProcess, name: str, inject: str) -> Row:
    time.sleep(1.5)  # some history, and more than a second of it fsynced
    before = up.snapshot_ids()
    old_pid = up.redis_pid()
    started = time.monotonic()
    fault_ms = time.time() * 1000
    if inject == "kill9":
        os.kill(old_pid, signal.SIGKILL)
    else:
        with up.admin() as admin, contextlib.suppress(redis.ConnectionError):
            admin.shutdown()
    assert wait_until(lambda: not is_running(old_pid), timeout_s=10)
    assert wait_until(lambda: up.newest_ms() > fault_ms + 100, timeout_s=30), "snapshots did not flow again"
    recovery_s = time.monotonic() - started
    after = set(up.snapshot_ids())
    promised = [i for i in before if inject != "kill9" or id_ms(i) < fault_ms - 1000]
    lost = [i for i in before if i not in after]
    beyond = [i for i in promised if i not in after]
    exited = [] if up.process.poll() is None else [f"triarb up (status {up.process.returncode})"]
    row = Row(name, recovery_s, len(lost) - len(beyond), len(beyond), up.archived_duplicates(), exited)
    ROWS.append(row)
    assert up.redis_pid() != old_pid
    return row


def test_kill_9_of_the_embedded_redis_server(up: UpProcess) -> None:
    row = fault(up, "`triarb up --demo`: kill -9 of its redis-server", "kill9")
    assert row.lost_beyond_promise == 0 and row.duplicates_on_disk == 0 and row.exited == []


def test_graceful_shutdown_of_the_embedded_redis_server(up: UpProcess) -> None:
    row = fault(up, "`triarb up --demo`: SHUTDOWN of its redis-server", "shutdown")
    assert row.lost_beyond_promise == 0 and row.redis_lost == 0 and row.duplicates_on_disk == 0 and row.exited == []
