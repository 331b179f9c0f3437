"""The built-in demo feed: deterministic, valid books that form one triangle."""

from __future__ import annotations

import random

from producers.demo import DEMO_MIDS, DemoFeed, demo_levels


def test_demo_levels_are_sorted_best_first_with_running_cumulative_size() -> None:
    bids, asks = demo_levels(100.0, spread_bps=2.0, rng=random.Random(1))
    assert [p for p, _, _ in bids] == sorted((p for p, _, _ in bids), reverse=True)
    assert [p for p, _, _ in asks] == sorted(p for p, _, _ in asks)
    assert bids[0][0] < 100.0 < asks[0][0]
    # 2 bps spread around 100: best bid 99.99, best ask 100.01
    assert (bids[0][0], asks[0][0]) == (99.99, 100.01)
    running = 0.0
    for _, size, cumulative in bids:
        running = round(running + size, 4)
        assert cumulative == running


def test_same_seed_gives_the_same_snapshots() -> None:
    def first_five(seed: int) -> list[object]:
        feed = DemoFeed(publisher=None, seed=seed, clock_ms=lambda: 1_000)  # type: ignore[arg-type]
        return [feed.next_snapshot() for _ in range(5)]

    assert first_five(3) == first_five(3)
    assert first_five(3) != first_five(4)


def test_demo_books_cover_a_triangle_and_count_book_seq_per_symbol() -> None:
    feed = DemoFeed(publisher=None, seed=1, clock_ms=lambda: 1_000)  # type: ignore[arg-type]
    snapshots = [feed.next_snapshot() for _ in range(60)]
    assert {s.symbol for s in snapshots} == set(DEMO_MIDS) == {"BTC-USD", "ETH-USD", "ETH-BTC"}
    for symbol in DEMO_MIDS:
        seqs = [s.book_seq for s in snapshots if s.symbol == symbol]
        assert seqs == list(range(1, len(seqs) + 1))
