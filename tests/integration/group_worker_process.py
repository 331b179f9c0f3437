"""A detector-like worker run as a real separate process, so a test can SIGKILL it mid-batch.

Usage: ``python -m tests.integration.group_worker_process REDIS_URL GROUP``. It reads one batch of
``md.snapshot``, prints ``HOLDING <n>`` and then hangs inside its handler, never acknowledging.
"""

from __future__ import annotations

import asyncio
import sys

from redis.asyncio import Redis

from common.bus import Delivery, GroupConsumer
from common.config import BusSettings
from schemas.streams import StreamNames, Subject


async def hold_first_batch(url: str, group: str) -> None:
    async def hang(batch: list[Delivery]) -> None:
        print(f"HOLDING {len(batch)}", flush=True)
        await asyncio.Event().wait()

    redis = Redis.from_url(url)
    consumer = GroupConsumer(
        redis, StreamNames(), BusSettings(read_count=10), group=group, subjects=[Subject.SNAPSHOT],
        handler=hang, start_id="0",
    )
    await consumer.run()


if __name__ == "__main__":
    asyncio.run(hold_first_batch(sys.argv[1], sys.argv[2]))
