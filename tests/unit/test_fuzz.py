"""Property tests on everything that judges untrusted entries: the codec, the control validator and fold, and
the book checks. Each property runs ``TRIARB_FUZZ_EXAMPLES`` examples (300 in ``make test``, 10,000 in
``make chaos``).

The promises under test: decoding raises only ``CodecError`` whatever Redis hands back, and what it accepts
is a valid model that survives a re-encode; folding control entries touches only the venues they name and
never lets one source drop the other's symbols; ``book_problem`` agrees with an oracle written here from the
rules alone (not from its code).
"""

from __future__ import annotations

import json
import math
import os
import re
from collections import Counter
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.bus.entries import StreamEntry
from producers.control import ControlFollower
from schemas import CodecError, Snapshot, Subject, SymbolControl, decode
from schemas.base import VENUES, WireModel
from schemas.checks import MAX_LEVELS, MAX_PRICE, MAX_SIZE, book_problem, snapshot_problem
from schemas.codec import SUBJECT_MODELS, decode_as
from schemas.control import MAX_SYMBOLS_PER_VENUE, ControlOp, ControlSource, SymbolState
from schemas.market import Level
from schemas.streams import StreamNames
from tests import samples
from tests.unit.test_codec import VALID_MODELS, as_redis_returns

FUZZ = settings(
    max_examples=int(os.environ.get("TRIARB_FUZZ_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)
"""Read at import: the autouse fixture in tests/conftest.py clears TRIARB_* variables before each test."""

CANONICAL = re.compile(r"[A-Z0-9]{1,20}-[A-Z0-9]{1,20}")
"""The canonical symbol spelling, written out again here so the invariant does not trust schemas.base."""

# --- what Redis can hand a reader -------------------------------------------------------------------------------

INVALID_UTF8 = [b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"BTC-\x80USD", b'{"coinbase": ["\xff"]}']
NUMBER_TEXTS = [
    "1", "01", " 1", "1.0", "-1", "-0", "2", "0", "1e3", "0x10", "1_000", "\u0661",  # Arabic-Indic one
    "9" * 19, "9" * 20, "1" + "0" * 30, "9" * 5000, "NaN", "inf", "",
]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=25,
)
deep_nesting = st.integers(1, 3000).map(lambda depth: "[" * depth + "]" * depth)
unbalanced = st.integers(1, 50).map(lambda depth: '{"coinbase": ' + "[" * depth)


def as_wire(texts: st.SearchStrategy[str]) -> st.SearchStrategy[str | bytes]:
    """A text as redis-py returns it (bytes), or as a caller might pass it (str)."""
    return texts.map(str.encode) | texts


junk_values = (
    as_wire(st.sampled_from(NUMBER_TEXTS) | st.text(max_size=20) | json_values.map(json.dumps) | deep_nesting
            | unbalanced)
    | st.binary(max_size=30) | st.sampled_from(INVALID_UTF8)
)
"""Any field value: numbers as text (huge, signed, odd spellings), JSON of any shape, bytes that are not UTF-8."""


def wire_key(names: list[str]) -> st.SearchStrategy[str | bytes]:
    return as_wire(st.sampled_from(names) | st.text(max_size=8)) | st.binary(max_size=6)


@st.composite
def mutated(draw: st.DrawFn, fields: dict[bytes, bytes], names: list[str],
            values: st.SearchStrategy[str | bytes]) -> dict[Any, str | bytes]:
    """A valid entry after 0-3 edits: a field dropped (``v`` too), a value replaced, a field added, a key as str."""
    out: dict[Any, str | bytes] = dict(fields)
    for _ in range(draw(st.integers(0, 3))):
        edit = draw(st.sampled_from(["drop", "replace", "add", "str key"]))
        if edit == "add" or not out:
            out[draw(wire_key(names))] = draw(values)
            continue
        key = draw(st.sampled_from(sorted(out, key=repr)))
        if edit == "drop":
            del out[key]
        elif edit == "replace":
            out[key] = draw(values)
        elif isinstance(key, bytes) and key.isascii():
            out[key.decode()] = out.pop(key)
    return out


def field_maps(subject: Subject) -> st.SearchStrategy[dict[Any, str | bytes]]:
    """Random maps over the subject's field names and others, and valid entries of the subject, mutated."""
    names = sorted(SUBJECT_MODELS[subject].model_fields)
    random_maps = st.dictionaries(wire_key(names), junk_values, max_size=len(names) + 2)
    edited = VALID_MODELS[subject].map(as_redis_returns).flatmap(lambda f: mutated(f, names, junk_values))
    return random_maps | edited


# --- control entries --------------------------------------------------------------------------------------------

CATALOG = ["BTC-USD", "ETH-USD", "ETH-BTC", "SOL-USD"]
venue_names = st.sampled_from([*VENUES, "*", "binance", "Coinbase", "", "kraken "]) | st.text(max_size=8)
symbol_texts = (st.sampled_from([*CATALOG, "DOGE-EUR", "btc-usd", "XBT/USD", "BTCUSD", "", "BTC-USD-EUR"])
                | st.from_regex(CANONICAL, fullmatch=True) | st.text(max_size=8))
near_limit = st.tuples(st.sampled_from(VENUES), st.sampled_from([MAX_SYMBOLS_PER_VENUE, MAX_SYMBOLS_PER_VENUE + 1])
                       ).map(lambda vn: {vn[0]: [f"S{i}-USD" for i in range(vn[1])]})
symbols_json = st.one_of(
    st.dictionaries(venue_names, st.lists(symbol_texts, max_size=6), max_size=3),
    st.lists(symbol_texts, max_size=4),  # the retired flat list
    near_limit,
    json_values,
).map(json.dumps)
control_values = {
    "v": as_wire(st.sampled_from(NUMBER_TEXTS)),
    "op": as_wire(st.sampled_from([*ControlOp, "replace", "SET", ""]) | st.text(max_size=6)),
    "source": as_wire(st.sampled_from([*ControlSource, "admin", "User"]) | st.text(max_size=6)),
    "symbols": as_wire(symbols_json | deep_nesting | unbalanced) | st.sampled_from(INVALID_UTF8),
    "ts": as_wire(st.sampled_from(NUMBER_TEXTS) | st.integers().map(str)),
    "issued_by": as_wire(st.text(max_size=70)),
}
plausible_symbols = st.dictionaries(st.sampled_from(VENUES), st.lists(st.sampled_from([*CATALOG, "DOGE-EUR"]),
                                                                      min_size=1, max_size=4), min_size=1)
control_field_maps = st.one_of(
    st.fixed_dictionaries({"v": st.just(b"1"), "symbols": plausible_symbols.map(json.dumps).map(str.encode)},
                          optional={k: v for k, v in control_values.items() if k not in ("v", "symbols")}),
    st.fixed_dictionaries({"v": st.just(b"1")}, optional={k: v for k, v in control_values.items() if k != "v"}),
    st.fixed_dictionaries({}, optional=control_values),
    field_maps(Subject.CONTROL),
    VALID_MODELS[Subject.CONTROL].map(as_redis_returns).flatmap(
        lambda f: mutated(f, list(control_values), st.one_of(*control_values.values(), junk_values))),
)
"""Control entries as they could sit on the stream: well-typed fields with bad content, and garbage."""


def decoded_control(fields: dict[Any, str | bytes]) -> SymbolControl | None:
    try:
        return decode_as(SymbolControl, fields)
    except CodecError as exc:
        assert exc.reason
        return None


def test_control_decoding_rejects_with_codec_error_or_yields_an_entry_within_every_limit() -> None:
    verdicts: Counter[str] = Counter()

    @FUZZ
    @given(fields=control_field_maps)
    def decode_control(fields: dict[Any, str | bytes]) -> None:
        control = decoded_control(fields)
        verdicts["rejected" if control is None else "accepted"] += 1
        if control is None:
            return
        assert 1 <= len(control.symbols) <= len(VENUES)
        for venue, symbols in control.symbols.items():
            assert venue in VENUES
            assert 1 <= len(symbols) <= MAX_SYMBOLS_PER_VENUE
            assert len(set(symbols)) == len(symbols), "duplicates survived"
            assert all(CANONICAL.fullmatch(symbol) for symbol in symbols)
        assert control.op in set(ControlOp) and control.source in set(ControlSource)
        assert 1 <= len(control.issued_by) <= 64 and control.ts >= 0
        assert decode_as(SymbolControl, as_redis_returns(control)) == control

    decode_control()
    assert verdicts["accepted"] and verdicts["rejected"], verdicts  # the invariants above were checked


async def _never_applied(symbols: list[str]) -> None:
    raise AssertionError("consider must not apply anything")


def test_producer_verdict_on_any_entry_is_apply_reject_or_ignore_and_never_an_exception() -> None:
    verdicts: Counter[str] = Counter()

    @FUZZ
    @given(fields=control_field_maps, venue=st.sampled_from(VENUES))
    def consider(fields: dict[Any, str | bytes], venue: str) -> None:
        follower = ControlFollower(venue, None, StreamNames(), defaults=[],  # type: ignore[arg-type]
                                   catalog=CATALOG, apply=_never_applied, link=None)  # type: ignore[arg-type]
        control, reason = follower.consider(StreamEntry(stream="strategy.ctrl.symbols", id="1-0", fields=fields))
        if control is not None:
            verdicts["apply"] += 1
            assert reason is None
            assert venue in control.symbols
            assert set(control.symbols[venue]) <= set(CATALOG)
        elif reason is not None:
            verdicts["reject"] += 1
            assert reason.strip()
        else:  # a valid entry that is only other venues' business
            verdicts["ignore"] += 1
            assert venue not in decode_as(SymbolControl, fields).symbols

    consider()
    assert verdicts["apply"] and verdicts["reject"] and verdicts["ignore"], verdicts


# --- folding control entries ------------------------------------------------------------------------------------

POOL = st.sampled_from(["BTC-USD", "ETH-USD", "ETH-BTC", "SOL-USD", "SOL-BTC", "ADA-USD"])
valid_controls = st.builds(
    SymbolControl, op=st.sampled_from(list(ControlOp)), source=st.sampled_from(list(ControlSource)),
    symbols=st.dictionaries(st.sampled_from(VENUES), st.lists(POOL, min_size=1, max_size=4), min_size=1),
)
configured = st.fixed_dictionaries({}, optional={venue: st.lists(POOL, max_size=4) for venue in VENUES})
"""Configured symbols per venue; a config file may repeat one (VenueSettings.symbols is a plain list)."""
venue_filters = st.none() | st.lists(st.sampled_from(VENUES), unique=True).map(tuple)


def reference_fold(defaults: dict[str, list[str]], controls: list[SymbolControl],
                   venues: tuple[str, ...] | None) -> dict[tuple[ControlSource, str], set[str]]:
    """The documented semantics on plain sets: set replaces, add unites, remove subtracts, per (source, venue)."""
    held = {(source, venue): set(defaults.get(venue, [])) if source is ControlSource.USER else set()
            for source in ControlSource for venue in VENUES}
    for control in controls:
        for venue, symbols in control.symbols.items():
            if venues is not None and venue not in venues:
                continue
            key = (control.source, venue)
            if control.op is ControlOp.SET:
                held[key] = set(symbols)
            elif control.op is ControlOp.ADD:
                held[key] |= set(symbols)
            else:
                held[key] -= set(symbols)
    return held


@FUZZ
@given(defaults=configured, controls=st.lists(valid_controls, max_size=12), venues=venue_filters)
def test_each_entry_changes_only_the_venues_it_names(
        defaults: dict[str, list[str]], controls: list[SymbolControl], venues: tuple[str, ...] | None) -> None:
    state = SymbolState(defaults={venue: list(symbols) for venue, symbols in defaults.items()})
    for control in controls:
        before = {venue: state.wanted(venue) for venue in VENUES}
        state.apply(control, venues)
        for venue in VENUES:
            if venue not in control.symbols or (venues is not None and venue not in venues):
                assert state.wanted(venue) == before[venue]
    for venue in VENUES:
        if not any(venue in control.symbols for control in controls):
            assert state.wanted(venue) == list(dict.fromkeys(defaults.get(venue, [])))  # as configured, once each


@FUZZ
@given(defaults=configured, controls=st.lists(valid_controls, max_size=12), venues=venue_filters)
def test_fold_matches_set_semantics_and_wanted_is_the_union_user_first(
        defaults: dict[str, list[str]], controls: list[SymbolControl], venues: tuple[str, ...] | None) -> None:
    state = SymbolState(defaults={venue: list(symbols) for venue, symbols in defaults.items()})
    for control in controls:
        state.apply(control, venues)
    expected = reference_fold(defaults, controls, venues)
    for venue in VENUES:
        user = state.current(ControlSource.USER, venue)
        detector = state.current(ControlSource.DETECTOR, venue)
        wanted = state.wanted(venue)
        assert set(user) == expected[ControlSource.USER, venue]
        assert set(detector) == expected[ControlSource.DETECTOR, venue]
        assert set(wanted) >= set(user) and set(wanted) >= set(detector)
        assert set(wanted) == set(user) | set(detector)
        assert len(wanted) == len(set(wanted)), "a symbol is held twice"
        assert wanted[:len(user)] == user


# --- codec, every subject ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("subject", list(Subject))
def test_decoding_any_field_map_raises_only_codec_error_or_yields_a_valid_model(subject: Subject) -> None:
    model_type = SUBJECT_MODELS[subject]
    verdicts: Counter[str] = Counter()

    @FUZZ
    @given(fields=field_maps(subject))
    def decode_any(fields: dict[Any, str | bytes]) -> None:
        try:
            model = decode(subject, fields)
        except CodecError as exc:
            verdicts["rejected"] += 1
            assert exc.reason
            return
        verdicts["accepted"] += 1
        assert type(model) is model_type
        assert decode(subject, as_redis_returns(model)) == model  # what is accepted can be passed on

    decode_any()
    assert verdicts["accepted"] and verdicts["rejected"], verdicts


@FUZZ
@given(subject=st.text(max_size=30).filter(lambda name: name not in set(Subject)))
def test_decoding_for_an_unknown_subject_is_a_codec_error(subject: str) -> None:
    with pytest.raises(CodecError, match="no model for subject"):
        decode(subject, as_redis_returns(samples.trade()))


any_valid_model = st.sampled_from(list(VALID_MODELS)).flatmap(
    lambda subject: VALID_MODELS[subject].map(lambda model: (subject, model)))


@FUZZ
@given(subject_and_model=any_valid_model)
def test_every_valid_model_round_trips_unchanged(subject_and_model: tuple[Subject, WireModel]) -> None:
    """test_codec.py runs this per subject at hypothesis' default budget; here it takes the fuzz budget."""
    subject, model = subject_and_model
    assert decode(subject, as_redis_returns(model)) == model


# --- book checks --------------------------------------------------------------------------------------------------

REL_TOL, ABS_TOL = Fraction(1e-6), Fraction(1e-12)
"""Cumulative sizes may differ from the exact running total by rounding: 1e-6 relative or 1e-12 absolute."""


def oracle_accepts(bids: list[Level], asks: list[Level]) -> bool:
    """The book rules, computed exactly: at most MAX_LEVELS per side; prices in (0, MAX_PRICE] and sizes in
    (0, MAX_SIZE], finite; bids strictly falling and asks strictly rising from the best; each total the
    running sum of sizes within rounding; best bid strictly below best ask."""
    if len(bids) > MAX_LEVELS or len(asks) > MAX_LEVELS:
        return False
    for levels, falling in ((bids, True), (asks, False)):
        running = Fraction(0)
        for index, (price, size, total) in enumerate(levels):
            if not (math.isfinite(price) and 0 < price <= MAX_PRICE):
                return False
            if not (math.isfinite(size) and 0 < size <= MAX_SIZE):
                return False
            if index:
                previous = levels[index - 1][0]
                if not (price < previous if falling else price > previous):
                    return False
            running += Fraction(size)
            if not math.isfinite(total):
                return False
            error = abs(Fraction(total) - running)
            if error > max(REL_TOL * max(abs(Fraction(total)), running), ABS_TOL):
                return False
    return not (bids and asks and bids[0][0] >= asks[0][0])


EDGE_PRICES = [0.0, -0.0, -1.0, 5e-324, 100.0, MAX_PRICE, math.nextafter(MAX_PRICE, math.inf), 1e300,
               math.inf, -math.inf, math.nan]
EDGE_SIZES = [0.0, -0.0, -1.0, 5e-324, 1e-13, MAX_SIZE, math.nextafter(MAX_SIZE, math.inf), 1e300,
              math.inf, math.nan]
FAR_BIDS = [5e-324, 0.0, -0.0, -1.0, -math.inf, math.nan]
FAR_ASKS = [MAX_PRICE, math.nextafter(MAX_PRICE, math.inf), 1e300, math.inf, math.nan]
DEFECTS = ["price", "far price", "size", "total rounded", "total wrong", "total anything", "unsorted",
           "repeated price"]


@st.composite
def any_side(draw: st.DrawFn, falling: bool) -> list[Level]:
    """Up to 6 plausible levels (bids 90-100.5, asks 99.5-110, so books sometimes cross or lock at 100) with
    0-2 defects: a price or size that is zero, negative, huge, inf, NaN or any float; the worst price moved
    past its bound (the side stays ordered, only the bound is broken); a total rounded (still fine), wrong or
    anything; levels out of order; a price repeated. Totals are summed after the defects, as a venue would."""
    plausible = st.floats(90, 100.5) | st.just(100.0) if falling else st.floats(99.5, 110) | st.just(100.0)
    level_prices = sorted(draw(st.lists(plausible, max_size=6, unique=True)), reverse=falling)
    level_sizes = draw(st.lists(st.floats(1e-8, 1e3), min_size=len(level_prices), max_size=len(level_prices)))
    totals = ["exact"] * len(level_prices)
    for defect in draw(st.lists(st.sampled_from(DEFECTS), max_size=2)) if level_prices else []:
        index = draw(st.integers(0, len(level_prices) - 1))
        if defect == "price":
            level_prices[index] = draw(st.sampled_from(EDGE_PRICES) | st.floats())
        elif defect == "far price":  # the worst level: the side stays in order, only the bound is broken
            level_prices[-1] = draw(st.sampled_from(FAR_BIDS if falling else FAR_ASKS))
        elif defect == "size":
            level_sizes[index] = draw(st.sampled_from(EDGE_SIZES) | st.floats())
        elif defect == "unsorted":
            level_prices = draw(st.permutations(level_prices))
        elif defect == "repeated price" and index:
            level_prices[index] = level_prices[index - 1]
        elif defect.startswith("total"):
            totals[index] = defect
    levels: list[Level] = []
    running = 0.0
    for price, size, total in zip(level_prices, level_sizes, totals, strict=True):
        running += size
        cumulative = {"exact": running, "total rounded": running * (1 + 1e-9),
                      "total wrong": running * (1 + 1e-3) + 1e-9}.get(total)
        levels.append((price, size, draw(st.floats()) if cumulative is None else cumulative))
    return levels


def test_book_problem_never_raises_and_accepts_exactly_the_books_the_rules_allow() -> None:
    verdicts: Counter[str] = Counter()

    @FUZZ
    @given(bids=any_side(falling=True), asks=any_side(falling=False))
    def judge(bids: list[Level], asks: list[Level]) -> None:
        problem = book_problem(bids, asks)
        assert (problem is None) == oracle_accepts(bids, asks), problem
        verdicts["accepted two-sided" if problem is None and bids and asks else "rejected" if problem else "other"] += 1

    judge()
    assert verdicts["accepted two-sided"] and verdicts["rejected"], verdicts  # both sides of the rule were exercised


@st.composite
def valid_books(draw: st.DrawFn) -> tuple[list[Level], list[Level]]:
    """Distinct prices split into bids below asks, positive sizes, totals summed exactly (fsum)."""
    level_prices = sorted(draw(st.lists(st.floats(min_value=0, max_value=MAX_PRICE, exclude_min=True),
                                        unique=True, max_size=12)))
    split = draw(st.integers(0, len(level_prices)))

    def side(side_prices: list[float]) -> list[Level]:
        level_sizes = draw(st.lists(st.floats(min_value=0, max_value=MAX_SIZE, exclude_min=True),
                                    min_size=len(side_prices), max_size=len(side_prices)))
        return [(price, size, math.fsum(level_sizes[:i + 1]))
                for i, (price, size) in enumerate(zip(side_prices, level_sizes, strict=True))]

    return side(level_prices[:split][::-1]), side(level_prices[split:])


@FUZZ
@given(book=valid_books())
def test_every_well_formed_book_is_accepted(book: tuple[list[Level], list[Level]]) -> None:
    bids, asks = book
    assert oracle_accepts(bids, asks)
    assert book_problem(bids, asks) is None
    snapshot = Snapshot.model_validate(samples.snapshot().model_dump() | {"bids": bids, "asks": asks})
    expected = None if bids or asks else "empty book: no bids and no asks"
    assert snapshot_problem(snapshot) == expected
