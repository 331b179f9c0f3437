"""One readable line per stream entry for ``triarb tail``: what XRANGE shows, summarised for people.

Pure formatting: no I/O, so the layout is unit-tested on fixed entries.
"""

from __future__ import annotations

from datetime import UTC, datetime

from common.bus import StreamEntry
from common.bus.entries import text
from schemas import CodecError, Health, Opportunity, Snapshot, SymbolControl, Trade, decode
from schemas.base import WireModel
from schemas.streams import StreamNames


def entry_time(entry_id: str) -> str:
    """The wall-clock time Redis assigned to an entry (the ms part of its id), as UTC ``HH:MM:SS.mmm``."""
    ms = int(entry_id.split("-", 1)[0])
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%H:%M:%S.%f")[:-3]


def _top(levels: list[tuple[float, float, float]]) -> str:
    return f"{levels[0][0]:.10g} x {levels[0][1]:.6g}" if levels else "-"


def summarize(model: WireModel) -> str:
    """A one-line summary of a decoded entry, subject by subject."""
    if isinstance(model, Snapshot):
        return (
            f"{model.exchange} {model.symbol}  bid {_top(model.bids)} | ask {_top(model.asks)}"
            f"  depth {len(model.bids)}/{len(model.asks)} seq={model.book_seq} src={model.source}"
        )
    if isinstance(model, Trade):
        return f"{model.exchange} {model.symbol}  {model.side} {model.size:.6g} @ {model.price:.10g}"
    if isinstance(model, Health):
        detail = f"  ({model.detail})" if model.detail else ""
        return (
            f"{model.exchange}/{model.channel} {model.status}  reconnects={model.reconnects} "
            f"errors={model.errors} gaps={model.gaps} checksum_failures={model.checksum_failures}{detail}"
        )
    if isinstance(model, SymbolControl):
        venues = "; ".join(f"{venue}: {', '.join(symbols)}" for venue, symbols in model.symbols.items())
        return f"{model.source}/{model.issued_by} {model.op}  {venues}"
    if isinstance(model, Opportunity):
        path = " > ".join(f"{leg.side} {leg.symbol}" for leg in model.legs)
        return (
            f"{model.exchange} {path}  net {model.roi_net * 1e4:+.2f} bps (gross {model.roi_gross * 1e4:+.2f})"
            f"  exec {model.max_notional_at_min_roi:.6g} {model.start_asset}"
        )
    return repr(model)


def raw_fields(entry: StreamEntry) -> str:
    return "  ".join(f"{text(k)}={v.decode(errors='backslashreplace')}" for k, v in entry.fields.items())


def format_entry(names: StreamNames, entry: StreamEntry, *, raw: bool = False) -> str:
    """``<id> <time> <stream>  <summary>``; entries that do not decode are shown raw and flagged."""
    head = f"{entry.id:<17} {entry_time(entry.id)}  {entry.stream}"
    if raw:
        return f"{head}  {raw_fields(entry)}"
    try:
        subject = names.subject_of(entry.stream)
    except ValueError:
        return f"{head}  {raw_fields(entry)}"
    try:
        return f"{head}  {summarize(decode(subject, entry.fields))}"
    except CodecError as exc:
        return f"{head}  INVALID ({exc.reason})  {raw_fields(entry)}"
