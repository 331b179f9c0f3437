"""GC tuning for stream workers: start-up objects frozen out of collections, young collections rarer."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from common.gc_tuning import YOUNG_THRESHOLD, tune_gc_for_stream_worker


@pytest.fixture
def restored_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restored_gc")
def test_tuning_freezes_what_start_up_left_and_raises_only_the_young_threshold() -> None:
    _, middle, old = gc.get_threshold()
    start_up_state = [{"book": n} for n in range(1000)]  # containers alive when the worker starts reading

    tuning = tune_gc_for_stream_worker()

    assert tuning.frozen_objects >= len(start_up_state)  # (the count moves on if another thread freezes too)
    assert tuning.thresholds == gc.get_threshold() == (YOUNG_THRESHOLD, middle, old)
    collected_generations = [gc.get_objects(generation=g) for g in range(3)]
    assert not any(obj is start_up_state for objects in collected_generations for obj in objects)  # never scanned


@pytest.mark.usefixtures("restored_gc")
def test_cyclic_garbage_made_after_tuning_is_still_collected() -> None:
    tune_gc_for_stream_worker(young_threshold=100)

    class Node:
        partner: object

    first, second = Node(), Node()
    first.partner, second.partner = second, first  # a cycle: reference counting alone never frees it
    del first, second

    assert gc.collect() >= 2
