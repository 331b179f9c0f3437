"""Episodes, pure: how one cycle's evaluations become ``open`` / ``update`` / ``close`` events.

A cycle's state moves only through :func:`step` (one observation → the new state and the event to publish,
if any) and :func:`lapsed` (its legs went stale with no evaluation to say so). The live detector keeps the
states in Redis and applies each step by compare-and-set, so any number of workers agree on one episode
(``episode_store.py``); the backtest keeps them in a dict. Same code, same episodes.

Observations carry an **order**: the sum of their legs' receive times. Hot-cache books only move forward,
so a later view of a cycle's books has a larger sum; a worker that evaluated older books and reports after
another worker reported newer ones is ignored instead of reopening or closing what it cannot know.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import orjson

from consumers.detector.engine import TriangleDetector
from consumers.detector.graph import Triangle
from schemas import Opportunity, Snapshot
from schemas.episode import CloseReason, Episode, EpisodeEvent, episode_id_for

ROI_MIN_CHANGE = 1e-4
"""The smallest ROI move that counts as material for an update (1 bp), however small the ROI."""

CLOSE_REASONS: dict[str, CloseReason | None] = {
    "below_threshold": CloseReason.BELOW_MIN_ROI,
    "not_executable": CloseReason.BELOW_MIN_ROI,
    "empty_side": CloseReason.BELOW_MIN_ROI,
    "stale": CloseReason.STALE,
    "skewed": None,
    "missing_book": None,
}
"""The detector's skip reasons (``engine.SKIP_REASONS``) as reasons to close an episode. ``None``:
the evaluation says nothing about the dislocation (legs caught mid-update, far apart in venue time, or one
missing), so the episode stays as it is; if its legs then stop updating, it lapses as stale."""


@dataclass(frozen=True, slots=True)
class EpisodeRules:
    update_interval_ms: int = 1_000
    """at most one ``update`` per episode this often"""
    min_change: float = 0.1
    """an ``update`` needs ROI or best profit to move by this fraction since the last event"""
    max_age_ms: int = 1_000
    """the detector's: a leg older than this is stale"""


@dataclass(frozen=True, slots=True)
class Paying:
    """An evaluation that cleared ``min_roi``."""

    opportunity: Opportunity
    order: int
    fresh_until_ms: int
    """when its oldest leg goes stale"""

    @classmethod
    def of(cls, opportunity: Opportunity, legs: Sequence[Snapshot], max_age_ms: int) -> Paying:
        received = [leg.ts_ingest for leg in legs]
        return cls(opportunity, sum(received), min(received) + max_age_ms)

    @property
    def cycle_id(self) -> str:
        return self.opportunity.cycle_id


@dataclass(frozen=True, slots=True)
class NotPaying:
    """An evaluation of a cycle that did not clear ``min_roi``, or a lapse (its legs went stale)."""

    cycle_id: str
    reason: CloseReason
    at_ms: int
    order: int


Observation = Paying | NotPaying


@dataclass(frozen=True, slots=True)
class EpisodeState:
    """A cycle's latest episode; after its close it stays (``open`` false) as the order to beat."""

    record: Episode
    """the episode so far, its ``event``/``seq`` those of the last event published"""
    open: bool
    order: int
    fresh_until_ms: int
    last_event_ms: int
    last_event_roi: float
    last_event_profit: float

    def dumps(self) -> bytes:
        return orjson.dumps({
            "record": self.record.model_dump(mode="json", exclude_none=True), "open": self.open,
            "order": self.order, "fresh_until_ms": self.fresh_until_ms, "last_event_ms": self.last_event_ms,
            "last_event_roi": self.last_event_roi, "last_event_profit": self.last_event_profit})

    @classmethod
    def loads(cls, raw: bytes) -> EpisodeState:
        data = orjson.loads(raw)
        return cls(Episode.model_validate(data.pop("record")), **data)


@dataclass(frozen=True, slots=True)
class Transition:
    state: EpisodeState
    event: Episode | None


def step(state: EpisodeState | None, observation: Observation, rules: EpisodeRules) -> Transition | None:
    """What ``observation`` does to a cycle's ``state``: a new state (and the event to publish, if any), or
    None when it changes nothing (an older view, a repeat, a not-paying cycle with nothing open)."""
    if state is not None and observation.order < state.order:
        return None
    if isinstance(observation, Paying):
        if state is None or not state.open:
            return _open(observation)
        return _continue(state, observation, rules)
    if state is None or not state.open:
        return None
    return _close(state, observation)


def lapsed(state: EpisodeState, now_ms: int) -> NotPaying | None:
    """An open episode whose legs went stale by ``now_ms`` without an evaluation saying so (no update came):
    it closes as of the moment they went stale."""
    if not state.open or now_ms <= state.fresh_until_ms:
        return None
    return NotPaying(state.record.cycle_id, CloseReason.STALE, state.fresh_until_ms, state.order)


def _open(observation: Paying) -> Transition:
    opportunity = observation.opportunity
    record = Episode(
        id=episode_id_for(opportunity.cycle_id, opportunity.id), event=EpisodeEvent.OPEN, seq=0,
        exchange=opportunity.exchange, cycle_id=opportunity.cycle_id, start_asset=opportunity.start_asset,
        opened_ms=opportunity.ts_detect, ts=opportunity.ts_detect, duration_ms=0, roi_net=opportunity.roi_net,
        peak_roi_net=opportunity.roi_net, peak_ms=opportunity.ts_detect, best_notional=opportunity.best_notional,
        best_profit=opportunity.best_profit, opportunities=1, first_opportunity_id=opportunity.id,
        opportunity_id=opportunity.id,
    )
    state = EpisodeState(record, True, observation.order, observation.fresh_until_ms, record.ts, record.roi_net,
                         record.best_profit)
    return Transition(state, record)


def _continue(state: EpisodeState, observation: Paying, rules: EpisodeRules) -> Transition | None:
    opportunity, record = observation.opportunity, state.record
    if opportunity.id == record.opportunity_id:
        return None  # the same book state again (a redelivery, or another worker's evaluation of it)
    ts = max(record.ts, opportunity.ts_detect)
    peak = opportunity.roi_net > record.peak_roi_net
    richer = opportunity.best_profit > record.best_profit
    record = record.model_copy(update={
        "ts": ts, "duration_ms": ts - record.opened_ms, "roi_net": opportunity.roi_net,
        "peak_roi_net": opportunity.roi_net if peak else record.peak_roi_net,
        "peak_ms": opportunity.ts_detect if peak else record.peak_ms,
        "best_notional": opportunity.best_notional if richer else record.best_notional,
        "best_profit": opportunity.best_profit if richer else record.best_profit,
        "opportunities": record.opportunities + 1, "opportunity_id": opportunity.id,
    })
    state = replace(state, record=record, order=observation.order, fresh_until_ms=observation.fresh_until_ms)
    if ts - state.last_event_ms < rules.update_interval_ms or not _material(state, rules):
        return Transition(state, None)
    event = record.model_copy(update={"event": EpisodeEvent.UPDATE, "seq": record.seq + 1})
    return Transition(replace(state, record=event, last_event_ms=ts, last_event_roi=event.roi_net,
                              last_event_profit=event.best_profit), event)


def _material(state: EpisodeState, rules: EpisodeRules) -> bool:
    """Has ROI or the best profit moved enough since the last event to be worth telling?"""
    record = state.record
    roi_moved = abs(record.roi_net - state.last_event_roi)
    profit_moved = abs(record.best_profit - state.last_event_profit)
    return roi_moved >= max(ROI_MIN_CHANGE, rules.min_change * abs(state.last_event_roi)) \
        or profit_moved >= rules.min_change * abs(state.last_event_profit) > 0


def _close(state: EpisodeState, observation: NotPaying) -> Transition:
    record = state.record
    ts = max(record.ts, observation.at_ms)
    event = record.model_copy(update={
        "event": EpisodeEvent.CLOSE, "seq": record.seq + 1, "ts": ts, "duration_ms": ts - record.opened_ms,
        "close_reason": observation.reason,
    })
    return Transition(replace(state, record=event, open=False, order=observation.order, last_event_ms=ts), event)


def observe_batch(
    detector: TriangleDetector, affected: Sequence[Triangle], books: Mapping[str, Snapshot],
    found: Sequence[Opportunity], states: Mapping[str, EpisodeState | None], now_ms: int,
) -> list[Observation]:
    """What one evaluation round of a venue tells its episodes, in the order to apply: first the lapses (open
    episodes whose legs went stale before ``now_ms``, closed as of then, whether or not a sweep noticed yet),
    then every opportunity (paying), then each affected cycle with an open episode and no opportunity whose
    fresh legs no longer pay (re-assessed to say why)."""
    observations: list[Observation] = [
        lapse for state in states.values() if state is not None and (lapse := lapsed(state, now_ms)) is not None]
    max_age_ms = detector.rules.max_age_ms
    observations += [Paying.of(opportunity, [books[leg.symbol] for leg in opportunity.legs], max_age_ms)
                     for opportunity in found]
    paying = {opportunity.cycle_id for opportunity in found}
    for triangle in affected:
        state = states.get(triangle.cycle_id)
        if triangle.cycle_id in paying or state is None or not state.open or lapsed(state, now_ms) is not None:
            continue
        outcome = detector.assess(triangle, books, now_ms)
        reason = CLOSE_REASONS[outcome] if isinstance(outcome, str) else None
        if reason is not None:
            order = sum(books[symbol].ts_ingest for symbol in triangle.symbols)
            observations.append(NotPaying(triangle.cycle_id, reason, now_ms, order))
    return observations
