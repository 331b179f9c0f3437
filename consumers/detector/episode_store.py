"""Episode states in Redis, changed only by compare-and-set, so several detector workers publish each
episode event once.

Per venue one hash (``strategy:episodes:{venue}``: cycle id → state). A worker reads it with the batch's
books (same pipeline), computes each step in Python (``episodes.py``, the code the backtest runs) and sends
the new state with the event to one small script: it writes both only if the cycle's state is still what the
worker read, else returns the current one and the worker steps again from it. The event is appended in the
same atomic script, so a state change and its event are never seen apart, and a lost race writes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from common import metrics
from common.config import StreamLimits
from consumers.detector.episodes import EpisodeRules, EpisodeState, Observation, lapsed, step
from schemas import Episode, Subject, encode_fields
from schemas.streams import StreamNames

log = logging.getLogger(__name__)

# KEYS = [state hash, episode stream]; ARGV = [cycle id, expected state ('' = none), new state, maxlen,
# event field, value, ...]. Returns {1} when written, {0, current state} when the state had moved on.
COMPARE_AND_SET_SCRIPT = """
local current = redis.call('HGET', KEYS[1], ARGV[1]) or ''
if current ~= ARGV[2] then
  return {0, current}
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
if #ARGV > 4 then
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*', unpack(ARGV, 5))
end
return {1}
"""
DECODED_CACHE = 4_096
MAX_ATTEMPTS = 8
"""Compare-and-set rounds per observation; each lost round means another worker's step landed."""

States = dict[str, tuple[bytes, EpisodeState | None]]
"""cycle id → (its state as stored, decoded; None if it does not decode and will be replaced)"""


@dataclass
class EpisodeStore:
    redis: Redis
    names: StreamNames
    limits: StreamLimits
    rules: EpisodeRules
    _decoded: dict[bytes, EpisodeState] = field(default_factory=dict)
    """Stored form → state: every batch reads every state of its venue, most unchanged since the last one."""

    def queue_read(self, pipe: Pipeline, venue: str) -> None:
        """Add the read of ``venue``'s states to a pipeline; :meth:`parse` its reply."""
        pipe.hgetall(self.names.episodes_key(venue))

    def parse(self, venue: str, reply: Mapping[Any, Any]) -> States:
        states: States = {}
        for cycle, raw in reply.items():
            states[cycle.decode()] = (raw, self._decode(venue, raw))
        return states

    def _decode(self, venue: str, raw: bytes) -> EpisodeState | None:
        state = self._decoded.get(raw)
        if state is None:
            state = _decode(venue, raw)
            if state is not None:
                if len(self._decoded) >= DECODED_CACHE:
                    self._decoded.clear()
                self._decoded[raw] = state
        return state

    async def read(self, venue: str) -> States:
        return self.parse(venue, await self.redis.hgetall(self.names.episodes_key(venue)))

    async def apply(self, venue: str, observations: Iterable[Observation], states: States) -> list[Episode]:
        """Step each observation from ``states`` (as read with the batch) and store the results; returns the
        events this worker published. ``states`` is kept current."""
        published: list[Episode] = []
        for observation in observations:
            for _attempt in range(MAX_ATTEMPTS):
                raw, state = states.get(observation.cycle_id, (b"", None))
                transition = step(state, observation, self.rules)
                if transition is None:
                    break
                new_raw = transition.state.dumps()
                current = await self._compare_and_set(venue, observation.cycle_id, raw, new_raw, transition.event)
                if current is None:
                    states[observation.cycle_id] = (new_raw, transition.state)
                    if transition.event is not None:
                        published.append(transition.event)
                    break
                states[observation.cycle_id] = (current, self._decode(venue, current) if current else None)
            else:
                log.warning("episode state contended; observation dropped", extra={"cycle": observation.cycle_id})
        for event in published:
            metrics.EPISODE_EVENTS.labels(venue=venue, event=event.event.value).inc()
        return published

    async def sweep(self, venue: str, now_ms: int) -> list[Episode]:
        """Close ``venue``'s open episodes whose legs went stale with no evaluation to say so."""
        states = await self.read(venue)
        due = [observation for _, state in states.values() if state is not None
               and (observation := lapsed(state, now_ms)) is not None]
        return await self.apply(venue, due, states) if due else []

    async def _compare_and_set(self, venue: str, cycle: str, expected: bytes, new: bytes,
                               event: Episode | None) -> bytes | None:
        """None when written; else the state another worker stored meanwhile (b"" if none)."""
        args: list[bytes | str | int] = [cycle, expected, new, self.limits.episode]
        if event is not None:
            args.extend(encode_fields(event))
        reply = await self.redis.eval(COMPARE_AND_SET_SCRIPT, 2, self.names.episodes_key(venue),
                                      self.names.stream(Subject.EPISODE), *args)
        if int(reply[0]) == 1:
            return None
        current: bytes = reply[1]
        return current


def _decode(venue: str, raw: bytes) -> EpisodeState | None:
    """A stored state, or None (logged) when it does not decode: the next step replaces it, detection goes on."""
    try:
        return EpisodeState.loads(raw)
    except (ValueError, TypeError) as exc:
        log.warning("unreadable episode state replaced", extra={"venue": venue, "error": str(exc)[:200]})
        return None
