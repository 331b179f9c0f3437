"""Episodes as a specification: a dislocation of one cycle is one open, a few rate-limited updates and one close."""

from __future__ import annotations

from dataclasses import replace

import pytest

from common.config import DetectorSettings
from consumers.detector.engine import SKIP_REASONS
from consumers.detector.episodes import (
    CLOSE_REASONS,
    EpisodeRules,
    EpisodeState,
    NotPaying,
    Paying,
    lapsed,
    observe_batch,
    step,
)
from consumers.detector.graph import Market
from consumers.detector.service import build_detectors
from schemas import CloseReason, EpisodeEvent, Leg, Opportunity, Side, Snapshot, episode_id_for

CYCLE = "kraken:BTC-USD:buy|ETH-BTC:buy|ETH-USD:sell"
RULES = EpisodeRules(update_interval_ms=1_000, min_change=0.1, max_age_ms=1_000)


def paying(n: int, at_ms: int, roi: float = 0.01, profit: float = 10.0, notional: float = 1_000.0) -> Paying:
    """The ``n``-th book state of the cycle (ids and order grow with ``n``), evaluated at ``at_ms``."""
    legs = [Leg(symbol=s, side=Side.BUY, price=1.0, size=1.0, fee=0.0, ts_event=at_ms)
            for s in ("BTC-USD", "ETH-BTC", "ETH-USD")]
    opportunity = Opportunity(
        id=f"opp{n}", cycle_id=CYCLE, exchange="kraken", roi_net=roi, roi_gross=roi + 0.012, start_asset="USD",
        start_notional=1_000.0, max_notional_at_min_roi=2_000.0, best_notional=notional, best_profit=profit,
        legs=legs, fees_total=12.0, ts_detect=at_ms, ts_publish=at_ms)
    return Paying(opportunity, order=n, fresh_until_ms=at_ms + 900)


def run(*observations: Paying | NotPaying, rules: EpisodeRules = RULES) -> tuple[EpisodeState | None, list]:
    state, events = None, []
    for observation in observations:
        transition = step(state, observation, rules)
        if transition is not None:
            state = transition.state
            if transition.event is not None:
                events.append(transition.event)
    return state, events


def test_the_first_paying_evaluation_opens_an_episode_named_by_its_cycle_and_first_opportunity() -> None:
    state, [opened] = run(paying(1, 10_000, roi=0.01, profit=10.0, notional=800.0))
    assert (opened.event, opened.seq, opened.id) == (EpisodeEvent.OPEN, 0, episode_id_for(CYCLE, "opp1"))
    assert (opened.opened_ms, opened.ts, opened.duration_ms) == (10_000, 10_000, 0)
    assert (opened.peak_roi_net, opened.best_notional, opened.best_profit, opened.opportunities) == \
        (0.01, 800.0, 10.0, 1)
    assert state is not None and state.open


def test_ticks_within_the_update_interval_are_folded_into_the_state_without_events() -> None:
    state, events = run(paying(1, 10_000, roi=0.01), paying(2, 10_300, roi=0.03), paying(3, 10_600, roi=0.02))
    assert [e.event for e in events] == [EpisodeEvent.OPEN]
    assert state is not None
    assert (state.record.roi_net, state.record.peak_roi_net, state.record.peak_ms) == (0.02, 0.03, 10_300)
    assert state.record.opportunities == 3 and state.record.opportunity_id == "opp3"


def test_an_update_needs_both_the_interval_and_a_material_change() -> None:
    _, events = run(
        paying(1, 10_000, roi=0.0100),
        paying(2, 11_500, roi=0.0105),  # interval passed, but ROI moved 5 bp: under 10 % of 1 %, not material
        paying(3, 12_000, roi=0.0150),  # +50 %: material, 2 s after the open → update
        paying(4, 12_400, roi=0.0300),  # material but 400 ms after the update → folded
        paying(5, 13_400, roi=0.0310),  # interval passed; vs the last event (0.015) +107 % → update
    )
    assert [(e.event, e.seq, e.ts) for e in events] == [
        (EpisodeEvent.OPEN, 0, 10_000), (EpisodeEvent.UPDATE, 1, 12_000), (EpisodeEvent.UPDATE, 2, 13_400)]
    assert events[-1].peak_roi_net == 0.031


def test_a_tiny_roi_still_needs_one_basis_point_to_count_as_moved() -> None:
    _, events = run(paying(1, 10_000, roi=0.00001, profit=0.0), paying(2, 12_000, roi=0.00005, profit=0.0))
    assert [e.event for e in events] == [EpisodeEvent.OPEN]  # +400 % relative, but 0.4 bp


def test_a_larger_best_profit_is_material_too() -> None:
    _, events = run(paying(1, 10_000, profit=10.0), paying(2, 11_000, profit=12.0))
    assert [e.event for e in events] == [EpisodeEvent.OPEN, EpisodeEvent.UPDATE]
    assert (events[1].best_profit, events[1].best_notional) == (12.0, 1_000.0)


def test_an_evaluation_that_no_longer_pays_closes_with_duration_peak_and_best_size() -> None:
    state, events = run(
        paying(1, 10_000, roi=0.01, profit=10.0, notional=500.0),
        paying(2, 10_500, roi=0.02, profit=25.0, notional=1_500.0),
        paying(3, 10_900, roi=0.015, profit=20.0, notional=1_200.0),  # all within the update interval
        NotPaying(CYCLE, CloseReason.BELOW_MIN_ROI, at_ms=13_250, order=4),
    )
    closed = events[-1]
    assert (closed.event, closed.seq, closed.close_reason) == (EpisodeEvent.CLOSE, 1, CloseReason.BELOW_MIN_ROI)
    assert (closed.opened_ms, closed.ts, closed.duration_ms) == (10_000, 13_250, 3_250)
    assert (closed.peak_roi_net, closed.peak_ms) == (0.02, 10_500)
    assert (closed.best_profit, closed.best_notional) == (25.0, 1_500.0)  # the most profitable evaluation's size
    assert (closed.roi_net, closed.opportunities, closed.opportunity_id) == (0.015, 3, "opp3")
    assert state is not None and not state.open


def test_not_paying_without_an_open_episode_says_nothing() -> None:
    assert step(None, NotPaying(CYCLE, CloseReason.STALE, 10_000, 1), RULES) is None
    closed, _ = run(paying(1, 10_000), NotPaying(CYCLE, CloseReason.BELOW_MIN_ROI, 10_100, 2))
    assert step(closed, NotPaying(CYCLE, CloseReason.BELOW_MIN_ROI, 10_200, 3), RULES) is None


def test_legs_that_go_stale_without_an_evaluation_close_the_episode_when_they_went_stale() -> None:
    state, _ = run(paying(1, 10_000), paying(2, 10_400))  # fresh until 10_400 + 900
    assert state is not None
    assert lapsed(state, 11_300) is None
    lapse = lapsed(state, 12_000)
    assert lapse == NotPaying(CYCLE, CloseReason.STALE, at_ms=11_300, order=2)
    transition = step(state, lapse, RULES)
    assert transition is not None and transition.event is not None
    assert (transition.event.close_reason, transition.event.ts, transition.event.duration_ms) == \
        (CloseReason.STALE, 11_300, 1_300)
    assert lapsed(transition.state, 20_000) is None  # closed once


def test_an_older_view_of_the_books_reported_late_changes_nothing() -> None:
    """Another worker evaluated older books and reports after this one: neither close nor reopen."""
    state, _ = run(paying(1, 10_000), paying(5, 10_500))
    assert step(state, NotPaying(CYCLE, CloseReason.BELOW_MIN_ROI, 10_600, order=3), RULES) is None
    closed, _ = run(paying(1, 10_000), NotPaying(CYCLE, CloseReason.BELOW_MIN_ROI, 10_600, order=5))
    assert step(closed, paying(4, 10_700), RULES) is None


def test_the_same_book_state_twice_is_one_evaluation() -> None:
    state, _ = run(paying(1, 10_000), paying(2, 10_100))
    assert step(state, paying(2, 10_200), RULES) is None  # a redelivery, or a second worker's evaluation


def test_paying_again_after_a_close_opens_a_new_episode() -> None:
    _, events = run(paying(1, 10_000), NotPaying(CYCLE, CloseReason.BELOW_MIN_ROI, 10_500, 2), paying(3, 11_000))
    assert [e.event for e in events] == [EpisodeEvent.OPEN, EpisodeEvent.CLOSE, EpisodeEvent.OPEN]
    assert events[2].id == episode_id_for(CYCLE, "opp3") != events[0].id
    assert (events[2].seq, events[2].opportunities) == (0, 1)


def test_state_survives_its_stored_form() -> None:
    state, _ = run(paying(1, 10_000), paying(2, 12_000, roi=0.05), NotPaying(CYCLE, CloseReason.STALE, 12_500, 3))
    assert state is not None
    assert EpisodeState.loads(state.dumps()) == state


@pytest.mark.parametrize("interval", [0, 1_000])
def test_seq_counts_every_event_of_an_episode(interval: int) -> None:
    rules = replace(RULES, update_interval_ms=interval)
    _, events = run(*(paying(n, 10_000 + 1_000 * n, roi=0.01 * 2 ** n) for n in range(1, 5)),
                    NotPaying(CYCLE, CloseReason.BELOW_MIN_ROI, 20_000, 9), rules=rules)
    assert [e.seq for e in events] == list(range(len(events)))
    assert len({e.id for e in events}) == 1


# --- what one evaluation round tells the episodes ---------------------------------------------------------------

MARKETS = [Market("kraken", s, *s.split("-"), 1e-8, 0.0, 0.004) for s in ("BTC-USD", "ETH-BTC", "ETH-USD")]


def venue_books(at_ms: int, eth_btc_shift: float, eth_btc_event_ms: int | None = None) -> dict[str, Snapshot]:
    def book(symbol: str, bid: float, ask: float, event_ms: int) -> Snapshot:
        return Snapshot(exchange="kraken", symbol=symbol, ts_event=event_ms, ts_ingest=at_ms, book_seq=1,
                        bids=[(bid, 5.0, 5.0)], asks=[(ask, 5.0, 5.0)])

    return {"BTC-USD": book("BTC-USD", 59_990, 60_000, at_ms), "ETH-USD": book("ETH-USD", 2_999, 3_000, at_ms),
            "ETH-BTC": book("ETH-BTC", 0.04995 * eth_btc_shift, 0.05 * eth_btc_shift, eth_btc_event_ms or at_ms)}


def round_of(books: dict[str, Snapshot], states: dict[str, EpisodeState], now_ms: int) -> list[Paying | NotPaying]:
    detector = build_detectors({"kraken": MARKETS}, DetectorSettings())["kraken"]
    for snapshot in books.values():
        detector.observe(snapshot)
    found = detector.evaluate(["ETH-BTC"], books, now_ms)
    return observe_batch(detector, detector.affected(["ETH-BTC"]), books, found, states, now_ms)


def test_a_round_reports_paying_cycles_and_closes_open_ones_whose_fresh_legs_stopped_paying() -> None:
    [opened] = round_of(venue_books(10_000, 0.97), {}, 10_000)
    assert isinstance(opened, Paying) and opened.cycle_id == CYCLE
    transition = step(None, opened, RULES)
    assert transition is not None
    [closing] = round_of(venue_books(10_500, 1.0), {CYCLE: transition.state}, 10_500)
    assert closing == NotPaying(CYCLE, CloseReason.BELOW_MIN_ROI, 10_500, 3 * 10_500)


def test_legs_caught_mid_update_say_nothing_and_lapsed_legs_close_as_of_when_they_went_stale() -> None:
    transition = step(None, round_of(venue_books(10_000, 0.97), {}, 10_000)[0], RULES)
    assert transition is not None
    skewed = venue_books(10_200, 1.0, eth_btc_event_ms=9_000)  # ETH-BTC 1.2 s behind the others in venue time
    assert round_of(skewed, {CYCLE: transition.state}, 10_200) == []
    [lapse] = round_of(venue_books(9_000, 1.0), {CYCLE: transition.state}, 11_500)  # no leg newer than 9 s
    assert lapse == NotPaying(CYCLE, CloseReason.STALE, transition.state.fresh_until_ms, transition.state.order)


def test_every_skip_reason_says_whether_it_closes_an_episode() -> None:
    assert set(CLOSE_REASONS) == set(SKIP_REASONS)
