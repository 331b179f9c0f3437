"""Small, valid wire models for tests; keyword overrides say what a test cares about."""

from __future__ import annotations

from typing import Any

from schemas import Episode, EpisodeEvent, Fill, FillTrace, Health, Leg, Opportunity, Snapshot, SymbolControl, Trade
from schemas.health import Channel, FeedStatus
from schemas.market import Side
from schemas.opportunity import FillStatus

T0_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def snapshot(symbol: str = "BTC-USD", book_seq: int = 1, **overrides: Any) -> Snapshot:
    mid = 60_000.0 + book_seq
    fields: dict[str, Any] = {
        "exchange": "coinbase",
        "symbol": symbol,
        "ts_event": T0_MS + book_seq,
        "ts_ingest": T0_MS + book_seq + 3,
        "bids": [(mid - 0.5, 0.25, 0.25), (mid - 1.0, 1.5, 1.75)],
        "asks": [(mid + 0.5, 0.4, 0.4), (mid + 1.0, 2.0, 2.4)],
        "latency_ms": {"venue_to_ingest": 3.0},
        "book_seq": book_seq,
        "venue_seq": 1000 + book_seq,
    }
    return Snapshot(**(fields | overrides))


def trade(**overrides: Any) -> Trade:
    fields: dict[str, Any] = {
        "exchange": "kraken", "symbol": "ETH-USD", "price": 3000.5, "size": 0.1, "side": Side.BUY,
        "ts_event": T0_MS, "ts_ingest": T0_MS + 2, "trade_id": "t-1",
    }
    return Trade(**(fields | overrides))


def health(**overrides: Any) -> Health:
    fields: dict[str, Any] = {
        "exchange": "kraken", "channel": Channel.WS, "status": FeedStatus.UP, "ts": T0_MS,
        "last_msg_ms": T0_MS, "symbol_count": 1, "symbols_digest": "0123456789abcdef",
    }
    return Health(**(fields | overrides))


def control(**overrides: Any) -> SymbolControl:
    fields: dict[str, Any] = {"symbols": {"coinbase": ["BTC-USD", "ETH-USD"]}, "ts": T0_MS}
    return SymbolControl(**(fields | overrides))


def opportunity(**overrides: Any) -> Opportunity:
    legs = [
        Leg(symbol="BTC-USD", side=Side.BUY, price=60_000.0, size=0.01, fee=0.0000012, ts_event=T0_MS),
        Leg(symbol="ETH-BTC", side=Side.BUY, price=0.05, size=0.2, fee=0.00024, ts_event=T0_MS),
        Leg(symbol="ETH-USD", side=Side.SELL, price=3010.0, size=0.2, fee=0.72, ts_event=T0_MS),
    ]
    fields: dict[str, Any] = {
        "id": "opp-1", "cycle_id": "coinbase:BTC-USD:buy|ETH-BTC:buy|ETH-USD:sell", "exchange": "coinbase",
        "roi_net": 0.0012, "roi_gross": 0.0036, "start_asset": "USD", "start_notional": 600.0,
        "max_notional_at_min_roi": 450.0, "best_notional": 400.0, "best_profit": 0.5, "legs": legs,
        "fees_total": 1.44, "ts_detect": T0_MS + 5,
        "ts_publish": T0_MS + 6,
    }
    return Opportunity(**(fields | overrides))


def fill(**overrides: Any) -> Fill:
    trace = FillTrace(sim_id="0123456789abcdef", status=FillStatus.FILLED, legs=[], expected_pnl=0.72,
                      realized_pnl=0.5)
    fields: dict[str, Any] = {
        "opportunity_id": "opp-1", "exchange": "coinbase", "cycle_id": "coinbase:BTC-USD:buy|ETH-BTC:buy|ETH-USD:sell",
        "start_asset": "USD", "start_notional": 600.0, "latency_ms": 50, "ts_start": T0_MS + 6,
        "ts_done": T0_MS + 160, "trace": trace,
    }
    return Fill(**(fields | overrides))


def episode(**overrides: Any) -> Episode:
    fields: dict[str, Any] = {
        "id": "ep-1", "event": EpisodeEvent.OPEN, "seq": 0, "exchange": "coinbase",
        "cycle_id": "coinbase:BTC-USD:buy|ETH-BTC:buy|ETH-USD:sell", "start_asset": "USD", "opened_ms": T0_MS + 5,
        "ts": T0_MS + 5, "duration_ms": 0, "roi_net": 0.0012, "peak_roi_net": 0.0012, "peak_ms": T0_MS + 5,
        "best_notional": 400.0, "best_profit": 0.5, "opportunities": 1, "first_opportunity_id": "opp-1",
        "opportunity_id": "opp-1",
    }
    return Episode(**(fields | overrides))
