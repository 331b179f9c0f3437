"""End to end: ``Publisher`` → md.snapshot → ``triarb detector`` processes → strategy.opportunity, on one
private redis-server, with the baselines measured in the same run.

* live: snapshots of five Kraken books (BTC-USD, ETH-BTC, ETH-USD, SOL-USD, SOL-BTC; fee 0.4 %) published
  at controlled rates through the real ``Publisher`` (this process is the producer) to one ``triarb detector``
  process. Every ``PERIOD_MS`` the whole ETH-BTC book moves down 3 % for ``WINDOW_MS`` (a planted dislocation:
  USD→BTC→ETH→USD clears 3 × 0.4 % fees; found = (window, cycle) pairs reported). Each snapshot's
  ``ts_event`` and ``ts_ingest`` are its publish time (ms), so an opportunity's latency is ``ts_publish``
  minus its newest leg's ``ts_event`` (what the detector's own latency histogram records); the window
  latency is the first opportunity of a window minus the first dislocated snapshot's publish time. Group
  lag and pending are sampled every 20 ms.
* drain: a backlog pre-published, then drained by a plain redis-py ``XREADGROUP`` + ``XACK`` loop reading as
  many entries per call as a detector does (``detector.read_count``; no decode: the ceiling), by one and by
  two ``triarb detector --from 0 --burst`` processes, in rounds (median). Worker rates are taken from the
  group's counters (XINFO) once every process has joined, so interpreter start-up is left out.

CPU per process and for the rest of the machine is printed with each figure: on a shared 2-core machine
another job's load shows up there, and the run is flagged.

Latencies have the millisecond resolution of the schemas' timestamps. Usage: ``python scripts/bench_e2e.py
[--quick] [--rates 2000,5000] [--seconds S] [--backlog N] [--repeats R] [--profile] [--only live|drain]``
(``make bench-e2e``); the last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvloop
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from common.bus import Publisher
from common.config import DetectorSettings, ProducerSettings, Role, Settings, StreamLimits
from common.redis import EmbeddedRedis, RedisEndpoint, connect
from consumers.detector.graph import Market
from consumers.detector.service import GROUP, build_detectors
from schemas import Opportunity, Snapshot, Subject
from schemas.codec import decode_as

REPO = Path(__file__).resolve().parents[1]
VENUE = "kraken"
FEE = 0.004
QUOTES = {"BTC-USD": (59_990.0, 60_000.0), "ETH-BTC": (0.04995, 0.05), "ETH-USD": (2_999.0, 3_000.0),
          "SOL-USD": (149.9, 150.0), "SOL-BTC": (0.0024995, 0.0025)}
SYMBOLS = tuple(QUOTES)
DISLOCATED, SHIFT = "ETH-BTC", 0.97  # the whole book moves: a crossed book would be refused as impossible
WINDOW_MS, PERIOD_MS = 20, 250
SAMPLE_S = 0.02
BUSY_MACHINE_CORES = 0.3
"""CPU used by other processes (and the kernel) above which the run is flagged as disturbed."""


def book(symbol: str, bid: float, ask: float) -> Snapshot:
    """Two levels a side, as tests/integration/test_detector_service.py builds them; times set per publish."""
    return Snapshot(exchange=VENUE, symbol=symbol, ts_event=0, ts_ingest=0,
                    bids=[(bid, 5.0, 5.0), (bid * 0.999, 5.0, 10.0)], asks=[(ask, 5.0, 5.0), (ask * 1.001, 5.0, 10.0)])


NORMAL = {s: book(s, bid, ask) for s, (bid, ask) in QUOTES.items()}
SHIFTED = book(DISLOCATED, QUOTES[DISLOCATED][0] * SHIFT, QUOTES[DISLOCATED][1] * SHIFT)


def planted_cycles() -> set[str]:
    """The cycles the dislocation makes profitable, from the detector's pure core (no Redis)."""
    markets = {VENUE: [Market(VENUE, s, s.split("-")[0], s.split("-")[1], 1e-8, 0.0, FEE) for s in SYMBOLS]}
    now = time.time_ns() // 1_000_000
    books = {s: b.model_copy(update={"ts_event": now, "ts_ingest": now}) for s, b in NORMAL.items()}
    books[DISLOCATED] = SHIFTED.model_copy(update={"ts_event": now, "ts_ingest": now})
    found = build_detectors(markets, DetectorSettings())[VENUE].evaluate(SYMBOLS, books, now)
    return {o.cycle_id for o in found}


@dataclass
class Session:
    """Snapshot n of a session at ``rate``/s: books round-robin, ETH-BTC shifted in the planted windows (placed
    by schedule, so every rate plants the same windows whatever the pacing jitter)."""

    rate: float
    seq: int = 0
    windows: dict[int, list[int]] = field(default_factory=dict)
    """Window number → [publish ms of its first, of its last dislocated snapshot]."""

    def snapshot(self, n: int) -> Snapshot:
        symbol = SYMBOLS[n % len(SYMBOLS)]
        scheduled_ms = n / self.rate * 1000 - PERIOD_MS / 2
        window = int(scheduled_ms // PERIOD_MS) if scheduled_ms >= 0 else None
        shifted = symbol == DISLOCATED and window is not None and scheduled_ms % PERIOD_MS < WINDOW_MS
        now_ms = time.time_ns() // 1_000_000
        self.seq += 1
        if shifted:
            assert window is not None
            self.windows.setdefault(window, [now_ms, now_ms])[1] = now_ms
        template = SHIFTED if shifted else NORMAL[symbol]
        return template.model_copy(update={"ts_event": now_ms, "ts_ingest": now_ms, "book_seq": self.seq})


async def publish_paced(publisher: Publisher, session: Session, total: int) -> float:
    """Publish ``total`` snapshots at ``session.rate``/s (catching up after a late wake-up); achieved rate."""
    started = time.perf_counter()
    sent = 0
    while sent < total:
        due = min(total, int((time.perf_counter() - started) * session.rate) + 1)
        while sent < due:
            await publisher.publish(session.snapshot(sent))
            sent += 1
        ahead = sent / session.rate - (time.perf_counter() - started)
        await asyncio.sleep(max(ahead, 0.001) if ahead > 0 else 0)  # never spin: the CPU is shared
    await publisher.flush()
    return total / (time.perf_counter() - started)


# --- the detector processes and what Redis says about their group -------------------------------------

def detector_env(endpoint: RedisEndpoint, work_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIARB_") and k != "REDIS_URL"}
    defaults = ProducerSettings()
    return env | {
        "REDIS_URL": endpoint.url(), "TRIARB_REDIS_PASSWORDS__DETECTOR": endpoint.passwords[Role.DETECTOR],
        "TRIARB_VAR_DIR": str(work_dir / "var"), "TRIARB_SERVICE_PORT": "0", "TRIARB_LOG_FORMAT": "json",
        "TRIARB_LOG_LEVEL": "WARNING", "TRIARB_PRODUCERS__KRAKEN__SYMBOLS": json.dumps(SYMBOLS),
        "TRIARB_PRODUCERS__COINBASE__SYMBOLS": "[]", "PYTHONPATH": str(REPO),
        # nested settings replace the whole venue object: its url (unused by the detector) must come along
        "TRIARB_PRODUCERS__KRAKEN__URL": defaults.kraken.url, "TRIARB_PRODUCERS__COINBASE__URL": defaults.coinbase.url,
    }


DETECTOR = ("-m", "triarb.cli")


def start_detector(endpoint: RedisEndpoint, work_dir: Path, name: str, args: Sequence[str],
                   prefix: Sequence[str] = ()) -> subprocess.Popen[bytes]:
    with (work_dir / f"{name}.log").open("ab") as log:
        return subprocess.Popen([sys.executable, *prefix, *DETECTOR, "detector", *args], cwd=work_dir,
                                env=detector_env(endpoint, work_dir), stdout=log, stderr=subprocess.STDOUT)


def check_exit(process: subprocess.Popen[bytes], work_dir: Path, name: str) -> None:
    if process.returncode:
        tail = (work_dir / f"{name}.log").read_text(errors="replace").splitlines()[-15:]
        sys.exit(f"{name} exited with status {process.returncode}:\n  " + "\n  ".join(tail))


@dataclass(frozen=True)
class GroupState:
    consumers: int
    pending: int
    lag: int
    acked: int


async def group_state(admin: Redis, stream: str, group: str = GROUP) -> GroupState | None:
    try:
        groups = await admin.xinfo_groups(stream)
    except ResponseError:  # no stream yet
        return None
    for info in groups:
        if info["name"] in (group, group.encode()):
            read, pending = int(info["entries-read"] or 0), int(info["pending"])
            lag = info["lag"] if info["lag"] is not None else await admin.xlen(stream) - read
            return GroupState(int(info["consumers"]), pending, int(lag), read - pending)
    return None


def cpu_s(pid: int, *, children: bool = False) -> float:
    """User + system CPU seconds of ``pid`` so far (Linux /proc); with ``children``, plus those of its exited
    children (redis-server forks to rewrite its AOF: part of its cost)."""
    fields = [int(v) for v in Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[11:15]]
    return sum(fields if children else fields[:2]) / os.sysconf("SC_CLK_TCK")


def runqueue_wait_s(pid: int) -> float:
    """Seconds ``pid``'s main thread was runnable but waiting for a CPU (/proc/PID/schedstat): how much the
    processes on this machine slow each other down, beyond the CPU time they use."""
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[1]) / 1e9


def machine_cpu_s() -> float:
    """CPU seconds every process and the kernel have used so far, all CPUs together (/proc/stat)."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = Path("/proc/stat").read_text().split()[1:9]
    return sum(int(v) for v in (user, nice, system, irq, softirq, steal)) / os.sysconf("SC_CLK_TCK")


def percentile(values: Sequence[float], q: float) -> float | None:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)] if ordered else None


# --- live ---------------------------------------------------------------------------------------------

async def live_rate(settings: Settings, endpoint: RedisEndpoint, admin: Redis, detector_pid: int, rate: int,
                    seconds: float, cycles: set[str]) -> dict[str, Any]:
    stream = settings.names.stream(Subject.SNAPSHOT)
    session = Session(rate)
    start_ms = time.time_ns() // 1_000_000
    max_lag = max_pending = 0
    publishing = True

    async def sample() -> None:
        nonlocal max_lag, max_pending
        while publishing:
            state = await group_state(admin, stream)
            if state is not None:
                max_lag, max_pending = max(max_lag, state.lag), max(max_pending, state.pending)
            await asyncio.sleep(SAMPLE_S)

    producer = connect(settings, Role.PRODUCER, endpoint=endpoint)
    pids = {"detector": detector_pid, "redis": endpoint.pid or 0, "producer": os.getpid()}
    cpu_before = {role: cpu_s(pid, children=role == "redis") for role, pid in pids.items()}
    machine_before = machine_cpu_s()
    started = time.perf_counter()
    try:
        async with Publisher(producer, settings.names, settings.streams, settings.bus) as publisher:
            sampler = asyncio.create_task(sample())
            achieved = await publish_paced(publisher, session, int(rate * seconds))
            publishing = False
            await sampler
    finally:
        await producer.aclose()
    published_at = time.perf_counter()
    while (state := await group_state(admin, stream)) is None or state.lag or state.pending:
        if time.perf_counter() - published_at > 60:
            sys.exit(f"the detector did not catch up within 60 s at {rate}/s: {state}")
        await asyncio.sleep(0.005)
    catchup_ms = (time.perf_counter() - published_at) * 1000
    elapsed = time.perf_counter() - started
    used = {role: cpu_s(pid, children=role == "redis") - cpu_before[role] for role, pid in pids.items()}
    used["others"] = machine_cpu_s() - machine_before - sum(used.values())
    cores = {role: round(max(0.0, seconds_used) / elapsed, 2) for role, seconds_used in used.items()}

    entries: Any = await admin.xrange(settings.names.stream(Subject.OPPORTUNITY), min=f"{start_ms}-0")
    opportunities = [decode_as(Opportunity, fields) for _, fields in entries]
    return {"achieved_per_s": round(achieved), **score(opportunities, session, cycles), "max_lag": max_lag,
            "max_pending": max_pending, "catchup_ms": round(catchup_ms, 1), "cores": cores}


def score(opportunities: Sequence[Opportunity], session: Session, cycles: set[str]) -> dict[str, Any]:
    """Latencies, and which planted (window, cycle) pairs were reported; an opportunity is placed in a window
    by its ETH-BTC leg's ``ts_event`` (only a dislocated book makes one)."""
    latencies = [o.ts_publish - max(leg.ts_event for leg in o.legs) for o in opportunities]
    spans = sorted((first, last, n) for n, (first, last) in session.windows.items())
    first_seen: dict[int, int] = {}
    pairs: set[tuple[int, str]] = set()
    unplanted = 0
    other_cycles = sum(1 for o in opportunities if o.cycle_id not in cycles)
    for o in opportunities:
        shifted_ms = next(leg.ts_event for leg in o.legs if leg.symbol == DISLOCATED)
        window = next((n for first, last, n in spans if first <= shifted_ms <= last), None)
        if window is None:
            unplanted += 1
            continue
        pairs.add((window, o.cycle_id))
        first_seen[window] = min(first_seen.get(window, o.ts_publish), o.ts_publish)
    window_latencies = [first_seen[n] - session.windows[n][0] for n in first_seen]
    return {
        "p50_ms": percentile(latencies, 0.5), "p99_ms": percentile(latencies, 0.99),
        "max_ms": max(latencies, default=None), "found": len(pairs & {(n, c) for n in session.windows for c in cycles}),
        "planted": len(session.windows) * len(cycles), "windows_found": len(first_seen),
        "windows_planted": len(session.windows), "unplanted": unplanted, "other_cycles": other_cycles,
        "opportunities": len(opportunities),
        "window_p50_ms": percentile(window_latencies, 0.5), "window_max_ms": max(window_latencies, default=None),
    }


async def live(settings: Settings, endpoint: RedisEndpoint, work_dir: Path, rates: Sequence[int],
               seconds: float) -> dict[str, dict[str, Any]]:
    admin = connect(settings, Role.ADMIN, endpoint=endpoint)
    process = start_detector(endpoint, work_dir, "detector-live", [])
    try:
        stream = settings.names.stream(Subject.SNAPSHOT)
        deadline = time.perf_counter() + 30
        while (state := await group_state(admin, stream)) is None or state.consumers < 1:
            if process.poll() is not None or time.perf_counter() > deadline:
                check_exit(process, work_dir, "detector-live")
                sys.exit("the detector did not join group 'detector' within 30 s")
            await asyncio.sleep(0.05)
        cycles = planted_cycles()
        results = {}
        for rate in rates:
            results[str(rate)] = await live_rate(settings, endpoint, admin, process.pid, rate, seconds, cycles)
            await asyncio.sleep(0.5)
        return results
    finally:
        process.terminate()
        process.wait(timeout=30)
        await admin.aclose()


# --- drain --------------------------------------------------------------------------------------------

async def plain_drain_rate(admin: Redis, stream: str, entries: int, count: int) -> float:
    await admin.xgroup_create(stream, "plain", id="0")
    started = time.perf_counter()
    done = 0
    while done < entries:
        reply: Any = await admin.xreadgroup("plain", "c1", {stream: ">"}, count=count)
        ids = [entry_id for _, messages in reply for entry_id, _ in messages]
        await admin.xack(stream, "plain", *ids)
        done += len(ids)
    rate = entries / (time.perf_counter() - started)
    await admin.xgroup_destroy(stream, "plain")
    return rate


@dataclass(frozen=True)
class DrainRun:
    per_s: float
    share: float
    """Part of the backlog acknowledged while every process had joined (the rest: before the last joined)."""
    cores: dict[str, float]
    """CPU used over that interval, in cores: the detector processes together, redis-server (with its AOF
    rewrites), this process (the poller) and everything else on the machine; and, as ``*_waiting``, the
    time the detectors (together) and redis-server spent runnable but without a CPU, in the same unit."""


async def worker_drain(admin: Redis, endpoint: RedisEndpoint, work_dir: Path, stream: str, entries: int,
                       workers: int) -> DrainRun:
    """Entries/s acknowledged by ``workers`` burst processes between the moment all have joined the group and
    the moment the backlog is acknowledged."""
    await admin.xgroup_create(stream, GROUP, id="0")
    names = [f"detector-drain{workers}-{n}" for n in range(workers)]
    processes = [start_detector(endpoint, work_dir, name, ["--from", "0", "--burst"])
                 for name in names]

    def cpu() -> dict[str, float]:  # an exited process is a zombie until waited for: its /proc entry remains
        used = {"detectors": sum(cpu_s(p.pid) for p in processes), "redis": cpu_s(endpoint.pid or 0, children=True),
                "bench": cpu_s(os.getpid())}
        return used | {"others": machine_cpu_s() - sum(used.values()),
                       "detectors_waiting": sum(runqueue_wait_s(p.pid) for p in processes),
                       "redis_waiting": runqueue_wait_s(endpoint.pid or 0)}

    joined: tuple[float, int, dict[str, float]] | None = None
    done: tuple[float, int, dict[str, float]] | None = None
    try:
        while done is None:
            now = time.perf_counter()
            state = await group_state(admin, stream)
            if state is not None and joined is None and state.consumers >= workers:
                joined = (now, state.acked, cpu())
            if state is not None and joined is not None and state.acked >= entries:
                done = (now, state.acked, cpu())
            if all(p.poll() is not None for p in processes) and done is None:
                for process, name in zip(processes, names, strict=True):
                    check_exit(process, work_dir, name)
                sys.exit(f"{workers} detector process(es) exited with {state} of {entries} entries acknowledged")
            await asyncio.sleep(SAMPLE_S / 2)
        for process, name in zip(processes, names, strict=True):
            process.wait(timeout=60)
            check_exit(process, work_dir, name)
    finally:  # never leave a worker behind (it would wait forever for the server this script stops)
        for process in processes:
            if process.poll() is None:
                process.terminate()
                process.wait(timeout=30)
    await admin.xgroup_destroy(stream, GROUP)
    assert joined is not None
    elapsed = done[0] - joined[0]
    return DrainRun((done[1] - joined[1]) / elapsed, (done[1] - joined[1]) / entries,
                    {role: round(max(0.0, done[2][role] - joined[2][role]) / elapsed, 2) for role in done[2]})


def median_run(runs: list[DrainRun]) -> DrainRun:
    return sorted(runs, key=lambda run: run.per_s)[len(runs) // 2]


async def drain(settings: Settings, endpoint: RedisEndpoint, work_dir: Path, entries: int,
                repeats: int) -> dict[str, Any]:
    """Median of ``repeats`` rounds, each round the plain loop, one process and two processes in turn (so
    each figure of a ratio saw the machine in the same state)."""
    admin = connect(settings, Role.ADMIN, endpoint=endpoint)
    stream = settings.names.stream(Subject.SNAPSHOT)
    producer = connect(settings, Role.PRODUCER, endpoint=endpoint)
    try:
        await admin.delete(stream)
        session = Session(20_000)
        async with Publisher(producer, settings.names, settings.streams, settings.bus) as publisher:
            started = time.perf_counter()
            for n in range(entries):
                await publisher.publish(session.snapshot(n))
            await publisher.flush()
            publish_rate = entries / (time.perf_counter() - started)
        assert await admin.xlen(stream) == entries, "the backlog was trimmed: raise streams.snapshot"
        baselines, ones, twos = [], [], []
        for _ in range(repeats):
            baselines.append(await plain_drain_rate(admin, stream, entries, settings.detector.read_count))
            ones.append(await worker_drain(admin, endpoint, work_dir, stream, entries, 1))
            twos.append(await worker_drain(admin, endpoint, work_dir, stream, entries, 2))
        baseline, one, two = statistics.median(baselines), median_run(ones), median_run(twos)
    finally:
        await producer.aclose()
        await admin.aclose()
    return {"entries": entries, "repeats": repeats, "publish_per_s": round(publish_rate),
            "baseline_per_s": round(baseline),
            "one_worker_per_s": round(one.per_s), "two_workers_per_s": round(two.per_s),
            "ratio_one": round(one.per_s / baseline, 3), "ratio_two_vs_one": round(two.per_s / one.per_s, 3),
            "measured_share": {"one": round(one.share, 3), "two": round(two.share, 3)},
            "cores": {"one": one.cores, "two": two.cores}}


async def profile_drain(settings: Settings, endpoint: RedisEndpoint, work_dir: Path, top: int) -> None:
    """The same backlog drained once more by one process under cProfile; prints the costliest functions."""
    admin = connect(settings, Role.ADMIN, endpoint=endpoint)
    stream = settings.names.stream(Subject.SNAPSHOT)
    try:
        await admin.xgroup_create(stream, GROUP, id="0")
        out = work_dir / "drain.prof"
        process = start_detector(endpoint, work_dir, "detector-profile", ["--from", "0", "--burst"],
                                 prefix=["-m", "cProfile", "-o", str(out)])
        try:
            await asyncio.to_thread(process.wait, 300)
        finally:
            if process.poll() is None:
                process.terminate()
        check_exit(process, work_dir, "detector-profile")
        await admin.xgroup_destroy(stream, GROUP)
    finally:
        await admin.aclose()
    print(f"\ncProfile of one worker draining the backlog (top {top} by own time; includes interpreter start-up):")
    stats = pstats.Stats(str(out))
    stats.sort_stats("tottime").print_stats(top)


def print_live(rates: dict[str, dict[str, Any]]) -> None:
    print(f"  {'rate/s':>7} {'achieved':>9} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} {'window p50/max':>15}"
          f" {'found/planted':>14} {'windows':>8} {'max lag':>8} {'max pend':>8} {'catch-up':>9}"
          f" {'cores det/redis/pub/other':>26}")
    for rate, r in rates.items():
        window = f"{r['window_p50_ms']}/{r['window_max_ms']}"
        found = f"{r['found']}/{r['planted']}"
        windows = f"{r['windows_found']}/{r['windows_planted']}"
        cores = "/".join(f"{r['cores'][role]:.2f}" for role in ("detector", "redis", "producer", "others"))
        print(f"  {rate:>7} {r['achieved_per_s']:>9,} {r['p50_ms']!s:>7} {r['p99_ms']!s:>7} {r['max_ms']!s:>7}"
              f" {window:>15} {found:>14} {windows:>8} {r['max_lag']:>8,} {r['max_pending']:>8,}"
              f" {r['catchup_ms']:>7.0f}ms {cores:>26}")
    print("  (latency = ts_publish - newest leg's ts_ingest, ms; window = first opportunity - first dislocated"
          " snapshot; goals at 2k/s: p50 <= 2 ms, p99 <= 5 ms; one worker keeps up at 20k/s)", flush=True)


def print_drain(drained: dict[str, Any], read_count: int) -> None:
    def measured(run: str) -> str:
        cores = drained["cores"][run]
        return (f"[{drained['measured_share'][run]:.0%} of the backlog measured; cores: detector(s) "
                f"{cores['detectors']:.2f}, redis {cores['redis']:.2f}, others {cores['others']:.2f}; waiting for"
                f" a CPU: detector(s) {cores['detectors_waiting']:.2f}, redis {cores['redis_waiting']:.2f}]")

    print(f"drain of {drained['entries']:,} pre-published snapshots (published at {drained['publish_per_s']:,}/s), "
          f"median of {drained['repeats']} round(s):")
    print(f"  plain XREADGROUP COUNT {read_count} + XACK loop {drained['baseline_per_s']:>9,} /s")
    print(f"  1 detector process                      {drained['one_worker_per_s']:>9,} /s   "
          f"ratio {drained['ratio_one']:.2f} (goal >= 0.6)   {measured('one')}")
    print(f"  2 detector processes                    {drained['two_workers_per_s']:>9,} /s   "
          f"vs one {drained['ratio_two_vs_one']:.2f}x (goal >= 1.6)   {measured('two')}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", default="2000,5000,10000,20000", help="snapshots/s, comma-separated")
    parser.add_argument("--seconds", type=float, default=8.0, help="publishing time per rate")
    parser.add_argument("--backlog", type=int, default=200_000, help="snapshots pre-published for the drain")
    parser.add_argument("--repeats", type=int, default=3, help="drain rounds (median)")
    parser.add_argument("--quick", action="store_true", help="3 s per rate, a 50k backlog, one drain round")
    parser.add_argument("--profile", action="store_true", help="also print a cProfile of a one-worker drain")
    parser.add_argument("--only", choices=("live", "drain"), help="run one part (default: both)")
    args = parser.parse_args()
    seconds, backlog, repeats = (3.0, 50_000, 1) if args.quick else (args.seconds, args.backlog, args.repeats)
    rates = [int(r) for r in args.rates.split(",")]
    with tempfile.TemporaryDirectory(prefix="triarb-bench-e2e-") as tmp:
        work_dir = Path(tmp)
        settings = Settings(var_dir=work_dir / "redis-var",
                            streams=StreamLimits(snapshot=max(2 * backlog, StreamLimits().snapshot)))
        with EmbeddedRedis(settings, port=0, write_runtime_file=False) as endpoint, \
                asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            print(f"e2e benchmark: {len(SYMBOLS)} {VENUE} books, ETH-BTC -3 % for {WINDOW_MS} ms every {PERIOD_MS} ms,"
                  f" {seconds:g} s per rate; one `triarb detector` process;"
                  f" {os.cpu_count()} CPUs,"
                  f" load average {os.getloadavg()[0]:.2f}", flush=True)
            rates_out: dict[str, dict[str, Any]] = {}
            drained: dict[str, Any] = {}
            if args.only in (None, "live"):
                rates_out = runner.run(live(settings, endpoint, work_dir, rates, seconds))
                print_live(rates_out)
            if args.only in (None, "drain"):
                drained = runner.run(drain(settings, endpoint, work_dir, backlog, repeats))
                print_drain(drained, settings.detector.read_count)
            if args.profile and drained:
                runner.run(profile_drain(settings, endpoint, work_dir, 20))
    busiest = max([r["cores"]["others"] for r in rates_out.values()]
                  + [c["others"] for c in drained.get("cores", {}).values()])
    if busiest > BUSY_MACHINE_CORES:
        print(f"WARNING: other processes used up to {busiest:.2f} cores during the run: these figures understate "
              "what this stack does on a quiet machine; run it again when nothing else runs")
    print(json.dumps({"bench": "e2e", "rates": rates_out or None, "drain": drained or None}))


if __name__ == "__main__":
    main()
