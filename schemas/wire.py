"""Snapshots on the producers' hot path: built without validating our own output again, and encoded straight
into what the publisher's batch sends: the RESP bulk strings of an XADD's fields, and the JSON document the
hot cache holds (one ``SET``).

A producer publishes one snapshot per book change. ``Snapshot(...)`` would check every level again (~6 µs),
and :func:`schemas.codec.encode_fields` plus ``hiredis.pack_command`` would encode it field by field (~10 µs),
although the levels were checked when they entered the book and most changes leave a side's top as it was.
:func:`trusted_snapshot` keeps only the checks that the input could still fail; :class:`SnapshotWire` writes
the fields of :func:`~schemas.codec.encode_fields`, in its order and byte for byte (the tests compare the
two on generated snapshots), and the same values as one JSON object (what
:func:`~schemas.codec.decode_json_as` reads), in one join each per entry, each side's JSON reused while it is
unchanged. Decoding is untouched: consumers validate every entry as before.
"""

from __future__ import annotations

from functools import lru_cache

import orjson
from pydantic import TypeAdapter, ValidationError

from schemas.base import CanonicalSymbol, ExchangeName
from schemas.market import Level, Snapshot, Source

MAX_EPOCH_MS = 2**53 - 1
"""``EpochMs``' bound (``schemas.base``)."""

TRUSTED_FIELDS = ("exchange", "symbol", "ts_event", "ts_ingest", "bids", "asks", "latency_ms", "book_seq",
                  "venue_seq", "checksum")
"""What :func:`trusted_snapshot` sets: the fields a ``Snapshot(...)`` call given the same arguments sets."""

MAX_BOOKS = 16_384
"""Books whose names were checked, and whose sides a :class:`SnapshotWire` keeps; a venue lists a few hundred."""

_set = object.__setattr__  # a frozen model refuses its own __setattr__
_EXCHANGE = TypeAdapter(ExchangeName)
_SYMBOL = TypeAdapter(CanonicalSymbol)


@lru_cache(maxsize=MAX_BOOKS)
def _names_ok(exchange: str, symbol: str) -> bool:
    """The model's own rules for these names, once per book."""
    try:
        _EXCHANGE.validate_python(exchange)
        _SYMBOL.validate_python(symbol)
    except ValidationError:
        return False
    return True


def trusted_snapshot(
    *, exchange: str, symbol: str, ts_event: int, ts_ingest: int, bids: list[Level], asks: list[Level],
    latency_ms: dict[str, float], book_seq: int, venue_seq: int | None, checksum: int | None,
) -> Snapshot:
    """A :class:`Snapshot` of a book our own code keeps, equal to ``Snapshot(...)`` with these arguments.

    The levels are taken as they are (not copied, not checked again): the book checked each level when it
    entered, and builds its top as ``(float, float, float)`` tuples. Names are checked once per book, the
    times and sequence (our own ints) every time; anything out of range goes through ``Snapshot(...)``, so
    it raises the ``ValidationError`` it always did.
    """
    if not (_names_ok(exchange, symbol) and 0 <= ts_event <= MAX_EPOCH_MS and 0 <= ts_ingest <= MAX_EPOCH_MS
            and book_seq >= 0):
        return Snapshot(
            exchange=exchange, symbol=symbol, ts_event=ts_event, ts_ingest=ts_ingest, bids=bids, asks=asks,
            latency_ms=latency_ms, book_seq=book_seq, venue_seq=venue_seq, checksum=checksum,
        )
    snapshot = Snapshot.__new__(Snapshot)
    # What ``BaseModel.model_construct`` does, without its per-field loop (which costs as much as validating).
    _set(snapshot, "__dict__", {
        "v": 1, "exchange": exchange, "symbol": symbol, "ts_event": ts_event, "ts_ingest": ts_ingest,
        "bids": bids, "asks": asks, "source": Source.WS, "latency_ms": latency_ms, "book_seq": book_seq,
        "venue_seq": venue_seq, "checksum": checksum,
    })
    _set(snapshot, "__pydantic_fields_set__", set(TRUSTED_FIELDS))
    _set(snapshot, "__pydantic_extra__", None)
    _set(snapshot, "__pydantic_private__", None)
    return snapshot


def _field(name: bytes, value: bytes) -> bytes:
    """One field/value pair as two RESP bulk strings."""
    return b"$%d\r\n%b\r\n$%d\r\n%b\r\n" % (len(name), name, len(value), value)


def _json_field(name: bytes, value: bytes) -> bytes:
    """``name`` is the field's bulk and the ``$`` of the value's (the hot path avoids bytes ``%``: ~2x slower)."""
    return b"".join((name, str(len(value)).encode(), b"\r\n", value, b"\r\n"))


_SOURCE_FIELDS = {source: _field(b"source", source.value.encode()) for source in Source}
_FIXED_PAIRS = 10
"""v, exchange, symbol, ts_event, ts_ingest, bids, asks, source, latency_ms, book_seq; venue_seq and checksum
follow when set."""

_LAYOUT = ("v", "exchange", "symbol", "ts_event", "ts_ingest", "bids", "asks", "source", "latency_ms", "book_seq",
           "venue_seq", "checksum")
if tuple(Snapshot.model_fields) != _LAYOUT:  # checked at import: a changed model fails every run until this follows
    raise RuntimeError(f"schemas.wire encodes Snapshot fields {_LAYOUT}, the model now has "
                      f"{tuple(Snapshot.model_fields)}: update SnapshotWire and its test together with the model")


_SOURCE_JSON = {source: b',"source":' + orjson.dumps(source.value) for source in Source}


class _BookFields:
    """What stays the same between one book's entries: its names, and each side's last levels, field and JSON."""

    __slots__ = ("head", "json_head", "bids", "bids_json", "bids_field", "asks", "asks_json", "asks_field")

    def __init__(self, exchange: str, symbol: str) -> None:
        self.head = _field(b"v", b"1") + _field(b"exchange", exchange.encode()) + _field(b"symbol", symbol.encode())
        self.json_head = b'{"v":1,"exchange":%b,"symbol":%b' % (orjson.dumps(exchange), orjson.dumps(symbol))
        self.bids: list[Level] | None = None
        self.bids_json = self.bids_field = b""
        self.asks: list[Level] | None = None
        self.asks_json = self.asks_field = b""


class SnapshotWire:
    """Encodes snapshots as ``(field pairs, RESP bulk strings, JSON document)``, remembering each book's last sides.

    A side is encoded again only when its levels differ (``==``) from the last ones of its book: a copy of
    those is kept, so a caller that reuses and changes its list cannot make a stale field. (A side that
    differs only in the sign of a zero keeps the old text, as ``-0.0 == 0.0``; a book holds neither: prices
    are positive and a zero size deletes its level.)
    """

    def __init__(self) -> None:
        self._books: dict[tuple[str, str], _BookFields] = {}
        """Beyond ``MAX_BOOKS`` books, it starts afresh."""

    def encode(self, snapshot: Snapshot) -> tuple[int, bytes, bytes]:
        """The same bulks as ``pack_bulks(encode_fields(snapshot))``, how many field pairs they hold, and the
        snapshot as one JSON object with the same fields in the same order (``None`` fields left out)."""
        exchange, symbol = snapshot.exchange, snapshot.symbol
        book = self._books.get((exchange, symbol))
        if book is None:
            if len(self._books) >= MAX_BOOKS:
                self._books.clear()
            book = self._books[exchange, symbol] = _BookFields(exchange, symbol)
        bids, asks = snapshot.bids, snapshot.asks
        if bids != book.bids:
            book.bids = list(bids)
            book.bids_json = orjson.dumps(bids)
            book.bids_field = _json_field(b"$4\r\nbids\r\n$", book.bids_json)
        if asks != book.asks:
            book.asks = list(asks)
            book.asks_json = orjson.dumps(asks)
            book.asks_field = _json_field(b"$4\r\nasks\r\n$", book.asks_json)
        # Integers are formatted as text in f-strings (ASCII, so characters count bytes): faster than bytes %.
        ts_event, ts_ingest, book_seq = str(snapshot.ts_event), str(snapshot.ts_ingest), str(snapshot.book_seq)
        latency = orjson.dumps(snapshot.latency_ms)
        tail = f"\r\n$8\r\nbook_seq\r\n${len(book_seq)}\r\n{book_seq}\r\n"
        json_tail = f',"book_seq":{book_seq}'
        pairs = _FIXED_PAIRS
        if snapshot.venue_seq is not None:
            venue_seq = str(snapshot.venue_seq)
            tail += f"$9\r\nvenue_seq\r\n${len(venue_seq)}\r\n{venue_seq}\r\n"
            json_tail += f',"venue_seq":{venue_seq}'
            pairs += 1
        if snapshot.checksum is not None:
            checksum = str(snapshot.checksum)
            tail += f"$8\r\nchecksum\r\n${len(checksum)}\r\n{checksum}\r\n"
            json_tail += f',"checksum":{checksum}'
            pairs += 1
        bulks = b"".join((
            book.head,
            f"$8\r\nts_event\r\n${len(ts_event)}\r\n{ts_event}\r\n"
            f"$9\r\nts_ingest\r\n${len(ts_ingest)}\r\n{ts_ingest}\r\n".encode(),
            book.bids_field, book.asks_field, _SOURCE_FIELDS[snapshot.source],
            b"$10\r\nlatency_ms\r\n$%d\r\n" % len(latency), latency, tail.encode(),
        ))
        document = b"".join((
            book.json_head, f',"ts_event":{ts_event},"ts_ingest":{ts_ingest},"bids":'.encode(), book.bids_json,
            b',"asks":', book.asks_json, _SOURCE_JSON[snapshot.source], b',"latency_ms":', latency,
            json_tail.encode(), b"}",
        ))
        return pairs, bulks, document
