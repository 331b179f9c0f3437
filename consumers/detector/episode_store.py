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
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from common import metrics
from common.config import StreamLimits
from consumers.detector.episodes import EpisodeRules, EpisodeState, Observation, Transition, lapsed, step
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


@dataclass(frozen=True, slots=True)
class Change:
    """One compare-and-set to send: ``expected`` is the stored state the step started from, ``new`` the
    transition's state as it will be stored."""

    observation: Observation
    expected: bytes
    transition: Transition
    new: bytes


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
        events this worker published. ``states`` is kept current.

        All cycles' compare-and-sets go in one pipelined round trip (a batch often moves several cycles at
        once); a cycle's later observations, and those that lost a race, go in the next round.
        """
        queues: dict[str, deque[Observation]] = {}
        for observation in observations:  # per cycle, in the order given: a lapse before a new open
            queues.setdefault(observation.cycle_id, deque()).append(observation)
        lost: dict[str, int] = {}
        """races lost in a row by each cycle's head observation"""
        published: list[Episode] = []
        while queues:
            round_: list[Change] = []
            for cycle, queue in list(queues.items()):
                while queue:  # the first observation that changes something goes in this round
                    raw, state = states.get(cycle, (b"", None))
                    transition = step(state, queue[0], self.rules)
                    if transition is not None:
                        round_.append(Change(queue[0], raw, transition, transition.state.dumps()))
                        break
                    queue.popleft()
                if not queue:
                    del queues[cycle]
            if not round_:
                break
            replies = await self._compare_and_set_all(venue, round_)
            for change, current in zip(round_, replies, strict=True):
                observation, transition = change.observation, change.transition
                cycle = observation.cycle_id
                if current is None:
                    states[cycle] = (change.new, transition.state)
                    if transition.event is not None:
                        published.append(transition.event)
                    queues[cycle].popleft()
                    lost.pop(cycle, None)
                    continue
                states[cycle] = (current, self._decode(venue, current) if current else None)
                lost[cycle] = lost.get(cycle, 0) + 1
                if lost[cycle] >= MAX_ATTEMPTS:
                    log.warning("episode state contended; observation dropped", extra={"cycle": cycle})
                    queues[cycle].popleft()
                    del lost[cycle]
        for event in published:
            metrics.EPISODE_EVENTS.labels(venue=venue, event=event.event.value).inc()
        return published

    async def sweep(self, venue: str, now_ms: int) -> list[Episode]:
        """Close ``venue``'s open episodes whose legs went stale with no evaluation to say so."""
        states = await self.read(venue)
        due = [observation for _, state in states.values() if state is not None
               and (observation := lapsed(state, now_ms)) is not None]
        return await self.apply(venue, due, states) if due else []

    async def _compare_and_set_all(self, venue: str, changes: list[Change]) -> list[bytes | None]:
        """One script call per change, pipelined: for each, None when written, else the state another worker
        stored meanwhile (b"" if none)."""
        keys = (self.names.episodes_key(venue), self.names.stream(Subject.EPISODE))
        pipe = self.redis.pipeline(transaction=False)
        for change in changes:
            args: list[bytes | str | int] = [change.observation.cycle_id, change.expected, change.new,
                                             self.limits.episode]
            if change.transition.event is not None:
                args.extend(encode_fields(change.transition.event))
            pipe.eval(COMPARE_AND_SET_SCRIPT, len(keys), *keys, *args)
        return [None if int(reply[0]) == 1 else reply[1] for reply in await pipe.execute()]


def _decode(venue: str, raw: bytes) -> EpisodeState | None:
    """A stored state, or None (logged) when it does not decode: the next step replaces it, detection goes on."""
    try:
        return EpisodeState.loads(raw)
    except (ValueError, TypeError) as exc:
        log.warning("unreadable episode state replaced", extra={"venue": venue, "error": str(exc)[:200]})
        return None
