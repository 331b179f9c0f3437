"""WS_CAPTURE files are the fixture format: what is written replays through --check unchanged."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from producers.capture import CaptureWriter, read_capture
from producers.replay import check_capture


def test_written_capture_replays_like_the_recording_it_came_from(
    tmp_path: Path, recorded_frames: Callable[[str], list[str]]
) -> None:
    writer = CaptureWriter(tmp_path, "kraken", clock=lambda: 1618678132.0)
    writer.connected(1, "wss://ws.kraken.com")
    writer.sent(1, '{"event":"subscribe","pair":["XBT/CHF"],"subscription":{"name":"book","depth":1000}}')
    for frame in recorded_frames("kraken-v1-2021.ndjson"):
        writer.received(1, frame)
    writer.close()

    [path] = writer.paths
    summary = check_capture(path)
    assert (summary["checksum_ok"], summary["checksum_fail"], summary["books"]) == (3531, 0, 10)


def test_files_rotate_by_size_and_each_starts_with_a_header(tmp_path: Path) -> None:
    writer = CaptureWriter(tmp_path, "coinbase", rotate_bytes=300, clock=lambda: 1.0)
    writer.connected(1, "wss://x")
    for n in range(10):
        writer.received(1, f'{{"channel":"heartbeats","sequence_num":{n},"events":[]}}')
    writer.close()
    assert len(writer.paths) > 1
    for path in writer.paths:
        first = next(read_capture(path))
        assert (first.kind, first.raw["exchange"]) == ("header", "COINBASE")
    received = [r.data for p in writer.paths for r in read_capture(p) if r.kind == "recv"]
    assert len(received) == 10
