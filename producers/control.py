"""A producer's side of the control plane: which symbols its venue should hold, from ``strategy.ctrl.symbols``.

At start the producer folds the whole retained control stream (oldest first) into a :class:`SymbolState`
whose user default is its configured symbols, then follows new entries. An entry is applied only if it
decodes and every symbol it names for this venue is in the venue's catalog (its discovered markets);
otherwise it changes nothing and, when it arrives live, is dead-lettered with the reason. Entries that
name only other venues are not this producer's business. Startup folding does not dead-letter again what
was rejected when it arrived.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection

from redis.asyncio import Redis

from common import metrics
from common.bus import FanoutReader, history
from common.bus.deadletter import dead_letter
from common.bus.entries import StreamEntry
from common.redis_link import RedisLink, is_transient
from schemas import SymbolControl
from schemas.checks import control_problem
from schemas.codec import CodecError, decode_as
from schemas.control import MAX_ENTRY_BYTES, SymbolState
from schemas.streams import StreamNames, Subject

log = logging.getLogger(__name__)

class ControlFollower:
    """Folds control entries for ``venue`` and calls ``apply`` with the wanted symbols whenever they change."""

    def __init__(
        self, venue: str, redis: Redis, names: StreamNames, *, defaults: list[str], catalog: Collection[str],
        apply: Callable[[list[str]], Awaitable[None]], link: RedisLink,
    ) -> None:
        self.venue = venue
        self.catalog = frozenset(catalog)
        self.state = SymbolState(defaults={venue: list(defaults)})
        self.rejected = 0
        self._redis = redis
        self._names = names
        self._apply = apply
        self._stream = names.stream(Subject.CONTROL)
        self._link = link
        metrics.prepare_deadletters([self._stream], ["control"])

    def wanted(self) -> list[str]:
        return self.state.wanted(self.venue)

    def consider(self, entry: StreamEntry) -> tuple[SymbolControl | None, str | None]:
        """``(control, None)`` to apply, ``(None, reason)`` to reject, ``(None, None)`` when the entry is
        valid but names only other venues."""
        size = sum(len(value) for value in entry.fields.values())
        if size > MAX_ENTRY_BYTES:
            return None, f"entry of {size} bytes, more than the limit of {MAX_ENTRY_BYTES}"
        try:
            control = decode_as(SymbolControl, entry.fields)
        except CodecError as exc:
            return None, exc.reason
        if self.venue not in control.symbols:
            return None, None
        problem = control_problem(control, self.venue, self.catalog)
        return (None, problem) if problem else (control, None)

    async def load(self) -> str:
        """Fold every retained entry; returns the id to follow from."""
        position = "0-0"
        async for entry in history(self._redis, self._stream):
            control, _ = self.consider(entry)
            if control is not None:
                self.state.apply(control, (self.venue,))
            position = entry.id
        return position

    async def follow(self, stop: asyncio.Event, position: str | None) -> None:
        """Apply every entry after ``position`` (loading the history first when there is none yet), riding
        out Redis outages with the link's backoff."""
        while position is None and not stop.is_set():
            try:
                position = await self.load()
                self._link.ok()
                await self._apply(self.wanted())
            except Exception as exc:
                if not is_transient(exc):
                    raise
                await self._link.pause(exc, stop)
        if position is None:
            return
        reader = FanoutReader(self._redis, {self._stream: position}, block_ms=250, link=self._link)
        async for entry in reader.follow(stop):
            await self.receive(entry)

    async def receive(self, entry: StreamEntry) -> None:
        control, reason = self.consider(entry)
        if reason is not None:
            self.rejected += 1
            log.warning("control entry rejected", extra={"venue": self.venue, "id": entry.id, "reason": reason})
            try:
                await dead_letter(self._redis, self._names, entry, reason, kind="control",
                                  rejected_by=f"producer/{self.venue}")
            except Exception as exc:  # the rejection stands; only its record is lost
                if not is_transient(exc):
                    raise
                log.warning("could not dead-letter a rejected control entry: %s", exc)
        elif control is not None:
            self.state.apply(control, (self.venue,))
            await self._apply(self.wanted())
