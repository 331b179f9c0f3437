"""`triarb tail` lines: id, Redis time, stream, then a summary a person can scan."""

from __future__ import annotations

from common.bus import StreamEntry
from schemas.codec import encode_dict
from schemas.streams import StreamNames
from tests import samples
from triarb.tail import entry_time, format_entry

NAMES = StreamNames()
ENTRY_ID = "1767225600123-0"  # 2026-01-01T00:00:00.123Z


def entry(stream: str, model: object | None = None, /, **fields: str) -> StreamEntry:
    data = encode_dict(model) if model is not None else fields  # type: ignore[arg-type]
    encoded = {k.encode(): v if isinstance(v, bytes) else v.encode() for k, v in data.items()}
    return StreamEntry(stream, ENTRY_ID, encoded)


def test_entry_time_is_the_utc_millisecond_part_of_the_id() -> None:
    assert entry_time(ENTRY_ID) == "00:00:00.123"


def test_snapshot_line_shows_best_bid_and_ask_with_sizes() -> None:
    line = format_entry(NAMES, entry("md.snapshot", samples.snapshot(book_seq=2)))
    # sample book: mid 60002, best bid 60001.5 x 0.25, best ask 60002.5 x 0.4
    assert line == (
        "1767225600123-0   00:00:00.123  md.snapshot  coinbase BTC-USD  bid 60001.5 x 0.25 | ask 60002.5 x 0.4"
        "  depth 2/2 seq=2 src=ws"
    )


def test_opportunity_line_shows_path_and_roi_in_bps() -> None:
    line = format_entry(NAMES, entry("strategy.opportunity", samples.opportunity()))
    # roi_net 0.0012 = +12.00 bps, roi_gross 0.0036 = +36.00 bps
    assert "buy BTC-USD > buy ETH-BTC > sell ETH-USD  net +12.00 bps (gross +36.00)  exec 450 USD" in line


def test_invalid_entry_is_flagged_with_the_reason_and_shown_raw() -> None:
    line = format_entry(NAMES, entry("md.trade", v="9", price="1"))
    assert "INVALID (Trade: v=9 is not supported" in line
    assert "v=9  price=1" in line


def test_deadletter_entries_are_shown_as_raw_fields() -> None:
    line = format_entry(NAMES, entry("deadletter", stream="md.snapshot", reason="codec"))
    assert line.endswith("deadletter  stream=md.snapshot  reason=codec")
