"""Book throughput on the shared recordings: book updates per second, per venue, against two references.

* ours: ``producers.feed.VenueFeed`` (orjson parse, apply, verify every Kraken checksum, top-5 with cumulative
  sizes as an L5 snapshot);
* baseline: orjson + a dict per side + ``sorted()`` for the top 5 after every frame, no checksum (what a
  notebook would do);
* the peer: cryptofeed 2.4.1's own Coinbase and Kraken feed classes (``scripts/peer/cryptofeed_books.py``), with
  a no-op L2_BOOK callback, and for Kraken also with ``checksum_validation=True``. Coinbase sends no checksum,
  so there is only the no-op mode there. cryptofeed lives in its own virtualenv (``.venv-peer``, created here on
  first use with ``python -m venv`` + ``pip install cryptofeed==2.4.1``, reused after) and runs as a subprocess,
  so it never enters triarb's dependencies. If it cannot be installed or run, one line says so and the rest
  of the report stands.

What makes the comparison fair: every side reads the same recorded frames, in recorded order, as raw text, and
times exactly the same frames: the book updates (Coinbase ``l2_data`` update events, Kraken ``book-*`` frames
without ``as``/``bs``; the peer reports how many it timed and how many callbacks fired, and a mismatch is
printed). Snapshots and every other frame (heartbeats, trades, tickers, subscription status) go through each
side untimed, so the books are the ones a live connection would hold; before the peer was added, ours also timed
those other frames (about 7 % of its Coinbase time). Parsing the text is part of each side's cost: orjson for
ours and the baseline, cryptofeed's own yapic.json (``Decimal`` floats, ISO dates made datetimes) inside its
``message_handler``, the entry point its connection handler calls. Depths match: Kraken 1000 (the recorded
subscription; ours ``depth=1000``, cryptofeed ``max_depth=1000``), Coinbase the whole book on both. The run is
rounds of one pass per side (ours, baseline, peer), so load drift hits every side alike; each figure is the
median over the rounds, each ratio the ratio of two medians. Ours and the baseline build their books afresh
each pass (ours must: Coinbase sequence numbers would repeat); the peer keeps one feed object per mode for the
whole run and replays the recording through it pass after pass, its snapshot frames rebuilding the books as a
resubscribe would.

What differs, and how to read it: ours does more per update than a cryptofeed no-op callback (top-5 with
cumulative sizes, a crossed-book check, every Kraken checksum), so ``ratio_noop`` on Kraken sets our checked
books against its unchecked ones and ``ratio_checksum`` is the like-for-like figure. cryptofeed 2.4.1 drops
the whole ask side of a Coinbase Advanced Trade snapshot (it looks for ``"side":"ask"``; the venue sends
``"offer"``), so its timed updates work on a nearly empty ask book; ``cryptofeed_noop_asks_loaded`` renames the
side in the untimed snapshot frames only, so the peer runs on full books, and is reported beside it. On a
shared machine single passes are noisy (Coinbase has 773 timed frames, about 50 ms); run it twice.

The ``kraken-v2*`` row: v2 is the live default, but the only real v2 recording holds 3 book frames, so the bench
builds a synthetic v2 stream from the v1 recording: each v1 book frame, in order, becomes one v2 ``book`` frame
with the same levels as JSON numbers (the v1 text's value), the newest v1 level time as its timestamp, and the
checksum Kraken would send: the v2 checksum (``kraken.checksum_v2``, AssetPairs ``pair_decimals`` and
``lot_decimals``) of a plain dict book per side kept by the bench, truncated to depth 1000. That book is first
checked against every v1 checksum of the recording, so it is the venue's book. Ours then runs a fresh
``VenueFeed`` with those precisions over the v2 frames, timing the update frames as above, and must verify every
checksum; ``ratio_v1`` is its median over our v1 median from the same rounds. cryptofeed 2.4.1 speaks v1 only,
so the row has no peer or baseline.

The last line printed is one JSON object with every figure.
Usage: ``python scripts/bench_books.py [--fixtures DIR] [--repeats R] [--no-peer]`` (``make bench-books``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from decimal import Decimal
from heapq import nlargest, nsmallest
from pathlib import Path
from typing import Any

import orjson

from producers.feed import BookChanged, FeedCounters, Venue, VenueFeed
from producers.venues import kraken
from producers.venues.events import TextLevel

REPO = Path(__file__).resolve().parents[1]
DEFAULT_FIXTURES = REPO.parent / "shared" / "fixtures"
RECORDINGS = {
    Venue.COINBASE: ("coinbase-advanced-2026.ndjson", None),
    Venue.KRAKEN: ("kraken-v1-2021.ndjson", 1000),
}
PEER_VENV = REPO / ".venv-peer"
PEER_PACKAGE, PEER_VERSION = "cryptofeed", "2.4.1"
PEER_SCRIPT = REPO / "scripts" / "peer" / "cryptofeed_books.py"
PEER_INSTALL_TIMEOUT_S = 900
PEER_RUN_TIMEOUT_S = 900
MODES = {"coinbase": ("noop", "noop_asks_loaded"), "kraken": ("noop", "checksum")}  # the peer's modes per venue
GOALS = {"coinbase": {"ratio_noop": 2.0}, "kraken": {"ratio_noop": 1.0, "ratio_checksum": 2.0}}
KRAKEN_PAIRS = "kraken-assetpairs-2021.json"  # AssetPairs: pair_decimals / lot_decimals per wsname
KRAKEN_V2_DEPTH = 1000  # the v1 recording's subscribed depth, kept for the synthetic v2 stream
KRAKEN_V2_NOTE = "synthetic: the v1 recording's books as v2 frames, checksums computed by the bench"
Frame = tuple[str, str]  # kind ("snapshot", "update" or "other"), raw text
RefSide = dict[Decimal, TextLevel]  # price value -> the v1 (price, size) texts
Precisions = dict[str, tuple[int, int]]  # canonical symbol -> (price, qty) decimals


def frame_kind(venue: Venue, frame: str) -> str:
    """Which frames are timed: book updates only. The peer harness applies the same rule."""
    message = orjson.loads(frame)
    if venue is Venue.COINBASE:
        if isinstance(message, dict) and message.get("channel") == "l2_data":
            return "snapshot" if any(event.get("type") == "snapshot" for event in message["events"]) else "update"
        return "other"
    if isinstance(message, list) and str(message[-2]).startswith("book"):
        return "snapshot" if any("as" in payload for payload in message[1:-2]) else "update"
    return "other"


def load_frames(venue: Venue, path: Path) -> list[Frame]:
    with path.open("rb") as lines:
        texts = [record["data"] for record in map(orjson.loads, lines) if record["t"] == "recv"]
    return [(frame_kind(venue, text), text) for text in texts]


def ours(venue: Venue, depth: int | None, frames: list[Frame]) -> float:
    return timed_updates(VenueFeed(venue, depth=depth), frames)


def timed_updates(feed: VenueFeed, frames: list[Frame]) -> float:
    """Every frame through ``feed``, the update frames timed: one loop for every row, so they time alike."""
    elapsed, published = 0.0, 0
    clock = time.perf_counter
    for kind, frame in frames:
        if kind != "update":
            feed.on_frame(frame)
            continue
        started = clock()
        outputs = feed.on_frame(frame)
        elapsed += clock() - started
        published += sum(1 for output in outputs if isinstance(output, BookChanged))
    return published / elapsed


def ours_v2(frames: list[Frame], precisions: Precisions) -> tuple[float, FeedCounters]:
    """A fresh feed each pass, as ``ours``; its counters tell whether every checksum verified."""
    feed = VenueFeed(Venue.KRAKEN, depth=KRAKEN_V2_DEPTH, precisions=dict(precisions))  # the feed adds to it
    return timed_updates(feed, frames), feed.counters


def load_precisions(path: Path) -> Precisions:
    """(pair_decimals, lot_decimals) per canonical symbol: the instrument precisions the v2 checksum uses."""
    pairs: dict[str, dict[str, Any]] = orjson.loads(path.read_bytes())["result"]
    return {kraken.canonical(pair["wsname"]): (int(pair["pair_decimals"]), int(pair["lot_decimals"]))
            for pair in pairs.values() if "wsname" in pair}  # dark-pool pairs (".d") have none


def v2_text(text: str) -> str:
    """A v1 decimal string as v2 writes the number: the same value, trailing zeros trimmed."""
    return format(Decimal(text).normalize(), "f")


def v2_levels(levels: list[TextLevel]) -> list[dict[str, orjson.Fragment]]:
    """Fragments, so the JSON number is exactly ``v2_text``, never a float's repr."""
    return [{"price": orjson.Fragment(v2_text(price)), "qty": orjson.Fragment(v2_text(size))}
            for price, size in levels]


def rfc3339(seconds: str) -> str:
    """A v1 level time (Unix seconds, microsecond text) as v2's timestamp, without float rounding."""
    value = Decimal(seconds)
    whole = int(value)
    return datetime.fromtimestamp(whole, UTC).replace(microsecond=int((value - whole) * 1_000_000)) \
        .strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def ref_apply(side: RefSide, levels: list[TextLevel], descending: bool) -> None:
    """Kraken's rule: size 0 removes the level; then the book is cut to the subscribed depth."""
    for price, size in levels:
        if Decimal(size) == 0:
            side.pop(Decimal(price), None)
        else:
            side[Decimal(price)] = (price, size)
    if len(side) > KRAKEN_V2_DEPTH:
        for worst in sorted(side, reverse=descending)[KRAKEN_V2_DEPTH:]:
            del side[worst]


def ref_top(side: RefSide, descending: bool) -> list[TextLevel]:
    prices = (nlargest if descending else nsmallest)(kraken.CHECKSUM_LEVELS, side)
    return [side[price] for price in prices]


def kraken_v2_frames(v1_frames: list[Frame], precisions: Precisions) -> list[Frame]:
    """One v2 book frame per v1 book frame, in order, with the checksum Kraken would send after it.

    The reference book is a dict per side, independent of ``producers``; it must reproduce every v1 checksum
    of the recording before its v2 checksums are trusted."""
    books: dict[str, tuple[RefSide, RefSide]] = {}  # symbol -> (bids, asks)
    out: list[Frame] = []
    for kind, text in v1_frames:
        if kind == "other":
            continue
        message = orjson.loads(text)
        symbol, payloads = kraken.canonical(message[-1]), message[1:-2]
        if kind == "snapshot":
            books[symbol] = ({}, {})
        bids, asks = books[symbol]
        levels = {key: [level for payload in payloads for level in payload.get(key, [])]
                  for key in ("as", "a", "bs", "b")}
        new_asks = [(level[0], level[1]) for level in levels["as"] + levels["a"]]
        new_bids = [(level[0], level[1]) for level in levels["bs"] + levels["b"]]
        ref_apply(asks, new_asks, descending=False)
        ref_apply(bids, new_bids, descending=True)
        top_asks, top_bids = ref_top(asks, descending=False), ref_top(bids, descending=True)
        venue_v1 = next((int(payload["c"]) for payload in payloads if "c" in payload), None)
        if venue_v1 is not None and kraken.checksum_v1(top_asks, top_bids) != venue_v1:
            raise SystemExit(f"kraken-v2*: the bench's reference book for {symbol} fails a v1 checksum")
        wire_asks = [(v2_text(price), v2_text(size)) for price, size in top_asks]
        wire_bids = [(v2_text(price), v2_text(size)) for price, size in top_bids]
        stamps = [level[2] for key in levels for level in levels[key]]
        item = {"symbol": kraken.v2_symbol(symbol), "bids": v2_levels(new_bids), "asks": v2_levels(new_asks),
                "checksum": kraken.checksum_v2(wire_asks, wire_bids, *precisions[symbol]),
                "timestamp": rfc3339(max(stamps, key=Decimal))}
        out.append((kind, orjson.dumps({"channel": "book", "type": kind, "data": [item]}).decode()))
    return out


def top5(side: dict[float, float], best_first_descending: bool) -> list[tuple[float, float, float]]:
    out, cumulative = [], 0.0
    for price in sorted(side, reverse=best_first_descending)[:5]:
        cumulative += side[price]
        out.append((price, side[price], cumulative))
    return out


def baseline_apply(books: dict[str, tuple[dict[float, float], dict[float, float]]], symbol: str,
                   bids: list[Any], asks: list[Any]) -> None:
    book_bids, book_asks = books.setdefault(symbol, ({}, {}))
    for side, levels in ((book_bids, bids), (book_asks, asks)):
        for price, size in levels:
            if float(size) == 0:
                side.pop(float(price), None)
            else:
                side[float(price)] = float(size)
    top5(book_bids, True)
    top5(book_asks, False)


def baseline(venue: Venue, frames: list[Frame]) -> float:
    books: dict[str, tuple[dict[float, float], dict[float, float]]] = {}
    elapsed, published = 0.0, 0
    clock = time.perf_counter
    for kind, frame in frames:
        timed = kind == "update"
        started = clock()
        message = orjson.loads(frame)
        if venue is Venue.COINBASE:
            if isinstance(message, dict) and message.get("channel") == "l2_data":
                for event in message["events"]:
                    bids = [(u["price_level"], u["new_quantity"]) for u in event["updates"] if u["side"] == "bid"]
                    asks = [(u["price_level"], u["new_quantity"]) for u in event["updates"] if u["side"] == "offer"]
                    baseline_apply(books, event["product_id"], bids, asks)
                    published += timed
        elif isinstance(message, list) and message[-2].startswith("book"):
            bids, asks = [], []
            for payload in message[1:-2]:
                asks += [level[:2] for level in payload.get("as", payload.get("a", []))]
                bids += [level[:2] for level in payload.get("bs", payload.get("b", []))]
            baseline_apply(books, message[-1], bids, asks)
            published += timed
        if timed:
            elapsed += clock() - started
    return published / elapsed


class PeerUnavailable(Exception):
    """cryptofeed could not be installed, imported or run; the message says why, in one line."""


def last_error_line(output: str) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR") or "Error" in line]
    return (errors or lines or ["no output"])[-1][:200]


def peer_python() -> Path:
    """The peer virtualenv's interpreter with cryptofeed==2.4.1 importable; made on first use, reused after."""
    python = PEER_VENV / "bin" / "python"
    check = [str(python), "-c", f"import importlib.metadata as m, {PEER_PACKAGE}; print(m.version('{PEER_PACKAGE}'))"]
    if python.exists():
        found = subprocess.run(check, capture_output=True, text=True, cwd=REPO)
        if found.returncode == 0 and found.stdout.strip() == PEER_VERSION:
            return python
    print(f"peer: installing {PEER_PACKAGE}=={PEER_VERSION} into {PEER_VENV.name}/ (once; takes a few minutes)",
          flush=True)
    steps = {f"python -m venv {PEER_VENV.name}": [sys.executable, "-m", "venv", str(PEER_VENV)],
             f"pip install {PEER_PACKAGE}=={PEER_VERSION}": [str(python), "-m", "pip", "install", "-q",
                                                             f"{PEER_PACKAGE}=={PEER_VERSION}"]}
    for name, step in steps.items():
        if step[0] == sys.executable and python.exists():
            continue
        try:
            done = subprocess.run(step, capture_output=True, text=True, timeout=PEER_INSTALL_TIMEOUT_S, cwd=REPO)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise PeerUnavailable(f"`{name}` failed: {exc}") from exc
        if done.returncode != 0:
            raise PeerUnavailable(f"`{name}` failed: {last_error_line(done.stderr + done.stdout)}")
    found = subprocess.run(check, capture_output=True, text=True, cwd=REPO)
    if found.returncode != 0:
        raise PeerUnavailable(f"{PEER_PACKAGE} installed but does not import: {last_error_line(found.stderr)}")
    return python


class Peer:
    """The cryptofeed harness as a paced subprocess: one pass per request, so its passes interleave with ours."""

    def __init__(self, fixtures: Path) -> None:
        command = [str(peer_python()), str(PEER_SCRIPT), "--fixtures", str(fixtures), "--paced"]
        self.stderr = tempfile.TemporaryFile(mode="w+")
        self.process = subprocess.Popen(command, cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=self.stderr, text=True)

    def run_pass(self) -> dict[str, dict[str, float]]:
        assert self.process.stdin is not None and self.process.stdout is not None
        try:
            self.process.stdin.write("pass\n")
            self.process.stdin.flush()
        except BrokenPipeError as exc:
            raise PeerUnavailable(f"the cryptofeed harness failed: {self.error()}") from exc
        line = self.process.stdout.readline()
        if not line:
            raise PeerUnavailable(f"the cryptofeed harness failed: {self.error()}")
        rates: dict[str, dict[str, float]] = json.loads(line)
        return rates

    def finish(self) -> dict[str, Any]:
        """Close the request stream; the harness answers with its summary (medians, counts, final books)."""
        try:
            out, _ = self.process.communicate(timeout=PEER_RUN_TIMEOUT_S)
        except subprocess.TimeoutExpired as exc:
            self.stop()
            raise PeerUnavailable(f"the cryptofeed harness did not finish within {PEER_RUN_TIMEOUT_S} s") from exc
        if self.process.returncode != 0 or not out.strip():
            raise PeerUnavailable(f"the cryptofeed harness failed: {self.error()}")
        summary: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        return summary

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def error(self) -> str:
        self.stop()
        self.stderr.seek(0)
        return last_error_line(self.stderr.read())


def peer_figures(venue: str, peer: dict[str, Any], updates: int, ours_rate: float) -> tuple[dict[str, Any], list[str]]:
    """The peer's median rates and our median's ratio to each, plus warnings when the peer did not process
    exactly what we did."""
    figures: dict[str, Any] = {}
    warnings = []
    for mode in MODES[venue]:
        run = peer[mode]
        figures[f"cryptofeed_{mode}"] = round(run["rate"])
        figures[f"ratio_{mode}"] = round(ours_rate / run["rate"], 2)
        if run["update_frames"] != updates or run["update_callbacks_per_pass"] != [updates]:
            warnings.append(f"{venue} {mode}: peer timed {run['update_frames']} update frames with "
                            f"{run['update_callbacks_per_pass']} callbacks per pass, we timed {updates}")
        if mode == "checksum":
            figures["cryptofeed_checksum_failures"] = max(run["checksum_failures_per_pass"])
        if run["untimed_errors"]:
            warnings.append(f"{venue} {mode}: {run['untimed_errors']} untimed frames raised inside cryptofeed")
    figures["cryptofeed_ask_levels_at_end"] = sum(levels[3] for levels in peer["noop"]["final_books"].values())
    return figures, warnings


def kraken_v2_figures(frames: list[Frame], rates: list[float], counters: list[FeedCounters],
                      v1_rate: float) -> tuple[dict[str, Any], list[str]]:
    """The v2 row, and a warning for any pass that did not verify and publish every frame: a rate over
    books that stopped verifying would be meaningless."""
    figures = {"recording": f"{RECORDINGS[Venue.KRAKEN][0]} (synthetic v2)", "note": KRAKEN_V2_NOTE,
               "timestamps": "newest v1 level time of each frame", "frames": len(frames),
               "update_frames": sum(kind == "update" for kind, _ in frames), "ours": round(statistics.median(rates)),
               "ratio_v1": round(statistics.median(rates) / v1_rate, 2),
               "checksum_ok": min(c.checksum_ok for c in counters),
               "checksum_fail": max(c.checksum_fail for c in counters),
               "peer": f"none: {PEER_PACKAGE} {PEER_VERSION} has no Kraken v2 handler"}
    bad = [c for c in counters if c.checksum_fail or c.published != len(frames)]
    warnings = [f"kraken-v2*: {len(bad)} of {len(counters)} passes did not verify every frame (last bad pass: "
                f"{bad[-1].checksum_fail} checksum failures, {bad[-1].published} of {len(frames)} published); "
                f"its rate is not comparable"] if bad else []
    return figures, warnings


def measure(fixtures: Path, repeats: int, use_peer: bool) -> tuple[dict[str, Any], str | None, list[str]]:
    """Rounds of one pass per side (ours, baseline, ours on the synthetic v2 stream, then the peer), so load
    drift on a shared machine hits every side alike; each figure is the median over the rounds, each ratio the
    ratio of two medians."""
    frames = {venue: load_frames(venue, fixtures / name) for venue, (name, _) in RECORDINGS.items()}
    rates: dict[Venue, dict[str, list[float]]] = {venue: {"ours": [], "baseline": []} for venue in RECORDINGS}
    precisions = load_precisions(fixtures / KRAKEN_PAIRS)
    v2_frames = kraken_v2_frames(frames[Venue.KRAKEN], precisions)
    v2_rates: list[float] = []
    v2_counters: list[FeedCounters] = []
    peer, peer_note = None, None if use_peer else "peer skipped: --no-peer"
    if use_peer:
        try:
            peer = Peer(fixtures)
        except PeerUnavailable as exc:
            peer_note = f"peer skipped: {exc}"
    for _ in range(repeats):
        for venue, (_, depth) in RECORDINGS.items():
            rates[venue]["ours"].append(ours(venue, depth, frames[venue]))
            rates[venue]["baseline"].append(baseline(venue, frames[venue]))
        v2_rate, counters = ours_v2(v2_frames, precisions)
        v2_rates.append(v2_rate)
        v2_counters.append(counters)
        if peer is not None:
            try:
                peer.run_pass()
            except PeerUnavailable as exc:
                peer, peer_note = None, f"peer skipped: {exc}"
    report: dict[str, Any] = {"bench": "books", "repeats": repeats, "unit": "book updates per second"}
    for venue, (name, _) in RECORDINGS.items():
        mine, base = statistics.median(rates[venue]["ours"]), statistics.median(rates[venue]["baseline"])
        report[venue.value] = {"recording": name, "update_frames": sum(kind == "update" for kind, _ in frames[venue]),
                               "ours": round(mine), "baseline": round(base), "ratio_baseline": round(mine / base, 2)}
    report["kraken_v2"], warnings = kraken_v2_figures(v2_frames, v2_rates, v2_counters,
                                                      statistics.median(rates[Venue.KRAKEN]["ours"]))
    if peer is not None:
        try:
            summary = peer.finish()
        except PeerUnavailable as exc:
            peer_note = f"peer skipped: {exc}"
        else:
            report["peer"] = {"package": f"{PEER_PACKAGE}=={summary['version']}", "python": summary["python"]}
            for venue in RECORDINGS:
                row = report[venue.value]
                figures, venue_warnings = peer_figures(venue.value, summary[venue.value], row["update_frames"],
                                                       statistics.median(rates[venue]["ours"]))
                row.update(figures)
                warnings += venue_warnings
    return report, peer_note, warnings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fixtures", type=Path, default=DEFAULT_FIXTURES)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-peer", action="store_true", help="skip cryptofeed (ours and the baseline only)")
    args = parser.parse_args()
    if not args.fixtures.is_dir():
        raise SystemExit(f"recordings not found in {args.fixtures} (expected ../shared/fixtures beside the repo)")
    print(f"book benchmark: book updates/s on the recorded update frames, median of {args.repeats} rounds")
    report, peer_note, warnings = measure(args.fixtures.resolve(), args.repeats, not args.no_peer)
    print_table(report, peer_note, warnings)
    report["goals"] = {venue: {name: {"goal": goal, "met": report[venue][name] >= goal if name in report[venue]
                                      else None} for name, goal in goals.items()} for venue, goals in GOALS.items()}
    if peer_note:
        report["peer_skipped"] = peer_note.removeprefix("peer skipped: ")
    print(json.dumps(report))


def print_table(report: dict[str, Any], peer_note: str | None, warnings: list[str]) -> None:
    header = f"  {'venue':<11}{'ours':>10}{'baseline':>10}{'cf no-op':>10}{'cf cksum':>10}" \
             f"{'ours/base':>11}{'ours/noop':>11}{'ours/cksum':>12}"
    print(header)
    for venue in RECORDINGS:
        row = report[venue.value]

        def cell(key: str, width: int, ratio: bool = False, row: dict[str, Any] = row) -> str:
            if key not in row:
                return f"{'-':>{width}}"
            return f"{row[key]:>{width}.2f}" if ratio else f"{row[key]:>{width},}"

        print(f"  {venue.value:<11}{cell('ours', 10)}{cell('baseline', 10)}{cell('cryptofeed_noop', 10)}"
              f"{cell('cryptofeed_checksum', 10)}{cell('ratio_baseline', 11, True)}{cell('ratio_noop', 11, True)}"
              f"{cell('ratio_checksum', 12, True)}")
    v2 = report["kraken_v2"]
    print(f"  {'kraken-v2*':<11}{v2['ours']:>10,}{'-':>10}{'-':>10}{'-':>10}{'-':>11}{'-':>11}{'-':>12}"
          f"  ours/v1 {v2['ratio_v1']:.2f}; no peer ({PEER_PACKAGE} {PEER_VERSION} has no v2 handler)")
    print(f"  * {KRAKEN_V2_NOTE}; ours verified {v2['checksum_ok']:,} of {v2['frames']:,} checksums")
    if peer_note:
        print(peer_note)
    else:
        peer_notes(report)
    for warning in warnings:
        print(f"  WARNING {warning}")


def peer_notes(report: dict[str, Any]) -> None:
    coinbase, kraken_v1 = report["coinbase"], report["kraken"]
    print(f"  coinbase: no checksum on this venue, so cryptofeed runs no-op only; its snapshot handler drops every "
          f"ask (\"offer\"), {coinbase['cryptofeed_ask_levels_at_end']} ask levels at the end; with the asks "
          f"loaded it does {coinbase['cryptofeed_noop_asks_loaded']:,}/s (ours/that "
          f"{coinbase['ratio_noop_asks_loaded']:.2f})")
    print(f"  kraken: ours verifies every checksum; cryptofeed checksum failures on this recording: "
          f"{kraken_v1['cryptofeed_checksum_failures']}")


if __name__ == "__main__":
    main()
