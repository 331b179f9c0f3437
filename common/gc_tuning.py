"""Garbage-collector settings for a long-running stream worker, applied once its start-up is done.

After start-up a worker holds ~90k container objects (modules, pydantic schemas, settings, the triangle
graph) that live as long as the process. CPython's full collections walk all of them again: draining 200k
snapshots, 3 full collections took 0.24 s of CPU, one of them an 86 ms pause (live detection aims at a 5 ms
p99). The worker's own garbage is almost all acyclic and freed by reference counting, so young collections
can be rare too: at the default threshold (700) there were 719 of them, 0.17 s in all; at 10,000, none.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass

YOUNG_THRESHOLD = 10_000
"""Container allocations (net of frees) between young collections; a 256-entry batch stays well below."""


@dataclass(frozen=True, slots=True)
class GcTuning:
    """What :func:`tune_gc_for_stream_worker` did: objects moved to the permanent generation, thresholds."""

    frozen_objects: int
    thresholds: tuple[int, int, int]


def tune_gc_for_stream_worker(young_threshold: int = YOUNG_THRESHOLD) -> GcTuning:
    """Collect once, move every surviving object to the permanent generation (``gc.freeze``: never scanned
    again) and collect young objects every ``young_threshold`` allocations instead of 700.

    Call it once per process after start-up (imports, settings, markets and triangles built) and before the
    first read: objects made later are collected as usual.
    """
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(young_threshold, middle, old)
    return GcTuning(gc.get_freeze_count(), gc.get_threshold())
