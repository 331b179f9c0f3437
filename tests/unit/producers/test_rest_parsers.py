"""REST fallback answers → levels, including Kraken's HTTP-200 errors."""

from __future__ import annotations

import pytest

from producers.feed import Venue
from producers.rest import book_path, parse_coinbase_book, parse_kraken_depth
from producers.venues.events import VenueProtocolError

COINBASE_BOOK = (b'{"pricebook":{"product_id":"BTC-USD","bids":[{"price":"68923.66","size":"0.17189468"}],'
                 b'"asks":[{"price":"68923.67","size":"0.16987193"}],"time":"2026-04-07T00:28:59.662782Z"},'
                 b'"last":"68923.665","mid_market":"68923.665","spread_bps":"0.001450880372","spread_absolute":"0.01"}')
KRAKEN_DEPTH = (b'{"error":[],"result":{"XXBTZUSD":{"asks":[["3539.90000","0.801",1548119951]],'
                b'"bids":[["3538.90000","0.754",1548119886]]}}}')


def test_coinbase_product_book() -> None:
    bids, asks, ts = parse_coinbase_book(COINBASE_BOOK)
    assert (bids, asks) == ([("68923.66", "0.17189468")], [("68923.67", "0.16987193")])
    assert ts == 1775521739662


def test_kraken_depth_takes_the_single_result_whatever_its_key() -> None:
    bids, asks, ts = parse_kraken_depth(KRAKEN_DEPTH)
    assert (bids, asks) == ([("3538.90000", "0.754")], [("3539.90000", "0.801")])
    assert ts == 1548119951000


def test_kraken_http_200_with_an_error_list_is_a_failure() -> None:
    with pytest.raises(VenueProtocolError, match="EQuery:Unknown asset pair"):
        parse_kraken_depth(b'{"error":["EQuery:Unknown asset pair"]}')


@pytest.mark.parametrize("body", [b"", b"{}", b'{"pricebook":{"bids":[{"price":1}]}}', b"<html>"])
def test_malformed_answers_are_protocol_errors(body: bytes) -> None:
    with pytest.raises(VenueProtocolError):
        parse_coinbase_book(body)


def test_paths_use_each_venues_symbol_spelling() -> None:
    assert book_path(Venue.COINBASE, "BTC-USD", 5) == "/api/v3/brokerage/market/product_book?product_id=BTC-USD&limit=5"
    assert book_path(Venue.KRAKEN, "BTC-USD", 5) == "/0/public/Depth?pair=XBTUSD&count=5"
