"""Bus throughput as ratios to baselines measured in the same run, on the same private redis-server.

* publish: ``Publisher`` (encode + pipelined batched EVAL with hot-cache writes) vs ``redis-benchmark -c 1 -P 100``
  XADD of the same snapshot payload (raw pipelined XADD from C: the ceiling for one connection); then the same
  publish over 10 and over 1000 books (each entry writes its book's hot-cache key: more keys, more work);
* drain: ``GroupConsumer`` (XREADGROUP + decode + XACK piggybacked on the next read) vs a plain redis-py
  loop of XREADGROUP then XACK that decodes nothing.

Every snapshot's sides differ from its book's previous ones (the worst case for the encoder, which reuses an
unchanged side). Absolute rates depend on the machine; the ratios, each taken within one run and reported as
their median, are what to compare between runs. CPU per entry, of this process and of redis-server's main
thread, says which side bounds a rate (on a shared machine the two add up). The last line is one JSON object
with every figure. Usage:
``python scripts/bench_bus.py [--entries N] [--repeats R]`` (``make bench-bus``).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvloop
from redis.asyncio import Redis

from common.bus import Delivery, GroupConsumer, Publisher
from common.config import Role, Settings, StreamLimits
from common.redis import EmbeddedRedis, RedisEndpoint, connect
from schemas import Snapshot, Subject
from schemas.codec import decode, encode_dict, encode_fields

BOOKS = [f"C{n}-USD" for n in range(50)]
T0_MS = 1_767_225_600_000


BOOK_COUNTS = (10, 1000)
"""The publish cost at many books is compared with the cost at few."""
med = statistics.median


def snapshot(seq: int, books: list[str] = BOOKS) -> Snapshot:
    mid = 100.0 + seq % 997 / 100  # a book's next snapshot has another mid unless the book count is a multiple of 997
    return Snapshot(
        exchange="coinbase", symbol=books[seq % len(books)], ts_event=T0_MS + seq, ts_ingest=T0_MS + seq + 2,
        bids=[(round(mid - 0.01 * (i + 1), 2), 1.5 + i, 1.5 * (i + 1)) for i in range(5)],
        asks=[(round(mid + 0.01 * (i + 1), 2), 2.5 + i, 2.5 * (i + 1)) for i in range(5)],
        latency_ms={"venue_to_ingest": 2.0}, book_seq=seq, venue_seq=10_000 + seq,
    )


@dataclass(frozen=True)
class Rate:
    """Entries/s of one run, and the CPU each entry cost this process and redis-server's main thread."""

    per_s: float
    client_cpu_us: float
    server_cpu_us: float
    cache_writes: float = float("nan")
    """Hot-cache writes (SETs) per entry: one per book per batch, so few books conflate most of them away."""


async def set_calls(settings: Settings, endpoint: RedisEndpoint) -> int:
    """SET commands redis-server has run so far: the publisher's hot-cache writes."""
    admin = connect(settings, Role.ADMIN, endpoint=endpoint)
    try:
        return int((await admin.info("commandstats")).get("cmdstat_set", {}).get("calls", 0))
    finally:
        await admin.aclose()


async def server_cpu_s(settings: Settings, endpoint: RedisEndpoint) -> float:
    """CPU seconds redis-server's main thread has used (the thread that runs every command)."""
    admin = connect(settings, Role.ADMIN, endpoint=endpoint)
    try:
        info = await admin.info("cpu")
        return float(info["used_cpu_user_main_thread"]) + float(info["used_cpu_sys_main_thread"])
    finally:
        await admin.aclose()


def redis_benchmark_xadd(settings: Settings, endpoint: RedisEndpoint, entries: int) -> Rate:
    """Entries/s of redis-benchmark pipelining 100 XADDs of our snapshot payload on one connection."""
    fields = [f if isinstance(f, str) else f.decode() for f in encode_fields(snapshot(1))]
    command = [
        "redis-benchmark", "-h", endpoint.host, "-p", str(endpoint.port), "--user", "admin",
        "-a", endpoint.passwords[Role.ADMIN], "-c", "1", "-P", "100", "-n", str(entries), "--csv",
        "XADD", "bench.baseline", "MAXLEN", "~", str(entries), "*", *fields,
    ]
    server_before = run(server_cpu_s(settings, endpoint))
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    server_us = (run(server_cpu_s(settings, endpoint)) - server_before) * 1e6 / entries
    rows = list(csv.DictReader(io.StringIO(out)))
    return Rate(float(rows[-1]["rps"]), float("nan"), server_us)


async def publish_rate(settings: Settings, endpoint: RedisEndpoint, entries: int, books: list[str] = BOOKS) -> Rate:
    """Models are built beforehand (a producer's parsing is not the bus' cost) and reused in a cycle of
    1000 (or two per book), as a producer's short-lived models would be: holding 100k models alive would
    mostly measure the garbage collector."""
    pool = [snapshot(seq, books) for seq in range(max(1000, 2 * len(books)))]
    models = [pool[seq % len(pool)] for seq in range(entries)]
    redis = connect(settings, Role.PRODUCER, endpoint=endpoint)
    try:
        async with Publisher(redis, settings.names, settings.streams, settings.bus) as publisher:
            await publisher.publish(models[0])
            await publisher.flush()  # script loaded, connection open
            server_before, sets_before = await server_cpu_s(settings, endpoint), await set_calls(settings, endpoint)
            cpu_before = time.process_time()
            started = time.perf_counter()
            for model in models:
                await publisher.publish(model)
            await publisher.flush()
            seconds = time.perf_counter() - started
            client_us = (time.process_time() - cpu_before) * 1e6 / entries
            server_us = (await server_cpu_s(settings, endpoint) - server_before) * 1e6 / entries
            cache_writes = (await set_calls(settings, endpoint) - sets_before) / entries
            return Rate(entries / seconds, client_us, server_us, cache_writes)
    finally:
        await redis.aclose()


async def plain_drain_rate(redis: Redis, stream: str, entries: int) -> float:
    await redis.xgroup_create(stream, "plain", id="0")
    started = time.perf_counter()
    done = 0
    while done < entries:
        reply = await redis.xreadgroup("plain", "c1", {stream: ">"}, count=256)
        ids = [entry_id for _, messages in reply for entry_id, _ in messages]
        await redis.xack(stream, "plain", *ids)
        done += len(ids)
    return entries / (time.perf_counter() - started)


async def group_drain_rate(settings: Settings, redis: Redis, entries: int) -> float:
    async def discard(batch: list[Delivery]) -> None:
        return None

    consumer = GroupConsumer(
        redis, settings.names, settings.bus, group="bench", subjects=[Subject.SNAPSHOT], handler=discard,
        start_id="0",
    )
    await consumer.ensure_groups()
    started = time.perf_counter()
    await consumer.run(burst=True)
    return entries / (time.perf_counter() - started)


def decode_rate(entries: int) -> float:
    """Entries/s of ``schemas.decode`` alone: the validation every delivered entry goes through."""
    raw = [
        {k.encode(): v if isinstance(v, bytes) else v.encode() for k, v in encode_dict(snapshot(seq)).items()}
        for seq in range(1000)
    ]
    started = time.perf_counter()
    for seq in range(entries):
        decode(Subject.SNAPSHOT, raw[seq % len(raw)])
    return entries / (time.perf_counter() - started)


async def drain_rates(settings: Settings, endpoint: RedisEndpoint, entries: int) -> tuple[float, float]:
    redis = connect(settings, Role.ADMIN, endpoint=endpoint)
    try:
        await redis.delete(settings.names.stream(Subject.SNAPSHOT))
        await publish_rate(settings, endpoint, entries)
        stream = settings.names.stream(Subject.SNAPSHOT)
        length = await redis.xlen(stream)
        plain = await plain_drain_rate(redis, stream, length)
        ours = await group_drain_rate(settings, redis, length)
        return ours, plain
    finally:
        await redis.aclose()


def run(main: Coroutine[Any, Any, Any]) -> Any:
    """On uvloop, as the services run."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if shutil.which("redis-benchmark") is None:
        sys.exit("redis-benchmark is missing: apt-get install redis-tools (make bootstrap does it)")
    with tempfile.TemporaryDirectory(prefix="triarb-bench-") as var_dir:
        settings = Settings(var_dir=Path(var_dir), streams=StreamLimits(snapshot=args.entries * 2))
        with EmbeddedRedis(settings, port=0, write_runtime_file=False) as endpoint:
            baseline: list[Rate] = []
            publish: list[Rate] = []
            drain, plain, decoding = [], [], []
            by_books: dict[int, list[Rate]] = {count: [] for count in BOOK_COUNTS}
            for _ in range(args.repeats):
                baseline.append(redis_benchmark_xadd(settings, endpoint, args.entries))
                publish.append(run(publish_rate(settings, endpoint, args.entries)))
                for count in BOOK_COUNTS:
                    books = [f"C{n}-USD" for n in range(count)]
                    by_books[count].append(run(publish_rate(settings, endpoint, args.entries, books)))
                ours, plain_rate = run(drain_rates(settings, endpoint, args.entries))
                drain.append(ours)
                plain.append(plain_rate)
                decoding.append(decode_rate(args.entries))
    few, many = BOOK_COUNTS
    publish_ratios = [ours.per_s / theirs.per_s for ours, theirs in zip(publish, baseline, strict=True)]
    books_ratios = [m.per_s / f.per_s for m, f in zip(by_books[many], by_books[few], strict=True)]
    drain_ratios = [ours / theirs for ours, theirs in zip(drain, plain, strict=True)]
    print(f"bus benchmark: {args.entries} snapshot entries (~{len(b''.join(map(_b, encode_fields(snapshot(1)))))} "
          f"bytes of fields, {len(BOOKS)} books), median of {args.repeats} runs (ratios: median of same-run ratios)")
    print(f"  publish  Publisher            {med_rate(publish)}  (XADD + hot cache, batched)")
    print(f"           redis-benchmark -P100 {med_rate(baseline)}  (same payload, XADD only)")
    print(f"           ratio                {med(publish_ratios):>10.2f}   (goal >= 0.6)")
    for count in BOOK_COUNTS:
        writes = med(rate.cache_writes for rate in by_books[count])
        print(f"           {count:>4} books           {med_rate(by_books[count])}  hot-cache writes/entry {writes:.2f}")
    print(f"           ratio {many} / {few} books {med(books_ratios):>8.2f}   (goal >= 0.9; each batch writes a "
          f"book's hot-cache key once, so {few} books conflate away what {many} books pay per entry)")
    print(f"  drain    GroupConsumer        {med(drain):>10,.0f} entries/s  (decode + ack with next read)")
    print(f"           plain XREADGROUP loop{med(plain):>10,.0f} entries/s  (no decode, XACK per batch)")
    print(f"           ratio                {med(drain_ratios):>10.2f}")
    print(f"           (decode alone        {med(decoding):>10,.0f} entries/s: pydantic validation bounds the drain)")
    print(json.dumps({
        "entries": args.entries, "repeats": args.repeats, "books": len(BOOKS),
        **figures("publish", publish), **figures("redis_benchmark", baseline),
        "publish_ratio": round(med(publish_ratios), 3), "publish_ratios": [round(r, 3) for r in publish_ratios],
        **figures(f"publish_{few}_books", by_books[few]), **figures(f"publish_{many}_books", by_books[many]),
        f"publish_{few}_books_cache_writes_per_entry": round(med(r.cache_writes for r in by_books[few]), 3),
        f"publish_{many}_books_cache_writes_per_entry": round(med(r.cache_writes for r in by_books[many]), 3),
        f"publish_{many}_vs_{few}_books": round(med(books_ratios), 3),
        f"publish_{many}_vs_{few}_books_runs": [round(r, 3) for r in books_ratios],
        "drain_per_s": round(med(drain)), "plain_drain_per_s": round(med(plain)),
        "drain_ratio": round(med(drain_ratios), 3), "decode_per_s": round(med(decoding)),
    }))


def med_rate(rates: list[Rate]) -> str:
    """Median rate, and median CPU per entry of this process and of redis-server (each over the runs)."""
    client = med(rate.client_cpu_us for rate in rates)
    cpu = f"client {client:5.1f}" if client == client else " " * 12  # nan: not ours to measure
    return (f"{med(rate.per_s for rate in rates):>10,.0f} entries/s  [CPU us/entry: {cpu} "
            f"redis {med(rate.server_cpu_us for rate in rates):5.1f}]")


def figures(name: str, rates: list[Rate]) -> dict[str, float | None]:
    client = med(rate.client_cpu_us for rate in rates)
    return {
        f"{name}_per_s": round(med(rate.per_s for rate in rates)),
        f"{name}_client_cpu_us": round(client, 2) if client == client else None,
        f"{name}_server_cpu_us": round(med(rate.server_cpu_us for rate in rates), 2),
    }


def _b(value: str | bytes) -> bytes:
    return value.encode() if isinstance(value, str) else value


if __name__ == "__main__":
    main()
