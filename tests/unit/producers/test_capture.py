"""WS_CAPTURE files are the fixture format: what is written replays through --check unchanged."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from common.markets import MarketInfo
from producers.capture import CaptureFormatError, CaptureWriter, header_markets, read_capture
from producers.replay import check_capture


def test_written_capture_replays_like_the_recording_it_came_from(
    tmp_path: Path, recorded_frames: Callable[[str], list[str]]
) -> None:
    writer = CaptureWriter(tmp_path, "kraken", clock=lambda: 1618678132.0)
    writer.connected(1, "wss://ws.kraken.com")
    writer.sent(1, '{"event":"subscribe","pair":["XBT/CHF"],"subscription":{"name":"book","depth":1000}}')
    for frame in recorded_frames("kraken-v1-2021.ndjson"):
        writer.received(1, frame)
    writer.close()

    [path] = writer.paths
    summary = check_capture(path)
    assert (summary["checksum_ok"], summary["checksum_fail"], summary["books"]) == (3531, 0, 10)


def test_files_rotate_by_size_and_each_starts_with_a_header(tmp_path: Path) -> None:
    writer = CaptureWriter(tmp_path, "coinbase", rotate_bytes=300, clock=lambda: 1.0)
    writer.connected(1, "wss://x")
    for n in range(10):
        writer.received(1, f'{{"channel":"heartbeats","sequence_num":{n},"events":[]}}')
    writer.close()
    assert len(writer.paths) > 1
    for path in writer.paths:
        first = next(read_capture(path))
        assert (first.kind, first.raw["exchange"]) == ("header", "COINBASE")
    received = [r.data for p in writer.paths for r in read_capture(p) if r.kind == "recv"]
    assert len(received) == 10


def test_headers_carry_the_venues_markets_when_given_and_older_captures_read_as_having_none(tmp_path: Path) -> None:
    btc = MarketInfo("coinbase", "BTC-USD", "BTC", "USD", "BTC-USD", "0.01", "0.00000001", "0.00001", True)
    usdc = MarketInfo("coinbase", "BTC-USDC", "BTC", "USDC", "BTC-USDC", "0.01", "0.00000001", "0.00001", True,
                      alias_of="BTC-USD")
    writer = CaptureWriter(tmp_path, "coinbase", rotate_bytes=400, clock=lambda: 1.0, markets=[btc, usdc])
    writer.connected(1, "wss://x")
    for n in range(5):
        writer.received(1, f'{{"channel":"heartbeats","sequence_num":{n},"events":[]}}')
    writer.close()
    assert len(writer.paths) > 1
    for path in writer.paths:  # every rotated file replays on its own, markets included
        assert header_markets(next(read_capture(path)).raw) == [btc, usdc]
    assert header_markets({"t": "header", "exchange": "COINBASE", "format": 2}) is None


def test_a_header_whose_markets_are_not_market_records_is_a_format_error() -> None:
    with pytest.raises(CaptureFormatError, match="'markets' is not a list of market records"):
        header_markets({"t": "header", "exchange": "COINBASE", "markets": [{"symbol": "BTC-USD"}]})
