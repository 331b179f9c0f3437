"""The snapshot hot path says exactly what the codec says: ``SnapshotWire`` writes the bulks of
``encode_fields`` (so every entry decodes to the same model, floats bit for bit), and ``trusted_snapshot``
builds the model ``Snapshot(...)`` would, refusing the same bad names and times."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from common.bus.publisher import pack_bulks
from schemas import Snapshot, Source, Subject, decode, encode_fields
from schemas.codec import decode_json_as
from schemas.market import Level
from schemas.wire import SnapshotWire, trusted_snapshot
from tests import samples

symbols = st.from_regex(r"\A[A-Z0-9]{1,6}-[A-Z0-9]{1,6}\Z")
exchanges = st.from_regex(r"\A[a-z][a-z0-9_]{0,10}\Z")
epoch_ms = st.integers(min_value=0, max_value=2**53 - 1)
awkward_floats = st.sampled_from([0.1 + 0.2, 1e16, 1e-7, 5e-324, 1.7976931348623157e308, 123456789.12345678, 2.0])
finite = st.floats(allow_nan=False, allow_infinity=False, width=64) | awkward_floats
levels = st.lists(st.tuples(finite, finite, finite), max_size=10)
optional_ints = st.none() | st.integers(min_value=-(2**63), max_value=2**64 - 1)

snapshots = st.builds(
    Snapshot, exchange=exchanges, symbol=symbols, ts_event=epoch_ms, ts_ingest=epoch_ms, bids=levels, asks=levels,
    source=st.sampled_from(list(Source)), latency_ms=st.dictionaries(st.text(max_size=20), finite, max_size=3),
    book_seq=st.integers(0, 2**64 - 1), venue_seq=optional_ints, checksum=st.none() | st.integers(0, 2**32 - 1),
)


def fields_of(bulks: bytes) -> dict[bytes, bytes]:
    """Parses RESP bulk strings (``$len\\r\\nvalue\\r\\n`` ...) into fields as Redis would store them."""
    values: list[bytes] = []
    at = 0
    while at < len(bulks):
        assert bulks[at : at + 1] == b"$"
        end = bulks.index(b"\r\n", at)
        length = int(bulks[at + 1 : end])
        values.append(bulks[end + 2 : end + 2 + length])
        assert bulks[end + 2 + length : end + 4 + length] == b"\r\n"
        at = end + 4 + length
    assert len(values) % 2 == 0
    return dict(zip(values[::2], values[1::2], strict=True))


def codec_fields(snapshot: Snapshot) -> dict[bytes, bytes]:
    return {(k if isinstance(k, bytes) else k.encode()): (v if isinstance(v, bytes) else v.encode())
            for k, v in zip(encode_fields(snapshot)[::2], encode_fields(snapshot)[1::2], strict=True)}


def same_floats(a: Snapshot, b: Snapshot) -> bool:
    """Equal models, and every level float the same bits (``==`` would let -0.0 pass for 0.0)."""
    def bits(model: Snapshot) -> list[str]:
        return [x.hex() if isinstance(x, float) else repr(x) for side in (model.bids, model.asks)
                for level in side for x in level]
    return a == b and bits(a) == bits(b)


@given(snapshots)
def test_a_snapshot_encodes_to_the_bulks_of_encode_fields_byte_for_byte(snapshot: Snapshot) -> None:
    fields = encode_fields(snapshot)
    assert SnapshotWire().encode(snapshot)[:2] == (len(fields) // 2, pack_bulks(fields))


@given(snapshots)
def test_its_hot_cache_document_is_the_models_json_and_decodes_to_the_same_model(snapshot: Snapshot) -> None:
    _, _, document = SnapshotWire().encode(snapshot)
    assert list(orjson.loads(document).items()) == list(orjson.loads(snapshot.model_dump_json(exclude_none=True))
                                                         .items())  # same fields, same order, same values
    assert same_floats(decode_json_as(Snapshot, document), snapshot)


@given(snapshots)
def test_the_fast_encoding_decodes_to_the_model_the_codec_path_decodes_to(snapshot: Snapshot) -> None:
    _, bulks, _ = SnapshotWire().encode(snapshot)
    fast = decode(Subject.SNAPSHOT, fields_of(bulks))
    assert isinstance(fast, Snapshot)
    codec = decode(Subject.SNAPSHOT, codec_fields(snapshot))
    assert isinstance(codec, Snapshot)
    assert same_floats(fast, codec)
    assert same_floats(fast, snapshot)  # repr/JSON of every float round-trips exactly


# Few distinct sides, as books often repeat one. Without -0.0: a side equal (==) to its book's last one keeps
# that one's text, and -0.0 == 0.0 (no book holds either: prices are positive and a zero size deletes a level).
signed_zero_free = st.floats(allow_nan=False, allow_infinity=False).map(lambda x: x + 0.0) | awkward_floats
side_pool = st.lists(st.lists(st.tuples(*[signed_zero_free] * 3), max_size=10), min_size=1, max_size=3)


@given(st.data())
def test_a_sequence_of_books_with_repeated_and_changed_sides_decodes_entry_by_entry(data: st.DataObject) -> None:
    sides = data.draw(side_pool)
    books = data.draw(st.lists(st.tuples(exchanges, symbols), min_size=1, max_size=3))
    wire = SnapshotWire()
    for seq in range(data.draw(st.integers(1, 12))):
        exchange, symbol = data.draw(st.sampled_from(books))
        snapshot = data.draw(st.builds(
            Snapshot, exchange=st.just(exchange), symbol=st.just(symbol), ts_event=epoch_ms, ts_ingest=epoch_ms,
            bids=st.sampled_from(sides), asks=st.sampled_from(sides), latency_ms=st.dictionaries(
                st.just("venue_to_ingest"), finite), book_seq=st.just(seq), venue_seq=optional_ints,
        ))
        pairs, bulks, document = wire.encode(snapshot)
        fields = fields_of(bulks)
        assert pairs == len(fields)
        assert fields == codec_fields(snapshot)
        assert same_floats(decode(Subject.SNAPSHOT, fields), snapshot)  # type: ignore[arg-type]
        assert same_floats(decode_json_as(Snapshot, document), snapshot)


def test_an_unchanged_side_is_reused_and_a_changed_one_encoded_again() -> None:
    wire = SnapshotWire()
    first = samples.snapshot(book_seq=1)
    wire.encode(first)
    same_bids = samples.snapshot(book_seq=1, asks=[(60_002.0, 1.0, 1.0)], ts_event=samples.T0_MS + 9)
    _, bulks, document = wire.encode(same_bids)
    fields = fields_of(bulks)
    assert orjson.loads(document)["asks"] == [[60_002.0, 1.0, 1.0]]
    assert fields[b"bids"] == b"[[60000.5,0.25,0.25],[60000.0,1.5,1.75]]"
    assert fields[b"asks"] == b"[[60002.0,1.0,1.0]]"
    assert fields[b"ts_event"] == str(samples.T0_MS + 9).encode()


def test_a_list_changed_in_place_by_its_caller_is_encoded_again() -> None:
    """The encoder keeps a copy of the last levels, not the caller's list: a reused list cannot go stale."""
    bids: list[Level] = [(100.0, 1.0, 1.0)]
    shared = Snapshot.model_construct(**(samples.snapshot().__dict__ | {"bids": bids}))
    wire = SnapshotWire()
    wire.encode(shared)
    bids[0] = (99.5, 2.0, 2.0)
    _, bulks, document = wire.encode(shared)
    assert fields_of(bulks)[b"bids"] == b"[[99.5,2.0,2.0]]"
    assert orjson.loads(document)["bids"] == [[99.5, 2.0, 2.0]]


def test_optional_fields_are_left_out_when_none_and_counted_when_set() -> None:
    wire = SnapshotWire()
    pairs, bulks, document = wire.encode(samples.snapshot(venue_seq=None))
    assert pairs == 10 and b"venue_seq" not in fields_of(bulks) and b"checksum" not in fields_of(bulks)
    assert b"venue_seq" not in document and b"checksum" not in document
    pairs, bulks, document = wire.encode(samples.snapshot(venue_seq=None, checksum=3_735_928_559,
                                                          source=Source.REST))
    fields = fields_of(bulks)
    assert pairs == 11
    assert (fields[b"checksum"], fields[b"source"]) == (b"3735928559", b"rest")
    assert orjson.loads(document)["checksum"] == 3_735_928_559 and b"venue_seq" not in document


# --- trusted_snapshot -----------------------------------------------------------------------------------


def trusted_arguments(**overrides: Any) -> dict[str, Any]:
    arguments: dict[str, Any] = {
        "exchange": "kraken", "symbol": "ETH-BTC", "ts_event": samples.T0_MS, "ts_ingest": samples.T0_MS + 4,
        "bids": [(0.05, 2.0, 2.0)], "asks": [(0.0501, 1.0, 1.0)], "latency_ms": {"venue_to_ingest": 4.0},
        "book_seq": 3, "venue_seq": None, "checksum": 12345,
    }
    return arguments | overrides


@given(exchange=exchanges, symbol=symbols, ts_event=epoch_ms, ts_ingest=epoch_ms, bids=levels, asks=levels,
       book_seq=st.integers(0, 2**64 - 1), venue_seq=optional_ints, checksum=st.none() | st.integers(0, 2**32 - 1),
       latency=finite)
def test_a_trusted_snapshot_equals_the_validated_one(**arguments: Any) -> None:
    arguments["latency_ms"] = {"venue_to_ingest": arguments.pop("latency")}
    for _ in range(2):  # the first of a book is validated in full, the next one trusted
        trusted = trusted_snapshot(**arguments)
        validated = Snapshot(**arguments)
        assert same_floats(trusted, validated)
        assert trusted.model_fields_set == validated.model_fields_set
        assert encode_fields(trusted) == encode_fields(validated)


def test_a_trusted_snapshot_shares_the_books_levels_instead_of_copying_them() -> None:
    arguments = trusted_arguments()
    trusted_snapshot(**arguments)
    assert trusted_snapshot(**arguments).bids is arguments["bids"]


@pytest.mark.parametrize("bad", [
    {"symbol": "eth/btc"}, {"exchange": "Kraken"}, {"ts_event": -1}, {"ts_ingest": 2**53}, {"book_seq": -1},
])
def test_names_and_times_out_of_range_raise_as_the_model_does_even_after_good_snapshots(bad: dict[str, Any]) -> None:
    trusted_snapshot(**trusted_arguments())
    for _ in range(2):
        with pytest.raises(ValidationError):
            trusted_snapshot(**trusted_arguments(**bad))


def test_a_trusted_snapshot_is_as_frozen_as_any() -> None:
    trusted_snapshot(**trusted_arguments())
    snapshot = trusted_snapshot(**trusted_arguments())
    with pytest.raises(ValidationError):
        snapshot.book_seq = 4
