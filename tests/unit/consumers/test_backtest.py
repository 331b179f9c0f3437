"""`triarb backtest` on the bundled demo session finds exactly the planted mispricings, deterministically."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from common.config import DetectorSettings
from consumers.backtest import run_backtest, write_ndjson
from producers.demo import DEMO_DIR

SESSIONS = [DEMO_DIR / "coinbase-demo.ndjson", DEMO_DIR / "kraken-demo.ndjson"]


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
            assert hit.roi_net > 0 and hit.executable_notional > 0
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
