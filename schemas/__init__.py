"""Wire contracts of triarb: one pydantic model per stream subject, the codec, and stream names.

Number policy (decided once, here): prices, sizes and ROI travel on the bus as float64. Every venue price
and size we handle has at most 15 significant digits, so a float64 round-trips its decimal text exactly
(Python's repr is the shortest round-trip form). Work that needs the venue's exact text (Kraken checksums,
book keys) or exact rounding (order sizes to increments) happens before conversion or in integer ticks.

Timestamps are integer milliseconds since the Unix epoch in every field named ``ts_*`` or ``*_ms``.
"""

from schemas.codec import CodecError, UnknownVersionError, decode, encode_fields
from schemas.control import SymbolControl
from schemas.episode import CloseReason, Episode, EpisodeEvent, episode_id_for
from schemas.health import Channel, FeedStatus, Health
from schemas.market import Level, Side, Snapshot, Source, Trade, canonical_symbol
from schemas.opportunity import Fill, FillLeg, FillTrace, Leg, Opportunity, sim_id_for
from schemas.streams import StreamNames, Subject

__all__ = [
    "Channel",
    "CloseReason",
    "CodecError",
    "Episode",
    "EpisodeEvent",
    "FeedStatus",
    "Fill",
    "FillLeg",
    "FillTrace",
    "Health",
    "Leg",
    "Level",
    "Opportunity",
    "Side",
    "Snapshot",
    "Source",
    "StreamNames",
    "Subject",
    "SymbolControl",
    "Trade",
    "UnknownVersionError",
    "canonical_symbol",
    "decode",
    "encode_fields",
    "episode_id_for",
    "sim_id_for",
]
