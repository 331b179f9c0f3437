"""``triarb status`` renders what the read model collected: one screen, every section, nothing invented."""

from __future__ import annotations

from typing import Any

from triarb.status import paper_totals, render

NOW_MS = 1_767_225_700_000


def status(**overrides: Any) -> dict[str, Any]:
    episode = {"event": "open", "opened_ms": NOW_MS - 2_500, "duration_ms": 0, "cycle_id": "kraken:A", "seq": 0,
               "close_reason": None, "peak_roi_net": 0.0123, "best_notional": 1_500.0, "start_asset": "USD",
               "best_profit": 12.5, "paper": {"sim_id": "s1", "result": None}}
    closed = episode | {"event": "close", "duration_ms": 3_000, "close_reason": "stale",
                        "paper": {"sim_id": "s0", "result": {"status": "filled", "realized_pnl": 1.25}}}
    base: dict[str, Any] = {
        "ts": NOW_MS,
        "feeds": [{"exchange": "kraken", "channel": "ws", "status": "up", "lag_ms": 400, "symbol_count": 3,
                   "reconnects": 1, "gaps": 0, "checksum_failures": 2}],
        "symbols": {"kraken": {"holds": ["BTC-USD", "ETH-USD", "ETH-BTC"]}},
        "streams": {"md.snapshot": {"length": 9, "groups": [{"group": "detector", "pending": 4, "lag": 17}]}},
        "episodes": [episode, closed],
        "fills": [{"start_asset": "USD", "realized_pnl": 1.25}, {"start_asset": "USD", "realized_pnl": -0.5},
                  {"start_asset": "BTC", "realized_pnl": 0.0001}],
    }
    return base | overrides


def test_every_section_shows_what_was_collected() -> None:
    screen = render(status())
    assert "kraken    ws   up         last msg 0.4s ago" in screen and "checksum failures 2" in screen
    assert "kraken      3  BTC-USD, ETH-USD, ETH-BTC" in screen
    assert "detector   on md.snapshot            pending 4      lag 17" in screen
    [open_row, closed_row] = [line for line in screen.splitlines() if "kraken:A" in line]
    assert "open" in open_row and "2.5s" in open_row and "paper pending" in open_row  # ticks from opened_ms
    assert "closed (stale)" in closed_row and "3.0s" in closed_row and "paper filled +1.25" in closed_row
    assert "peak +123.0 bps" in open_row and "best 1500 USD → +12.5" in open_row
    assert "USD    +0.75 over 2 fills" in screen and "BTC    +0.0001 over 1 fills" in screen


def test_an_empty_stack_says_so_instead_of_printing_nothing() -> None:
    screen = render(status(feeds=[], symbols={}, streams={}, episodes=[], fills=[]))
    for hint in ("no health records yet", "CONSUMER GROUPS\n  none yet", "EPISODES (newest 0)\n  none yet",
                 "no fills yet"):
        assert hint in screen


def test_paper_pnl_is_summed_per_start_asset() -> None:
    assert paper_totals([{"start_asset": "EUR", "realized_pnl": 2.0}, {"start_asset": "EUR", "realized_pnl": 1.0}]) \
        == {"EUR": (2, 3.0)}
