"""What the bus hands to consumers: raw stream entries and decoded deliveries."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from schemas.streams import Subject

Fields = dict[bytes, bytes]
"""A stream entry's field/value pairs exactly as Redis returned them (bytes; the codec decodes)."""

Payload = Any
"""What a decoder made of an entry: its ``WireModel`` with the default decoder, or only what a lean decoder
keeps (the detector's :class:`schemas.codec.BookRef`). ``Any``, not a union, so that handlers on the default
decoder use their model as before."""


@dataclass(slots=True)
class StreamEntry:
    """One entry as read, before decoding: what ``triarb tail`` prints and dead-letters carry. Read-only by
    convention, not ``frozen``: a frozen dataclass costs three times as much to build, and a worker builds
    one per entry (with a :class:`Delivery`)."""

    stream: str
    id: str
    fields: Fields


@dataclass(slots=True)
class Delivery:
    """One decoded entry handed to a handler. ``id`` is the Redis stream id (also the SSE event id).
    Read-only by convention (not ``frozen``, for the reason given on :class:`StreamEntry`)."""

    subject: Subject
    stream: str
    id: str
    model: Payload


def text(value: Any) -> str:
    """Redis replies are bytes (``decode_responses=False`` keeps the hot path cheap); names are ASCII."""
    return value.decode() if isinstance(value, bytes) else str(value)


def parse_range_reply(stream: str, reply: Any) -> list[StreamEntry]:
    """Entries of an XRANGE/XREVRANGE/XAUTOCLAIM list, in reply order, skipping deleted bodies."""
    return [StreamEntry(stream, text(entry_id), fields) for entry_id, fields in reply or () if fields is not None]


def parse_stream_reply(reply: Any) -> list[StreamEntry]:
    """Flatten an XREAD/XREADGROUP reply (RESP2, as ``common.redis.connect`` negotiates) into entries.

    Entries whose body is ``None`` (trimmed away while pending) are skipped: Redis 7 drops them from the
    pending list itself, so there is nothing left to process or acknowledge.
    """
    out: list[StreamEntry] = []
    for stream_name, messages in reply or ():
        name = text(stream_name)
        for entry_id, fields in messages:
            if fields is not None:
                out.append(StreamEntry(name, text(entry_id), fields))
    return out


def parse_raw_stream_reply(reply: Any) -> list[StreamEntry]:
    """:func:`parse_stream_reply` for a reply redis-py has not parsed (each entry's fields still one flat
    ``[field, value, ...]`` list; streams a list of pairs in RESP2, a map in RESP3): one pass, no
    intermediate tuples or dicts. It is the group worker's hot path, which therefore reads XREADGROUP raw."""
    out: list[StreamEntry] = []
    for stream_name, messages in reply.items() if isinstance(reply, dict) else reply or ():
        name = text(stream_name)
        for entry_id, flat in messages:
            if flat is not None:
                pairs = iter(flat)
                out.append(StreamEntry(name, text(entry_id), dict(zip(pairs, pairs, strict=False))))
    return out
