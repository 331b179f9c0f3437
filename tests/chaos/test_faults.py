"""Faults injected into the running stack (separate processes, a real redis-server); after each one the
stack must recover by itself, lose nothing beyond what Redis promises, write no duplicate and keep every
process running. Each test adds a row to the chaos table. ``make test`` runs the fast ones; ``make chaos``
all of them (``slow``: long outages and stalls).

Redis's promise (``appendfsync everysec``): a graceful SHUTDOWN loses nothing; a ``kill -9`` may lose
what was written in the last second before it.
"""

from __future__ import annotations

import signal
import time
from collections import Counter
from collections.abc import Iterator

import orjson
import pytest

from common.config import Role
from tests.chaos.conftest import ROWS
from tests.chaos.harness import SNAPSHOTS, ChaosStack, Row, id_key, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.chaos]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, redis_server: object) -> Iterator[ChaosStack]:
    running = ChaosStack(tmp_path_factory.mktemp("chaos"))
    try:
        running.start()
        running.spawn("detector-2", ["detector"], Role.DETECTOR)  # a second worker to take over a dead one's
        running.spawn("paper-2", ["paper"], Role.PAPER)
        yield running
    finally:
        running.stop()


def record(row: Row) -> Row:
    ROWS.append(row)
    return row


def assert_clean(row: Row) -> None:
    assert row.lost_beyond_promise == 0, row
    assert row.duplicates_on_disk == 0, row
    assert row.exited == [], row


def redis_fault(stack: ChaosStack, name: str, how: str, outage_s: float) -> Row:
    """Recovery: from the fault until a snapshot made after the restart is seen, less the outage itself."""
    started = time.monotonic()
    fault_ms = stack.redis_down(how)
    time.sleep(outage_s)
    stack.redis_up()
    stack.wait_flowing(time.time() * 1000)
    recovery_s = time.monotonic() - started - outage_s
    promise_ms = fault_ms - 1000 if how == "kill9" else None
    return record(stack.account(name, recovery_s, promise_ms))


def test_redis_kill_9(stack: ChaosStack) -> None:
    row = redis_fault(stack, "kill -9 redis-server", "kill9", 0.0)
    assert_clean(row)


def test_persistence_kill_9_mid_batch(stack: ChaosStack) -> None:
    stack.kill("persistence")
    killed = time.monotonic()
    stack.spawn("persistence", ["persist", "--dir", str(stack.archive)], Role.PERSISTENCE)
    assert stack.wait_archived()
    row = record(stack.account("kill -9 persistence worker mid-batch", time.monotonic() - killed, None))
    assert_clean(row)


def test_persistence_restarted_on_a_torn_last_line(stack: ChaosStack) -> None:
    """A crash mid-write (power loss) leaves the archive's newest line without its end: the restarted worker
    cuts it, reads on from the last complete id on disk and writes that entry again, once."""
    stack.kill("persistence")
    killed = time.monotonic()
    newest = sorted((stack.archive / SNAPSHOTS).glob("*.ndjson"))[-1]
    newest.write_bytes(newest.read_bytes()[:-25])
    stack.spawn("persistence", ["persist", "--dir", str(stack.archive)], Role.PERSISTENCE)
    wait_for(lambda: newest.read_bytes().endswith(b"\n"), timeout_s=30)  # cut and appended to again
    assert stack.wait_archived()
    row = record(stack.account("torn last line on disk, persistence restarted", time.monotonic() - killed, None))
    assert_clean(row)


def test_detector_kill_9_mid_batch(stack: ChaosStack) -> None:
    dead = stack.processes["detector"].pid
    stack.kill("detector")
    killed = time.monotonic()
    wait_for(lambda: pending_of_dead_detectors(stack, dead) == 0, timeout_s=60)
    row = record(stack.account("kill -9 detector worker mid-batch", time.monotonic() - killed, None))
    assert_clean(row)


def test_paper_broker_kill_9_mid_batch(stack: ChaosStack) -> None:
    """The killed worker's opportunities are filled by the other one, and so are later ones: every opportunity
    gets exactly one fill."""
    wait_for(lambda: bool(opportunities_and_fills(stack)[0]), timeout_s=90)  # the first planted mispricing
    dead = stack.processes["paper"].pid
    stack.kill("paper")
    killed_ms = time.time() * 1000
    killed = time.monotonic()
    wait_for(lambda: pending_of_dead(stack, "strategy.opportunity", "paper", dead) == 0, timeout_s=60)
    row = record(stack.account("kill -9 paper broker mid-batch", time.monotonic() - killed, None))
    assert_clean(row)

    def filled_after_the_kill() -> bool:
        due, filled = opportunities_and_fills(stack)
        return any(ms > killed_ms and filled[sim] for ms, sim in due)

    wait_for(filled_after_the_kill, timeout_s=90)  # the next planted mispricing, filled by the survivor
    due, filled = opportunities_and_fills(stack)
    settled = [sim for ms, sim in due if ms < time.time() * 1000 - 5_000]  # older ones have had time to fill
    assert all(filled[sim] == 1 for sim in settled), {sim: filled[sim] for sim in settled if filled[sim] != 1}


def opportunities_and_fills(stack: ChaosStack) -> tuple[list[tuple[int, bytes]], Counter[bytes]]:
    """(stream time, sim_id) of every opportunity, and how many fills each sim_id has."""
    with stack.admin() as admin:
        due = [(id_key(i.decode())[0], f[b"sim_id"]) for i, f in admin.xrange("strategy.opportunity")]
        filled = Counter(orjson.loads(f[b"trace"])["sim_id"].encode() for _, f in admin.xrange("strategy.fill"))
    return due, filled


@pytest.mark.slow
def test_redis_graceful_shutdown(stack: ChaosStack) -> None:
    assert_clean(redis_fault(stack, "graceful SHUTDOWN of redis-server", "shutdown", 0.0))


@pytest.mark.slow
def test_redis_outage_3s(stack: ChaosStack) -> None:
    assert_clean(redis_fault(stack, "redis-server down 3 s (kill -9)", "kill9", 3.0))


@pytest.mark.slow
def test_redis_outage_30s(stack: ChaosStack) -> None:
    assert_clean(redis_fault(stack, "redis-server down 30 s (kill -9)", "kill9", 30.0))


@pytest.mark.slow
def test_persistence_stalled_60s(stack: ChaosStack) -> None:
    stack.kill("persistence", signal.SIGSTOP)
    time.sleep(60)
    stack.processes["persistence"].send_signal(signal.SIGCONT)
    resumed = time.monotonic()
    assert stack.wait_archived(timeout_s=120)
    row = record(stack.account("SIGSTOP persistence worker 60 s", time.monotonic() - resumed, None))
    stack.killed_on_purpose.discard(stack.processes["persistence"].pid)  # it must still be running
    assert_clean(row)


def pending_of_dead_detectors(stack: ChaosStack, pid: int) -> int:
    return pending_of_dead(stack, "md.snapshot", "detector", pid)


def pending_of_dead(stack: ChaosStack, stream: str, group: str, pid: int) -> int:
    with stack.admin() as admin:
        consumers = admin.xinfo_consumers(stream, group)
    return sum(int(c["pending"]) for c in consumers if f"-{pid}-" in str(c["name"]))


def test_archive_is_complete_and_in_order(stack: ChaosStack) -> None:
    """After every fault above: the archive is the stream (minus what Redis lost), each id once, in order."""
    assert stack.wait_archived()
    archived = stack.archived_ids()
    assert archived == sorted(archived, key=id_key)
    assert len(archived) == len(set(archived))


def test_every_process_is_still_running(stack: ChaosStack) -> None:
    assert stack.exited() == []
