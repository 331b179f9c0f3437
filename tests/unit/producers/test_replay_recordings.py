"""`triarb replay --check` on the real recordings, against an independent rebuild of every book.

The rebuild below shares no code with producers/: stdlib json with Decimal, a dict per side and sorted() at
the end. If both agree on the final top-5 of every book, the fast book is right on real data.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from producers.replay import check_capture

Side = dict[Decimal, Decimal]


def rebuild_top5(bids: Side, asks: Side) -> dict[str, list[list[float]]]:
    def top(side: Side, reverse: bool) -> list[list[float]]:
        out, cumulative = [], Decimal(0)
        for price in sorted(side, reverse=reverse)[:5]:
            cumulative += side[price]
            out.append([float(price), float(side[price]), float(cumulative)])
        return out

    return {"bids": top(bids, True), "asks": top(asks, False)}


def assert_same_tops(summary: dict[str, Any], expected: dict[str, dict[str, list[list[float]]]]) -> None:
    """Prices and sizes exactly; cumulative sizes to float rounding (float sums vs exact Decimal sums)."""
    assert set(summary["top"]) == set(expected)
    for symbol, book in summary["top"].items():
        for side in ("bids", "asks"):
            ours, theirs = book[side], expected[symbol][side]
            assert [level[:2] for level in ours] == [level[:2] for level in theirs], (symbol, side)
            assert [level[2] for level in ours] == pytest.approx([level[2] for level in theirs], rel=1e-12)


def set_level(side: Side, price: str, size: str) -> None:
    if Decimal(size) == 0:
        side.pop(Decimal(price), None)
    else:
        side[Decimal(price)] = Decimal(size)


def frames(path: Path) -> list[Any]:
    records = [json.loads(line) for line in path.open()]
    return [json.loads(r["data"]) for r in records if r["t"] == "recv"]


def rebuild_coinbase(path: Path) -> dict[str, dict[str, list[list[float]]]]:
    books: dict[str, tuple[Side, Side]] = {}
    for message in frames(path):
        if message.get("channel") != "l2_data":
            continue
        for event in message["events"]:
            if event["type"] == "snapshot":
                books[event["product_id"]] = ({}, {})
            bids, asks = books[event["product_id"]]
            for level in event["updates"]:
                set_level(bids if level["side"] == "bid" else asks, level["price_level"], level["new_quantity"])
    return {product.replace("/", "-"): rebuild_top5(*sides) for product, sides in books.items()}


def rebuild_kraken_v1(path: Path) -> dict[str, dict[str, list[list[float]]]]:
    books: dict[str, tuple[Side, Side]] = {}
    for message in frames(path):
        if not isinstance(message, list) or not message[-2].startswith("book"):
            continue
        pair = message[-1]
        for payload in message[1:-2]:
            if "as" in payload:
                books[pair] = ({}, {})
            bids, asks = books[pair]
            for key, side in (("as", asks), ("a", asks), ("bs", bids), ("b", bids)):
                for price, size, *_ in payload.get(key, []):
                    set_level(side, price, size)
    return {pair.replace("XBT", "BTC").replace("/", "-"): rebuild_top5(*sides) for pair, sides in books.items()}


def test_kraken_v1_recording_verifies_every_checksum_and_matches_the_rebuild(fixtures_dir: Path) -> None:
    path = fixtures_dir / "kraken-v1-2021.ndjson"
    summary = check_capture(path)
    assert summary["updates"] == 3531
    assert summary["checksum_ok"] == 3531  # every update of this recording carries a checksum
    assert summary["checksum_fail"] == 0
    assert summary["parse_errors"] == summary["gaps"] == summary["crossed"] == 0
    assert summary["books"] == 10
    assert_same_tops(summary, rebuild_kraken_v1(path))
    # from the fixture README: final XMR/USD top 353.30000000 / 354.31000000
    assert summary["top"]["XMR-USD"]["bids"][0][0] == 353.3
    assert summary["top"]["XMR-USD"]["asks"][0][0] == 354.31


def test_coinbase_recording_has_no_gap_and_both_sides_match_the_rebuild(fixtures_dir: Path) -> None:
    path = fixtures_dir / "coinbase-advanced-2026.ndjson"
    summary = check_capture(path)
    assert summary["gaps"] == summary["duplicates"] == summary["parse_errors"] == summary["crossed"] == 0
    for symbol, bid_levels, ask_levels in (("BTC-USD", 18769, 27238), ("ETH-USD", 6925, 16403)):
        book = summary["top"][symbol]
        assert (book["bid_levels"], book["ask_levels"]) == (bid_levels, ask_levels)
        assert len(book["bids"]) == len(book["asks"]) == 5
    assert_same_tops(summary, rebuild_coinbase(path))
    assert (summary["top"]["BTC-USD"]["bids"][0][0], summary["top"]["BTC-USD"]["asks"][0][0]) == (65083.66, 65083.67)


def test_kraken_v2_samples_verify_all_three_checksums(fixtures_dir: Path) -> None:
    summary = check_capture(fixtures_dir / "kraken-v2-book-samples.ndjson")
    assert (summary["checksum_ok"], summary["checksum_fail"]) == (3, 0)


@pytest.mark.parametrize("name", ["kraken-v1-2021.ndjson", "coinbase-advanced-2026.ndjson"])
def test_replay_check_cli_prints_one_json_summary(fixtures_dir: Path, name: str, capsys: Any) -> None:
    from triarb.cli import main

    main(["replay", str(fixtures_dir / name), "--check"])
    summary = json.loads(capsys.readouterr().out)
    assert summary["checksum_fail"] == 0 and summary["gaps"] == 0
