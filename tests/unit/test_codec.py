"""The codec is the wire contract: every subject survives a round trip, and bad entries fail typed."""

from __future__ import annotations

import re
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from schemas import (
    Channel,
    CodecError,
    FeedStatus,
    Health,
    Leg,
    Opportunity,
    Snapshot,
    Source,
    Subject,
    SymbolControl,
    Trade,
    UnknownVersionError,
    decode,
    encode_fields,
)
from schemas.base import VENUES, WireModel
from schemas.codec import decode_book_ref, decode_json_as, encode_dict
from schemas.control import ControlOp, ControlSource
from schemas.episode import CloseReason, Episode, EpisodeEvent
from schemas.opportunity import Fill, FillLeg, FillStatus, FillTrace
from tests import samples

symbols = st.from_regex(r"\A[A-Z0-9]{1,6}-[A-Z0-9]{1,6}\Z")
exchanges = st.from_regex(r"\A[a-z][a-z0-9_]{0,10}\Z")
u64 = st.integers(min_value=0, max_value=2**64 - 1)  # the widest integer orjson carries inside JSON
epoch_ms = st.integers(min_value=0, max_value=2**53 - 1)  # EpochMs' bound: JavaScript reads it exactly
finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
positive = st.floats(min_value=0, exclude_min=True, allow_infinity=False)  # subnormals to 1.8e308
levels = st.lists(st.tuples(finite, finite, finite), max_size=10)  # the codec carries any book; checks judge it
texts = st.text(max_size=40)

snapshots = st.builds(
    Snapshot, exchange=exchanges, symbol=symbols, ts_event=epoch_ms, ts_ingest=epoch_ms, bids=levels,
    asks=levels, source=st.sampled_from(list(Source)),
    latency_ms=st.dictionaries(texts, finite, max_size=3), book_seq=u64,
    venue_seq=st.none() | st.integers(min_value=-(2**63), max_value=2**64 - 1),
    checksum=st.none() | st.integers(0, 2**32 - 1),
)
trades = st.builds(
    Trade, exchange=exchanges, symbol=symbols, price=positive, size=positive, ts_event=epoch_ms,
    ts_ingest=epoch_ms, trade_id=st.none() | texts,
)
counts = st.integers(0, 10**9)
healths = st.builds(
    Health, exchange=exchanges, channel=st.sampled_from(list(Channel)), status=st.sampled_from(list(FeedStatus)),
    ts=epoch_ms, last_msg_ms=st.none() | epoch_ms, reconnects=counts, errors=counts, gaps=counts,
    checksum_failures=counts, symbol_count=counts, symbols_digest=st.none() | st.from_regex(r"\A[0-9a-f]{16}\Z"),
    redis_reconnects=counts, redis_down_s=st.floats(min_value=0, max_value=1e9), detail=st.none() | texts,
)
controls = st.builds(
    SymbolControl, op=st.sampled_from(list(ControlOp)), source=st.sampled_from(list(ControlSource)),
    symbols=st.dictionaries(st.sampled_from(VENUES), st.lists(symbols, min_size=1, max_size=5), min_size=1),
    ts=epoch_ms, issued_by=st.text(min_size=1, max_size=64),
)
legs = st.builds(Leg, symbol=symbols, price=positive, size=positive, fee=positive, ts_event=epoch_ms)
fill_legs = st.builds(
    FillLeg, symbol=symbols, expected_price=positive, fill_price=positive, size=positive, fee=positive,
    slippage_bps=finite, ts=epoch_ms,
)
traces = st.builds(
    FillTrace, sim_id=texts, status=st.sampled_from(list(FillStatus)), legs=st.lists(fill_legs, max_size=3),
    expected_pnl=finite, realized_pnl=finite, detail=st.none() | st.text(max_size=200),
)
opportunities = st.builds(
    Opportunity, id=st.text(min_size=1, max_size=30), cycle_id=st.text(min_size=1, max_size=60),
    exchange=exchanges, roi_net=finite, roi_gross=finite, start_asset=st.text(min_size=1, max_size=8),
    start_notional=positive, max_notional_at_min_roi=positive, best_notional=positive, best_profit=finite,
    legs=st.lists(legs, min_size=3, max_size=3),
    fees_total=positive, ts_detect=epoch_ms, ts_publish=epoch_ms, sim_id=st.none() | texts,
    fill=st.none() | traces,
)
episodes = st.builds(
    Episode, id=st.text(min_size=1, max_size=30), event=st.sampled_from(list(EpisodeEvent)), seq=counts,
    exchange=exchanges, cycle_id=st.text(min_size=1, max_size=60), start_asset=st.text(min_size=1, max_size=8),
    opened_ms=epoch_ms, ts=epoch_ms, duration_ms=counts, roi_net=finite, peak_roi_net=finite, peak_ms=epoch_ms,
    best_notional=positive, best_profit=finite, opportunities=st.integers(1, 10**9),
    first_opportunity_id=st.text(min_size=1, max_size=30), opportunity_id=st.text(min_size=1, max_size=30),
    close_reason=st.none() | st.sampled_from(list(CloseReason)),
)
fills = st.builds(
    Fill, opportunity_id=st.text(min_size=1, max_size=30), exchange=exchanges,
    cycle_id=st.text(min_size=1, max_size=60), start_asset=st.text(min_size=1, max_size=8),
    start_notional=positive, latency_ms=st.integers(0, 10**6), ts_start=epoch_ms, ts_done=epoch_ms, trace=traces,
)

VALID_MODELS: dict[Subject, st.SearchStrategy[Any]] = {
    Subject.SNAPSHOT: snapshots,
    Subject.TRADE: trades,
    Subject.HEALTH: healths,
    Subject.CONTROL: controls,
    Subject.OPPORTUNITY: opportunities,
    Subject.FILL: fills,
    Subject.EPISODE: episodes,
}
"""Valid models of every subject (tests/unit/test_fuzz.py reuses them with a larger budget)."""


def as_redis_returns(model: WireModel) -> dict[bytes, bytes]:
    """Fields exactly as redis-py hands them back: bytes keys and values."""
    return {k.encode(): v if isinstance(v, bytes) else v.encode() for k, v in encode_dict(model).items()}


@pytest.mark.parametrize("subject", list(VALID_MODELS))
def test_every_subject_round_trips_through_stream_fields(subject: Subject) -> None:
    @given(VALID_MODELS[subject])
    def round_trip(model: WireModel) -> None:
        assert decode(subject, as_redis_returns(model)) == model

    round_trip()


def test_scalars_are_plain_text_and_nested_values_compact_json() -> None:
    fields = encode_dict(samples.snapshot(book_seq=7))
    assert fields["symbol"] == "BTC-USD"
    assert fields["book_seq"] == "7"
    assert fields["source"] == "ws"
    assert fields["ts_event"] == str(samples.T0_MS + 7)
    assert fields["bids"] == b"[[60006.5,0.25,0.25],[60006.0,1.5,1.75]]"
    assert orjson.loads(fields["latency_ms"]) == {"venue_to_ingest": 3.0}


def test_absent_optional_fields_are_omitted_not_written_as_none() -> None:
    flat = encode_fields(samples.trade(trade_id=None))
    assert "trade_id" not in flat
    assert "None" not in flat


def test_unknown_version_is_a_typed_error_naming_the_version() -> None:
    fields = as_redis_returns(samples.trade()) | {b"v": b"2"}
    with pytest.raises(UnknownVersionError, match="v=2 is not supported"):
        decode(Subject.TRADE, fields)


def test_missing_version_is_an_unknown_version_error() -> None:
    fields = as_redis_returns(samples.trade())
    del fields[b"v"]
    with pytest.raises(UnknownVersionError, match="no 'v' field"):
        decode(Subject.TRADE, fields)


@pytest.mark.parametrize(
    ("document", "error", "reason"),
    [
        (b'{"v":1,', CodecError, "not valid JSON"),
        (b"[1]", CodecError, "not a JSON object"),
        (b'{"exchange":"coinbase"}', UnknownVersionError, "no 'v' field"),
        (b'{"v":"1"}', UnknownVersionError, "v='1' is not an integer"),
        (b'{"v":1.0}', UnknownVersionError, "v=1.0 is not an integer"),
        (b'{"v":2}', UnknownVersionError, "v=2 is not supported"),
        (b'{"v":1,"symbol":"btc/usd"}', CodecError, "symbol"),
    ],
)
def test_a_hot_cache_document_that_is_no_model_raises_the_codec_errors_of_stream_fields(
    document: bytes, error: type[CodecError], reason: str
) -> None:
    with pytest.raises(error) as caught:
        decode_json_as(Snapshot, document)
    assert reason in caught.value.reason


@pytest.mark.parametrize(
    ("mutation", "reason"),
    [
        ({b"bids": b"[[1,2"}, "not valid JSON"),
        ({b"symbol": b"btc/usd"}, "not canonical BASE-QUOTE"),
        ({b"ts_event": b"yesterday"}, "ts_event"),
        ({b"surprise": b"1"}, "surprise"),
        ({b"source": b"fax"}, "source"),
    ],
)
def test_invalid_entry_raises_codec_error_with_a_reason(mutation: dict[bytes, bytes], reason: str) -> None:
    fields = as_redis_returns(samples.snapshot()) | mutation
    with pytest.raises(CodecError) as caught:
        decode(Subject.SNAPSHOT, fields)
    assert reason in caught.value.reason


def test_unknown_subject_is_a_codec_error() -> None:
    with pytest.raises(CodecError, match="no model for subject"):
        decode("md.orders", {b"v": b"1"})


def test_epoch_ms_beyond_2_to_the_53_is_refused_when_the_model_is_built() -> None:
    """A nested integer the wire could not carry exactly (orjson stops at 2**64 - 1, JavaScript is exact only to
    2**53 - 1) must fail at validation, not as a TypeError from encode_fields later."""
    legs = samples.opportunity().legs
    late_leg = legs[0].model_dump() | {"ts_event": 2**53}
    with pytest.raises(ValidationError, match="less than or equal to 9007199254740991"):
        samples.opportunity(legs=[late_leg, *legs[1:]])
    latest = samples.opportunity(ts_detect=2**53 - 1)
    assert decode(Subject.OPPORTUNITY, as_redis_returns(latest)) == latest


# --- the detector's lean decode: which book changed, and nothing else -------------------------------------------


@given(snapshots)
def test_a_book_ref_names_the_same_book_as_the_full_decode(model: Snapshot) -> None:
    fields = as_redis_returns(model)
    ref = decode_book_ref(fields)
    assert (ref.exchange, ref.symbol) == (model.exchange, model.symbol)


@pytest.mark.parametrize("fields, error", [
    ({b"exchange": b"kraken", b"symbol": b"BTC-USD"}, "no 'v' field"),
    ({b"v": b"2", b"exchange": b"kraken", b"symbol": b"BTC-USD"}, "v=b'2' is not supported"),
    ({b"v": b"1", b"symbol": b"BTC-USD"}, "exchange None is not"),
    ({b"v": b"1", b"exchange": b"Kraken", b"symbol": b"BTC-USD"}, "exchange b'Kraken' is not"),
    ({b"v": b"1", b"exchange": b"kraken", b"symbol": b"btc-usd"}, "symbol b'btc-usd' is not canonical"),
    ({b"v": b"1", b"exchange": b"kraken", b"symbol": b"BTC-USD\n"}, "is not canonical"),
    ({b"v": b"1", b"exchange": b"kraken\xff", b"symbol": b"BTC-USD"}, "is not a lower-case venue name"),
], ids=["no version", "newer version", "no exchange", "upper-case exchange", "lower-case symbol",
        "trailing newline", "not ASCII"])
def test_a_book_ref_refuses_what_the_full_decode_refuses(fields: dict[bytes, bytes], error: str) -> None:
    with pytest.raises(CodecError, match=re.escape(error)):
        decode_book_ref(fields)
    with pytest.raises(CodecError):
        decode(Subject.SNAPSHOT, fields)


def test_entries_of_one_book_share_one_immutable_book_ref() -> None:
    first = decode_book_ref({b"v": b"1", b"exchange": b"kraken", b"symbol": b"ETH-BTC", b"book_seq": b"1"})
    second = decode_book_ref({b"v": b"1", b"exchange": b"kraken", b"symbol": b"ETH-BTC", b"book_seq": b"2"})

    assert first is second and (first.exchange, first.symbol) == ("kraken", "ETH-BTC")
    with pytest.raises(AttributeError):
        first.symbol = "BTC-USD"  # type: ignore[misc]


def test_a_refused_book_is_refused_again_on_every_entry() -> None:
    fields = {b"v": b"1", b"exchange": b"Kraken", b"symbol": b"BTC-USD"}
    for _ in range(2):  # only checked pairs are remembered
        with pytest.raises(CodecError, match="is not a lower-case venue name"):
            decode_book_ref(fields)
