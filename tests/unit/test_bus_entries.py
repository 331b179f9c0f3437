"""The group worker's own parse of XREADGROUP replies gives what redis-py's parse gives, in RESP2 and RESP3."""

from __future__ import annotations

from redis._parsers.helpers import parse_xread

from common.bus.entries import StreamEntry, parse_raw_stream_reply, parse_stream_reply

SNAPSHOT = [b"v", b"1", b"exchange", b"kraken", b"symbol", b"ETH-BTC"]
TRADE = [b"v", b"1", b"exchange", b"kraken", b"symbol", b"BTC-USD", b"price", b"60000.5"]


def test_a_resp2_reply_becomes_entries_in_reply_order_with_fields_as_a_dict() -> None:
    reply = [[b"md.snapshot", [[b"1-0", SNAPSHOT], [b"1-1", SNAPSHOT]]], [b"md.trade", [[b"2-0", TRADE]]]]

    assert parse_raw_stream_reply(reply) == [
        StreamEntry("md.snapshot", "1-0", {b"v": b"1", b"exchange": b"kraken", b"symbol": b"ETH-BTC"}),
        StreamEntry("md.snapshot", "1-1", {b"v": b"1", b"exchange": b"kraken", b"symbol": b"ETH-BTC"}),
        StreamEntry("md.trade", "2-0", {b"v": b"1", b"exchange": b"kraken", b"symbol": b"BTC-USD",
                                        b"price": b"60000.5"}),
    ]
    assert parse_raw_stream_reply(reply) == parse_stream_reply(parse_xread(reply))


def test_a_resp3_reply_maps_streams_to_the_same_entries() -> None:
    resp2 = [[b"md.snapshot", [[b"1-0", SNAPSHOT]]], [b"md.trade", [[b"2-0", TRADE]]]]
    resp3 = {b"md.snapshot": [[b"1-0", SNAPSHOT]], b"md.trade": [[b"2-0", TRADE]]}

    assert parse_raw_stream_reply(resp3) == parse_raw_stream_reply(resp2)


def test_entries_trimmed_away_while_pending_are_skipped_and_no_reply_is_no_entries() -> None:
    reply = [[b"md.snapshot", [[b"1-0", None], [b"1-1", SNAPSHOT]]]]

    assert [entry.id for entry in parse_raw_stream_reply(reply)] == ["1-1"]
    assert parse_raw_stream_reply(None) == []
    assert parse_raw_stream_reply([]) == []
