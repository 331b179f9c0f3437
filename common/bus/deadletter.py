"""The dead-letter stream: where an entry that cannot be used goes, with the reason, so nothing is lost.

Every component that rejects input it was handed (a consumer group worker, a producer following control,
persistence checking what it archives) writes the same record: the source stream and id, who rejected it,
why, and the entry's fields as JSON, so ``triarb tail deadletter`` shows it and it can be replayed by hand.
"""

from __future__ import annotations

import logging

import orjson
from redis.asyncio import Redis
from redis.typing import EncodableT, FieldT

from common import metrics
from common.bus.entries import StreamEntry, text
from schemas.streams import StreamNames

log = logging.getLogger(__name__)

DEADLETTER_MAXLEN = 10_000


DeadLetter = dict[FieldT, EncodableT]


def deadletter_record(entry: StreamEntry, reason: str, rejected_by: str, **extra: str | int) -> DeadLetter:
    """The dead-letter entry's fields for ``entry`` (its fields kept as JSON text, undecodable bytes escaped)."""
    fields = {text(k): v.decode(errors="backslashreplace") if isinstance(v, bytes) else str(v)
              for k, v in entry.fields.items()}
    record: DeadLetter = {"stream": entry.stream, "id": entry.id, "rejected_by": rejected_by, "reason": reason[:1000]}
    record.update(extra)
    record["fields"] = orjson.dumps(fields)
    return record


async def dead_letter(redis: Redis, names: StreamNames, entry: StreamEntry, reason: str, *, kind: str,
                      rejected_by: str, maxlen: int = DEADLETTER_MAXLEN) -> None:
    """Append ``entry`` to the dead-letter stream with ``reason``; ``kind`` labels the metric (a short,
    bounded word such as ``invalid`` or ``untrusted``)."""
    await redis.xadd(names.deadletter, deadletter_record(entry, reason, rejected_by), maxlen=maxlen,
                     approximate=True)
    metrics.BUS_DEADLETTERED.labels(stream=entry.stream, reason=kind).inc()
    log.warning("dead-lettered entry", extra={"stream": entry.stream, "id": entry.id, "reason": reason[:200],
                                              "rejected_by": rejected_by})
