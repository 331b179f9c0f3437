"""Bus throughput as ratios to baselines measured in the same run, on the same private redis-server.

* publish: ``Publisher`` (encode + pipelined batched EVAL with hot-cache writes) vs ``redis-benchmark -c 1 -P 100``
  XADD of the same snapshot payload (raw pipelined XADD from C: the ceiling for one connection);
* drain: ``GroupConsumer`` (XREADGROUP + decode + XACK piggybacked on the next read) vs a plain redis-py
  loop of XREADGROUP then XACK that decodes nothing.

Absolute rates depend on the machine; the ratios are what to compare between runs. Usage:
``python scripts/bench_bus.py [--entries N] [--repeats R]`` (``make bench-bus``).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Coroutine
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


def snapshot(seq: int) -> Snapshot:
    mid = 100.0 + seq % 1000 / 100
    return Snapshot(
        exchange="coinbase", symbol=BOOKS[seq % len(BOOKS)], ts_event=T0_MS + seq, ts_ingest=T0_MS + seq + 2,
        bids=[(round(mid - 0.01 * (i + 1), 2), 1.5 + i, 1.5 * (i + 1)) for i in range(5)],
        asks=[(round(mid + 0.01 * (i + 1), 2), 2.5 + i, 2.5 * (i + 1)) for i in range(5)],
        latency_ms={"venue_to_ingest": 2.0}, book_seq=seq, venue_seq=10_000 + seq,
    )


def redis_benchmark_xadd(endpoint: RedisEndpoint, entries: int) -> float:
    """Entries/s of redis-benchmark pipelining 100 XADDs of our snapshot payload on one connection."""
    fields = [f if isinstance(f, str) else f.decode() for f in encode_fields(snapshot(1))]
    command = [
        "redis-benchmark", "-h", endpoint.host, "-p", str(endpoint.port), "--user", "admin",
        "-a", endpoint.passwords[Role.ADMIN], "-c", "1", "-P", "100", "-n", str(entries), "--csv",
        "XADD", "bench.baseline", "MAXLEN", "~", str(entries), "*", *fields,
    ]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    rows = list(csv.DictReader(io.StringIO(out)))
    return float(rows[-1]["rps"])


async def publish_rate(settings: Settings, endpoint: RedisEndpoint, entries: int) -> float:
    """Models are built beforehand (a producer's parsing is not the bus' cost) and reused in a cycle of
    1000, as a producer's short-lived models would be: holding 100k models alive would mostly measure
    the garbage collector."""
    pool = [snapshot(seq) for seq in range(1000)]
    models = [pool[seq % len(pool)] for seq in range(entries)]
    redis = connect(settings, Role.PRODUCER, endpoint=endpoint)
    try:
        async with Publisher(redis, settings.names, settings.streams, settings.bus) as publisher:
            await publisher.publish(models[0])
            await publisher.flush()  # script loaded, connection open
            started = time.perf_counter()
            for model in models:
                await publisher.publish(model)
            await publisher.flush()
            return entries / (time.perf_counter() - started)
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


def run(main: Coroutine[Any, Any, float] | Coroutine[Any, Any, tuple[float, float]]) -> Any:
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
            baseline, publish, drain, plain, decoding = [], [], [], [], []
            for _ in range(args.repeats):
                baseline.append(redis_benchmark_xadd(endpoint, args.entries))
                publish.append(run(publish_rate(settings, endpoint, args.entries)))
                ours, plain_rate = run(drain_rates(settings, endpoint, args.entries))
                drain.append(ours)
                plain.append(plain_rate)
                decoding.append(decode_rate(args.entries))
    med = statistics.median
    print(f"bus benchmark: {args.entries} snapshot entries (~{len(b''.join(map(_b, encode_fields(snapshot(1)))))} "
          f"bytes of fields, {len(BOOKS)} books), median of {args.repeats} runs")
    print(f"  publish  Publisher            {med(publish):>10,.0f} entries/s  (XADD + hot cache, batched)")
    print(f"           redis-benchmark -P100 {med(baseline):>10,.0f} entries/s  (same payload, XADD only)")
    print(f"           ratio                {med(publish) / med(baseline):>10.2f}   (goal >= 0.6)")
    print(f"  drain    GroupConsumer        {med(drain):>10,.0f} entries/s  (decode + ack with next read)")
    print(f"           plain XREADGROUP loop{med(plain):>10,.0f} entries/s  (no decode, XACK per batch)")
    print(f"           ratio                {med(drain) / med(plain):>10.2f}")
    print(f"           (decode alone        {med(decoding):>10,.0f} entries/s: pydantic validation bounds the drain)")


def _b(value: str | bytes) -> bytes:
    return value.encode() if isinstance(value, str) else value


if __name__ == "__main__":
    main()
