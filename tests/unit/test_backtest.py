"""`triarb backtest`: the planted mispricings of the bundled demo sessions, deterministically; each venue's market
list from --markets, the capture header or Kraken instrument precisions (and a warning when it assumes one);
book versions numbered as the producer numbers them."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from common.config import DetectorSettings
from common.markets import MarketInfo, save_markets
from producers.capture import CaptureWriter, read_capture
from producers.feed import Venue
from producers.simulators.demo import DEMO_DIR
from triarb.backtest import backtest_markets, read_capture_file, replay_snapshots, run_backtest, write_ndjson

COINBASE_DEMO, KRAKEN_DEMO = DEMO_DIR / "coinbase-demo.ndjson", DEMO_DIR / "kraken-demo.ndjson"
SESSIONS = [COINBASE_DEMO, KRAKEN_DEMO]
COINBASE_SYMBOLS = ["BTC-USD", "BTC-USDT", "ETH-BTC", "ETH-USD", "ETH-USDT", "SOL-BTC", "SOL-ETH", "SOL-USD",
                    "USDT-USD"]


def planted() -> list[tuple[str, dict[str, int]]]:
    windows = []
    for path in SESSIONS:
        header = orjson.loads(path.read_bytes().split(b"\n", 1)[0])
        windows += [(header["exchange"].lower(), m) for m in header["mispricings"]]
    return windows


def test_every_planted_mispricing_is_found_with_roi_notional_and_a_fill() -> None:
    opportunities = run_backtest(SESSIONS, DetectorSettings())
    for venue, window in planted():
        hits = [o for o in opportunities if o.exchange == venue and "ETH-BTC" in o.cycle_id
                and window["start_ms"] <= o.ts_detect < window["end_ms"]]
        assert hits, (venue, window)
        for hit in hits:
            assert hit.roi_net > 0 and hit.max_notional_at_min_roi > 0
            assert hit.fill is not None and hit.fill.status == "filled" and len(hit.fill.legs) == 3
    # and nothing outside the planted windows: the generated markets are otherwise consistent
    for opportunity in opportunities:
        assert any(v == opportunity.exchange and w["start_ms"] <= opportunity.ts_detect < w["end_ms"]
                   for v, w in planted()), opportunity.cycle_id


def test_two_runs_write_byte_identical_output(tmp_path: Path) -> None:
    for name in ("a.ndjson", "b.ndjson"):
        write_ndjson(run_backtest(SESSIONS, DetectorSettings()), tmp_path / name)
    assert (tmp_path / "a.ndjson").read_bytes() == (tmp_path / "b.ndjson").read_bytes()
    assert (tmp_path / "a.ndjson").stat().st_size > 0


def test_backtest_reads_detector_settings_from_a_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from triarb.cli import main

    config = tmp_path / "strict.toml"
    config.write_text("[detector]\nmin_roi = 0.5\n")  # 50 %: nothing in the demo clears it
    monkeypatch.setenv("TRIARB_CONFIG", str(config))  # --config sets it; monkeypatch removes it afterwards
    out = tmp_path / "none.ndjson"
    main(["--config", str(config), "backtest", *map(str, SESSIONS), "--out", str(out), "--quiet"])
    assert out.read_bytes() == b""


def test_the_live_broker_refuses_to_exist() -> None:
    from consumers.paper import LiveBroker, LiveTradingDisabled

    with pytest.raises(LiveTradingDisabled, match="not available in triarb v1"):
        LiveBroker()


# --- markets ------------------------------------------------------------------------------------------


def coinbase_markets(eth_btc_min_size: str = "0.00001") -> list[MarketInfo]:
    """The demo's Coinbase markets as discovery would list them: 0.01 USD-ish price, 1e-8 size increments."""
    return [MarketInfo("coinbase", s, *s.split("-"), s, "0.01", "0.00000001",
                       eth_btc_min_size if s == "ETH-BTC" else "0.00001", True) for s in COINBASE_SYMBOLS]


def coinbase_capture_with_markets(directory: Path, markets: list[MarketInfo]) -> Path:
    """The Coinbase demo session written again by the WS_CAPTURE writer, its header carrying ``markets``."""
    now = [0.0]
    return rewrite_coinbase_demo(CaptureWriter(directory, "coinbase", clock=lambda: now[0], markets=markets), now)


def rewrite_coinbase_demo(writer: CaptureWriter, now: list[float]) -> Path:
    for record in read_capture(COINBASE_DEMO):
        now[0] = record.ts or 0.0
        if record.kind == "connect":
            writer.connected(1, record.raw.get("addr") or record.data or "")
        elif record.kind == "send" and record.data is not None:
            writer.sent(1, record.data)
        elif record.kind == "recv" and record.data is not None:
            writer.received(1, record.data)
    writer.close()
    return writer.paths[0]


def test_without_a_market_list_it_assumes_fine_increments_and_says_so_naming_the_venue() -> None:
    warnings: list[str] = []
    markets = backtest_markets([read_capture_file(COINBASE_DEMO)], DetectorSettings(), {}, warnings.append)
    assert [(m.symbol, m.size_increment, m.min_size) for m in markets[Venue.COINBASE]] == [
        (s, 1e-8, 0.0) for s in COINBASE_SYMBOLS]
    [warning] = warnings
    assert warning.startswith("coinbase: no market list for its 9 captured markets")
    assert "overstates what is executable" in warning


def test_kraken_increments_come_from_the_header_instrument_precisions_and_unknown_minimums_are_flagged() -> None:
    warnings: list[str] = []
    markets = backtest_markets([read_capture_file(KRAKEN_DEMO)], DetectorSettings(), {}, warnings.append)
    by_symbol = {m.symbol: m for m in markets[Venue.KRAKEN]}
    assert len(by_symbol) == 12
    # header "instruments": SOL/USD qty_precision 6, USDT/USD 2, BTC/USD 8 → 1e-6, 1e-2, 1e-8; no minimums there
    assert (by_symbol["SOL-USD"].size_increment, by_symbol["USDT-USD"].size_increment,
            by_symbol["BTC-USD"].size_increment) == (1e-6, 0.01, 1e-8)
    assert all(m.min_size == 0.0 and m.taker_fee == 0.004 for m in by_symbol.values())
    [warning] = warnings
    assert warning.startswith("kraken: 12 markets: size increments from the capture header's instrument precisions")
    assert "minimum sizes unknown" in warning


def test_markets_in_a_captures_header_are_read_back_and_used_without_a_warning(tmp_path: Path) -> None:
    listed = coinbase_markets()
    capture = coinbase_capture_with_markets(tmp_path, listed)
    warnings: list[str] = []
    markets = backtest_markets([read_capture_file(capture)], DetectorSettings(), {}, warnings.append)
    assert warnings == []
    assert [(m.symbol, m.min_size) for m in markets[Venue.COINBASE]] == [(s, 0.00001) for s in COINBASE_SYMBOLS]


def test_a_ws_capture_carries_the_discovery_cache_so_its_backtest_assumes_nothing(tmp_path: Path) -> None:
    from common.config import Settings
    from common.markets import cache_path
    from triarb.stack import capture_writer

    settings = Settings(var_dir=tmp_path / "var", ws_capture=True)
    save_markets(cache_path(settings.var_dir, "coinbase"), coinbase_markets())
    writer = capture_writer(settings, Venue.COINBASE)
    assert writer is not None
    capture = rewrite_coinbase_demo(writer, [0.0])
    warnings: list[str] = []
    markets = backtest_markets([read_capture_file(capture)], DetectorSettings(), {}, warnings.append)
    assert warnings == []
    assert {m.symbol for m in markets[Venue.COINBASE]} == set(COINBASE_SYMBOLS)


def test_a_coarser_market_list_removes_what_only_the_assumed_increments_made_executable(tmp_path: Path) -> None:
    assumed = run_backtest([COINBASE_DEMO], DetectorSettings(), warn=lambda _: None)
    assert any("ETH-BTC" in o.cycle_id for o in assumed)
    # the planted ETH-BTC books hold a few ETH per level: a 1,000 ETH minimum makes every cycle through it
    # unexecutable, whether the list comes from the capture header or from --markets
    strict = coinbase_markets(eth_btc_min_size="1000")
    from_header = run_backtest([coinbase_capture_with_markets(tmp_path, strict)], DetectorSettings())
    from_file = run_backtest([COINBASE_DEMO], DetectorSettings(), markets={"coinbase": strict})
    assert not any("ETH-BTC" in o.cycle_id for o in from_header + from_file)


def test_the_markets_file_wins_over_the_capture_header(tmp_path: Path) -> None:
    capture = coinbase_capture_with_markets(tmp_path, coinbase_markets(eth_btc_min_size="1000"))
    markets = backtest_markets([read_capture_file(capture)], DetectorSettings(), {"coinbase": coinbase_markets()})
    assert {m.symbol: m.min_size for m in markets[Venue.COINBASE]}["ETH-BTC"] == 0.00001


def test_a_header_listing_another_venues_markets_is_refused(tmp_path: Path) -> None:
    wrong = [MarketInfo("kraken", "BTC-USD", "BTC", "USD", "XBT/USD", "0.1", "0.00000001", "0.0001", True)]
    capture = coinbase_capture_with_markets(tmp_path, wrong)
    with pytest.raises(ValueError, match="a coinbase capture header lists markets of kraken"):
        run_backtest([capture], DetectorSettings())


def test_cli_reads_markets_files_and_warns_on_stderr_only_where_it_assumes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from triarb.cli import main

    save_markets(tmp_path / "coinbase.json", coinbase_markets())
    out = tmp_path / "out.ndjson"
    main(["backtest", *map(str, SESSIONS), "--markets", str(tmp_path / "coinbase.json"), "--out", str(out),
          "--quiet"])
    stderr = capsys.readouterr().err
    assert "warning: kraken: 12 markets" in stderr
    assert "coinbase" not in stderr
    assert out.stat().st_size > 0


def test_cli_refuses_a_markets_file_that_is_not_a_market_list(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from triarb.cli import main

    (tmp_path / "bad.json").write_text('{"BTC-USD": 0.01}')
    with pytest.raises(SystemExit) as exited:
        main(["backtest", str(COINBASE_DEMO), "--markets", str(tmp_path / "bad.json"), "--out", str(tmp_path / "o")])
    assert exited.value.code == 1
    assert "bad.json: not a market list as triarb discovery writes it" in capsys.readouterr().err


# --- book versions ------------------------------------------------------------------------------------


def l2_frame(sequence: int, kind: str, bid: str, ask: str, second: int) -> str:
    stamp = f"2026-01-01T00:00:{second:02d}.000000Z"
    levels = [{"side": "bid", "event_time": stamp, "price_level": bid, "new_quantity": "1"},
              {"side": "offer", "event_time": stamp, "price_level": ask, "new_quantity": "1"}]
    return orjson.dumps({"channel": "l2_data", "timestamp": stamp, "sequence_num": sequence,
                         "events": [{"type": kind, "product_id": "BTC-USD", "updates": levels}]}).decode()


def test_book_versions_continue_across_a_reconnect_while_the_books_are_rebuilt(tmp_path: Path) -> None:
    """As the producer: a new connection rebuilds every book from a fresh snapshot, but book_seq keeps counting
    (the hot cache and opportunity ids must never see a version number twice)."""
    t0 = 1767225600.0
    records = [
        {"t": "header", "exchange": "COINBASE", "format": 2},
        {"t": "connect", "conn": "coinbase.ws.1", "ts": t0, "addr": "wss://x"},
        {"t": "recv", "conn": "coinbase.ws.1", "ts": t0 + 1, "data": l2_frame(0, "snapshot", "100", "101", 1)},
        {"t": "recv", "conn": "coinbase.ws.1", "ts": t0 + 2, "data": l2_frame(1, "update", "100.5", "101", 2)},
        {"t": "connect", "conn": "coinbase.ws.2", "ts": t0 + 3, "addr": "wss://x"},
        # before the new connection's snapshot: no book to apply it to, so nothing is published
        {"t": "recv", "conn": "coinbase.ws.2", "ts": t0 + 4, "data": l2_frame(0, "update", "99", "101", 4)},
        {"t": "recv", "conn": "coinbase.ws.2", "ts": t0 + 5, "data": l2_frame(1, "snapshot", "98", "102", 5)},
        {"t": "recv", "conn": "coinbase.ws.2", "ts": t0 + 6, "data": l2_frame(2, "update", "98.5", "102", 6)},
    ]
    capture = tmp_path / "reconnect.ndjson"
    capture.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    snapshots = list(replay_snapshots([read_capture_file(capture)]))
    assert [(s.book_seq, s.ts_event, s.ts_ingest, s.bids[0][0]) for s in snapshots] == [
        (1, 1767225601000, 1767225601000, 100.0), (2, 1767225602000, 1767225602000, 100.5),
        (3, 1767225605000, 1767225605000, 98.0), (4, 1767225606000, 1767225606000, 98.5)]
    # the rebuilt book holds only the new snapshot's levels, not the 100/100.5 bids of the first connection
    assert [level[0] for level in snapshots[2].bids] == [98.0]
