"""The stack as separate processes against a real private redis-server, and the bookkeeping of faults.

The harness plays the part of an orchestrator (compose's ``restart: always``): it restarts what a fault
killed. An observer thread follows ``md.snapshot`` with plain XREAD and records every id it ever saw, so
after a fault the suite can tell what Redis itself lost (seen before, gone after) from what a component
lost (still in Redis, missing in the archive).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import redis

from common.config import Role, Settings
from common.redis import EmbeddedRedis, connect_sync
from tests.processes import wait_until

REPO = Path(__file__).resolve().parents[2]
SNAPSHOTS = "md.snapshot"
BUS_ENV = {"TRIARB_BUS__CLAIM_IDLE_MS": "2000", "TRIARB_BUS__CLAIM_INTERVAL_MS": "500"}
"""Faster reclaim than the 30 s default, so a killed detector's entries move within the suite's patience."""


def id_ms(entry_id: str) -> int:
    return int(entry_id.partition("-")[0])


def id_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


@dataclass
class Row:
    """One line of the chaos table."""

    fault: str
    recovery_s: float
    redis_lost: int
    lost_beyond_promise: int
    duplicates_on_disk: int
    exited: list[str] = field(default_factory=list)
    gaps: dict[str, str] = field(default_factory=dict)
    """Ids in Redis but missing from the archive → why (the dead-letter reason, or "not dead-lettered")."""

    def cells(self) -> list[str]:
        return [self.fault, f"{self.recovery_s:.1f}", str(self.redis_lost), str(self.lost_beyond_promise),
                str(self.duplicates_on_disk), ", ".join(self.exited) or "none"]


HEADER = ["fault", "recovery (s)", "lost by Redis, within its promise", "lost beyond the promise",
          "duplicates on disk", "processes that exited"]


def markdown_table(rows: list[Row]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(row.cells()) + " |" for row in rows]
    return "\n".join(lines)


class Observer(threading.Thread):
    """Follows ``md.snapshot`` from the start with XREAD, through outages, recording every id seen."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(daemon=True, name="chaos-observer")
        self._settings = settings
        self.seen: dict[str, float] = {}
        self._position = "0-0"
        self._halt = threading.Event()
        self.lock = threading.Lock()

    def run(self) -> None:
        client: redis.Redis | None = None
        while not self._halt.is_set():
            try:
                if client is None:
                    client = connect_sync(self._settings, Role.DASHBOARD)
                reply = client.xread({SNAPSHOTS: self._position}, count=1000, block=200)
                now = time.monotonic()
                with self.lock:
                    for _stream, entries in reply or ():
                        for entry_id, _fields in entries:
                            self.seen[entry_id.decode()] = now
                            self._position = entry_id.decode()
            except (redis.RedisError, OSError):
                if client is not None:
                    with contextlib.suppress(Exception):
                        client.close()
                client = None
                time.sleep(0.1)

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)

    def ids(self) -> set[str]:
        with self.lock:
            return set(self.seen)

    def count(self) -> int:
        with self.lock:
            return len(self.seen)

    def newest_ms(self) -> int:
        with self.lock:
            return max((id_ms(i) for i in self.seen), default=0)


class ChaosStack:
    """Two demo venues, two producers, a detector, persistence and the dashboard, each its own process."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.archive = workdir / "archive"
        self.redis = EmbeddedRedis(Settings(var_dir=workdir / "redis-var"), port=0, write_runtime_file=False)
        endpoint = self.redis.start()
        self.settings = Settings(redis_url=endpoint.url(), redis_passwords=dict(endpoint.passwords),
                                 var_dir=workdir / "var")
        self.processes: dict[str, subprocess.Popen[str]] = {}
        self.killed_on_purpose: set[int] = set()
        self.observer = Observer(self.settings)
        self.observer.start()

    # --- processes ----------------------------------------------------------------------------------

    def env(self, role: Role | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRIARB_") and k != "REDIS_URL"}
        endpoint = self.redis.endpoint
        env |= BUS_ENV | {
            "REDIS_URL": endpoint.url(), "TRIARB_VAR_DIR": str(self.workdir / "var"), "TRIARB_SERVICE_PORT": "0",
            "TRIARB_DASHBOARD_PORT": "0", "TRIARB_LOG_FORMAT": "json", "PYTHONPATH": str(REPO),
        }
        env |= {f"TRIARB_PRODUCERS__{venue.upper()}__REST_FALLBACK": "false" for venue in ("coinbase", "kraken")}
        if role is not None:  # each process gets its own role's password only, as compose would
            env[f"TRIARB_REDIS_PASSWORDS__{role.value.upper()}"] = endpoint.passwords[role]
        return env

    def spawn(self, name: str, args: list[str], role: Role | None) -> str:
        """Start ``triarb ARGS`` as ``name``; returns its first line of output (the banner)."""
        log = (self.workdir / f"{name}.log").open("a")
        process = subprocess.Popen([sys.executable, "-m", "triarb.cli", *args], env=self.env(role), cwd=self.workdir,
                                   stdout=subprocess.PIPE, stderr=log, text=True)
        assert process.stdout is not None
        banner = process.stdout.readline()
        self.processes[name] = process
        threading.Thread(target=_drain, args=(process,), daemon=True).start()
        return banner

    def start(self) -> None:
        for venue in ("coinbase", "kraken"):
            banner = self.spawn(f"venue-{venue}", ["demo-venue", venue], None)
            url = banner.split()[3]
            served = banner.split(" serving ")[1].split(" (")[0].split(", ")  # the books its replay holds
            self.spawn(f"producer-{venue}", ["producer", venue, "--venue-url", url, "--symbols", *served],
                       Role.PRODUCER)
        self.spawn("detector", ["detector"], Role.DETECTOR)
        self.spawn("paper", ["paper"], Role.PAPER)
        self.spawn("persistence", ["persist", "--dir", str(self.archive)], Role.PERSISTENCE)
        self.spawn("dashboard", ["dashboard"], Role.DASHBOARD)
        assert wait_until(lambda: self.observer.count() > 50, timeout_s=30), "no snapshots from the stack"

    def kill(self, name: str, sig: signal.Signals = signal.SIGKILL) -> None:
        process = self.processes[name]
        self.killed_on_purpose.add(process.pid)
        process.send_signal(sig)
        if sig in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT):
            process.wait(timeout=30)

    def exited(self) -> list[str]:
        """Processes that ended without the suite asking them to."""
        return sorted(f"{name} (status {p.returncode})" for name, p in self.processes.items()
                      if p.poll() is not None and p.pid not in self.killed_on_purpose)

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
        self.observer.stop()
        self.redis.stop()

    # --- Redis faults -------------------------------------------------------------------------------

    def redis_down(self, how: str) -> float:
        """``kill9`` or ``shutdown``; returns the moment (epoch ms) of the fault."""
        fault_ms = time.time() * 1000
        if how == "kill9":
            assert self.redis.pid is not None
            os.kill(self.redis.pid, signal.SIGKILL)
        else:
            with connect_sync(self.settings, Role.ADMIN) as admin, contextlib.suppress(redis.ConnectionError):
                admin.shutdown()
        assert wait_until(lambda: self.redis.poll() is not None, timeout_s=10)
        return fault_ms

    def redis_up(self) -> None:
        self.redis.respawn()
        self.redis.wait_ready(30)

    def wait_flowing(self, after_ms: float, timeout_s: float = 60) -> float:
        """Seconds until the observer sees a snapshot made after ``after_ms`` (epoch ms)."""
        started = time.monotonic()
        assert wait_until(lambda: self.observer.newest_ms() > after_ms, timeout_s=timeout_s), "snapshots stopped"
        return time.monotonic() - started

    # --- accounting ---------------------------------------------------------------------------------

    def admin(self) -> redis.Redis:
        return connect_sync(self.settings, Role.ADMIN)

    def stream_ids(self) -> list[str]:
        with self.admin() as admin:
            return [entry_id.decode() for entry_id, _ in admin.xrange(SNAPSHOTS)]

    def archived_ids(self) -> list[str]:
        ids: list[str] = []
        for path in sorted((self.archive / SNAPSHOTS).glob("*.ndjson")):
            complete, _, _being_written = path.read_bytes().rpartition(b"\n")  # the writer may be mid-line
            for line in complete.splitlines():
                if line.strip():
                    ids.append(orjson.loads(line)["_id"])
        return ids

    def wait_archived(self, timeout_s: float = 60) -> bool:
        """Until the archive holds every id Redis has up to now (persistence caught up)."""
        target = self.stream_ids()
        newest = max(target, key=id_key) if target else "0-0"

        def caught_up() -> bool:
            archived = self.archived_ids()
            return bool(archived) and id_key(archived[-1]) >= id_key(newest)

        return wait_until(caught_up, timeout_s=timeout_s)

    def account(self, fault: str, recovery_s: float, promise_ms: float | None) -> Row:
        """Compare what the observer saw, what Redis holds and what is archived.

        ``promise_ms``: Redis may lose entries created after this moment (kill -9: the last second); None
        means it promised everything (graceful shutdown, worker faults).
        """
        assert self.wait_archived(), "persistence did not catch up"
        archived = self.archived_ids()  # read first: entries added later are not yet due on disk
        in_redis = set(self.stream_ids())
        oldest = min(in_redis, key=id_key) if in_redis else "0-0"
        seen = {i for i in self.observer.ids() if id_key(i) >= id_key(oldest)}  # older ones were trimmed
        redis_lost = seen - in_redis
        beyond = {i for i in redis_lost if promise_ms is None or id_ms(i) < promise_ms}
        counts = Counter(archived)
        duplicates = sum(n - 1 for n in counts.values() if n > 1)
        first, last = (id_key(min(counts, key=id_key)), id_key(max(counts, key=id_key))) if counts else ((0, 0),) * 2
        # a gap in the archive: in Redis, inside the archived range, not on disk
        missing_on_disk = {i for i in in_redis if first <= id_key(i) <= last} - set(counts)
        return Row(fault, recovery_s, len(redis_lost - beyond), len(beyond) + len(missing_on_disk), duplicates,
                   self.exited(), self.explain(sorted(missing_on_disk, key=id_key)[:20]))

    def explain(self, missing: list[str]) -> dict[str, str]:
        """For a failing row: why each id missing from the archive is missing, as far as Redis can tell."""
        if not missing:
            return {}
        with self.admin() as admin:
            letters = admin.xrange(self.settings.names.deadletter)
        reasons = {fields[b"id"].decode(): f"{fields[b'rejected_by'].decode()}: {fields[b'reason'].decode()}"
                   for _id, fields in letters if fields.get(b"stream") == SNAPSHOTS.encode()}
        return {entry_id: reasons.get(entry_id, "not dead-lettered") for entry_id in missing}


def _drain(process: subprocess.Popen[str]) -> None:
    """Keep reading a child's stdout so it never blocks on a full pipe."""
    assert process.stdout is not None
    for _line in process.stdout:
        pass


def wait_for(condition: Callable[[], bool], timeout_s: float) -> float:
    """Seconds until ``condition`` held (fails the test after ``timeout_s``)."""
    started = time.monotonic()
    assert wait_until(condition, timeout_s=timeout_s)
    return time.monotonic() - started
