"""Stream and key names in one place. Every name takes an optional prefix so deployments can share a Redis.

The ACL rules in ``redis.conf`` are written for the empty prefix; a prefixed deployment adjusts them.
For Redis Cluster, a prefix such as ``{coinbase}:`` puts a venue's streams and keys in one hash slot.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Subject(StrEnum):
    """The subjects, named by their stream (without prefix)."""

    SNAPSHOT = "md.snapshot"
    TRADE = "md.trade"
    HEALTH = "md.health"
    CONTROL = "strategy.ctrl.symbols"
    OPPORTUNITY = "strategy.opportunity"
    FILL = "strategy.fill"
    EPISODE = "strategy.episode"


DEADLETTER = "deadletter"
BOOK_KEY_PREFIX = "md:book:"
MARKETS_KEY_PREFIX = "md:markets:"
EPISODES_KEY_PREFIX = "strategy:episodes:"


@dataclass(frozen=True, slots=True)
class StreamNames:
    """Resolves subjects and hot-cache keys to Redis key names under ``prefix``."""

    prefix: str = ""

    def stream(self, subject: Subject | str) -> str:
        return f"{self.prefix}{Subject(subject).value}"

    @property
    def deadletter(self) -> str:
        return f"{self.prefix}{DEADLETTER}"

    def book_key(self, exchange: str, symbol: str) -> str:
        """Hot-cache key holding the latest snapshot of one book (a string: the snapshot as one JSON object)."""
        return f"{self.prefix}{BOOK_KEY_PREFIX}{exchange}:{symbol}"

    def markets_key(self, exchange: str) -> str:
        """The set of canonical symbols ``exchange``'s producer can hold (its discovered markets): what
        control requests and consumers check symbols against. Written by that producer at start."""
        return f"{self.prefix}{MARKETS_KEY_PREFIX}{exchange}"

    def episodes_key(self, exchange: str) -> str:
        """The episode state of every cycle of ``exchange`` that ever paid (a hash: cycle id → state), which
        the detector's workers change only by compare-and-set (see ``consumers/detector/episode_store.py``)."""
        return f"{self.prefix}{EPISODES_KEY_PREFIX}{exchange}"

    def seen_key(self, subject: Subject | str, entry_id: str) -> str:
        """Marks an id of ``subject`` as written (opportunities, fills): the publish script appends an entry
        only if it creates this key, so an id reaches its stream once however many workers report it."""
        return f"{self.prefix}seen:{Subject(subject).value}:{entry_id}"

    def subject_of(self, stream: str) -> Subject:
        """Inverse of :meth:`stream`; raises ``ValueError`` for a key that is not one of ours."""
        if not stream.startswith(self.prefix):
            raise ValueError(f"stream {stream!r} does not carry the prefix {self.prefix!r}")
        return Subject(stream[len(self.prefix):])
