"""``triarb status``: the stack on one terminal screen, read from Redis (no dashboard needed).

Feeds (status, last message, reconnects, gaps, checksum failures), symbols held per venue, each consumer
group's pending and lag, the newest episodes, and the paper broker's simulated PnL over its recent fills.
:func:`collect` reads (the dashboard's own read model, so both always agree); :func:`render` is pure.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis

from common.bus.fanout import decode_entry
from common.config import Settings
from dashboard.app import stack_status
from dashboard.events import episode_rows, newest_entries
from schemas import Fill, Subject

EPISODES_SHOWN = 10
FILLS_SUMMED = 1_000


async def collect(reader: Redis, settings: Settings, *, episodes: int = EPISODES_SHOWN) -> dict[str, Any]:
    status = await stack_status(reader, settings)
    status["episodes"] = await episode_rows(reader, settings.names, episodes)
    stream = settings.names.stream(Subject.FILL)
    status["fills"] = [
        {"start_asset": delivery.model.start_asset, "realized_pnl": delivery.model.trace.realized_pnl}
        async for entry in newest_entries(reader, stream, FILLS_SUMMED)
        if (delivery := decode_entry(settings.names, entry)) is not None and isinstance(delivery.model, Fill)]
    return status


def render(status: Mapping[str, Any]) -> str:
    """The screen, as text; ``status`` as :func:`collect` returns it."""
    now_ms = int(status["ts"])
    lines = [f"triarb status  {_clock(now_ms)} UTC", "", "FEEDS"]
    feeds = sorted(status["feeds"], key=lambda f: (f["exchange"], f["channel"]))
    for feed in feeds:
        lag = "never" if feed.get("lag_ms") is None else f"{_duration(feed['lag_ms'])} ago"
        lines.append(f"  {feed['exchange']:<9} {feed['channel']:<4} {feed['status']:<10} last msg {lag:<10} "
                     f"symbols {feed.get('symbol_count', 0):<4} reconnects {feed['reconnects']:<4} "
                     f"gaps {feed['gaps']:<4} checksum failures {feed['checksum_failures']}")
    if not feeds:
        lines.append("  no health records yet (is a producer running?)")
    lines += ["", "SYMBOLS HELD"]
    for venue, sets in sorted(status["symbols"].items()):
        held = sets["holds"]
        lines.append(f"  {venue:<9} {len(held):>3}  {_list(held)}")
    lines += ["", "CONSUMER GROUPS"]
    groups = [(stream, group) for stream, info in sorted(status["streams"].items()) for group in info["groups"]]
    for stream, group in groups:
        lag = "?" if group.get("lag") is None else group["lag"]
        lines.append(f"  {group['group']:<10} on {stream:<22} pending {group['pending']:<6} lag {lag}")
    if not groups:
        lines.append("  none yet")
    lines += ["", f"EPISODES (newest {len(status['episodes'])})"]
    for row in status["episodes"]:
        closed = row["event"] == "close"
        state = f"closed ({row.get('close_reason')})" if closed else "open"
        duration = row["duration_ms"] if closed else max(0, now_ms - row["opened_ms"])
        paper = row.get("paper") or {}
        result = paper.get("result")
        pnl = "pending" if result is None else f"{result['status']} {result['realized_pnl']:+.4g}"
        lines.append(f"  {_clock(row['opened_ms'])}  {row['cycle_id']:<48} {state:<22} "
                     f"{_duration(duration):>6}  peak {row['peak_roi_net'] * 1e4:+.1f} bps  "
                     f"best {row['best_notional']:.6g} {row['start_asset']} → {row['best_profit']:+.4g}  "
                     f"paper {pnl}")
    if not status["episodes"]:
        lines.append("  none yet")
    lines += ["", f"PAPER PnL (simulated, newest {len(status['fills'])} fills)"]
    for asset, (count, pnl) in sorted(paper_totals(status["fills"]).items()):
        lines.append(f"  {asset:<6} {pnl:+.6g} over {count} fills")
    if not status["fills"]:
        lines.append("  no fills yet")
    return "\n".join(lines)


def paper_totals(fills: Sequence[Mapping[str, Any]]) -> dict[str, tuple[int, float]]:
    """Realized paper PnL per start asset (fills carry it in the start asset of their cycle)."""
    totals: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
    for fill in fills:
        asset = str(fill["start_asset"])
        totals[asset][0] += 1
        totals[asset][1] += float(fill["realized_pnl"])
    return {asset: (int(count), pnl) for asset, (count, pnl) in totals.items()}


def _clock(epoch_ms: int) -> str:
    return datetime.fromtimestamp(epoch_ms / 1000, UTC).strftime("%H:%M:%S")


def _duration(ms: float) -> str:
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{seconds / 60:.1f}m"
    return f"{seconds / 3600:.1f}h"


def _list(symbols: Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(symbols[:limit])
    return shown + (f", … (+{len(symbols) - limit})" if len(symbols) > limit else "")
