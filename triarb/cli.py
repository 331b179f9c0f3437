"""The ``triarb`` command: every entry point of the stack, one sub-command each."""

from __future__ import annotations

import argparse
import asyncio
import errno
import json
import os
import shutil
import sys
import time
import tomllib
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, NoReturn

from pydantic import ValidationError
from redis.asyncio import Redis
from redis.exceptions import RedisError

from common.acl import AclConfigError, render_config
from common.bus import FanoutReader, Publisher
from common.config import DEFAULT_CONFIG_FILE, Role, Settings, VenueSettings
from common.control import ControlRejected, publish_control, read_control_state
from common.gc_tuning import tune_gc_for_stream_worker
from common.logging import configure_logging
from common.markets import MarketInfo, load_markets, venue_catalog
from common.metrics import installed_version
from common.redis import (
    EmbeddedRedis,
    EmbeddedRedisError,
    RedisEndpoint,
    RedisNotConfiguredError,
    connect,
    repo_redis_conf,
    resolve_endpoint,
    write_private,
)
from common.redis_link import RedisProbe
from common.service import CheckResult, ServiceEndpoint
from consumers.detector.service import DetectorService, run_workers
from consumers.paper_broker import PaperBroker, run_paper_workers
from consumers.persistence import ArchiveLock, ArchiveLockedError, PersistenceWriter
from dashboard.app import validation_reasons
from dashboard.server import serve_dashboard
from producers.capture import CaptureFormatError
from producers.feed import Venue
from producers.replay import check_capture
from producers.service import VenueProducer
from producers.simulators.demo import start_demo_venue
from producers.simulators.replayvenue import ReplayVenue
from schemas import EpisodeEvent, Subject, SymbolControl
from schemas.control import ControlOp, ControlSource
from triarb.backtest import backtest, progress_bar, write_ndjson
from triarb.stack import (
    StackError,
    capture_writer,
    detector_markets,
    install_stop_signals,
    producer_check,
    run_stack,
)
from triarb.status import collect as collect_status
from triarb.status import render as render_status
from triarb.tail import format_entry


class CommandError(Exception):
    """A problem the user can fix; printed without a traceback, exit status 1."""


REACHABLE_TIMEOUT_S = 5.0


async def reachable(settings: Settings, role: Role, *, endpoint: RedisEndpoint | None = None) -> Redis:
    """A client as ``role`` that has answered a PING: a command the user runs against a Redis that is not there
    says so in one line at once, instead of retrying in silence (faults after this are ridden out)."""
    redis = connect(settings, role, endpoint=endpoint)
    try:
        async with asyncio.timeout(REACHABLE_TIMEOUT_S):
            await redis.ping()
    except (RedisError, OSError, TimeoutError) as exc:
        await redis.aclose()
        where = settings.masked()["redis_url"] if endpoint is None else f"{endpoint.host}:{endpoint.port}"
        reason = str(exc) or f"no answer within {REACHABLE_TIMEOUT_S:g}s"
        raise CommandError(f"cannot reach Redis at {where} as {role.value}: {reason}") from exc
    return redis


def run_async(main: Coroutine[Any, Any, None]) -> None:
    """Run on uvloop where available (the event loop the stack is tuned for)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency except on Windows
        asyncio.run(main)
        return
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main)


def cmd_up(args: argparse.Namespace, settings: Settings) -> None:
    async def serve(endpoint: RedisEndpoint | None) -> None:
        if endpoint is None:  # an external Redis: say it is missing before anything says "up"
            await (await reachable(settings, Role.PRODUCER)).aclose()
        stop = asyncio.Event()
        install_stop_signals(stop)

        def announce(service: Any) -> None:
            where = settings.masked()["redis_url"]
            if endpoint is not None:
                where = f"embedded redis-server on {endpoint.host}:{endpoint.port}"
            print(f"triarb is up: {where}; /healthz and /metrics on http://{settings.service_host}:{service.port}")
            print("  watch it:  .venv/bin/triarb tail md.snapshot      stop: Ctrl-C", flush=True)

        def announce_dashboard(port: int) -> None:
            print(f"  dashboard: http://{settings.dashboard_host}:{port}", flush=True)

        try:
            await run_stack(settings, stop, endpoint=endpoint, demo=args.demo, on_ready=announce,
                            on_dashboard=announce_dashboard, embedded=embedded)
        except StackError as exc:
            raise CommandError(str(exc)) from exc

    if settings.redis_url:
        embedded = None
        run_async(serve(None))
        return
    embedded = EmbeddedRedis(settings)
    try:
        endpoint = embedded.start()
    except EmbeddedRedisError as exc:
        raise CommandError(str(exc)) from exc
    try:
        run_async(serve(endpoint))
    finally:
        embedded.stop()
        print("stopped: embedded redis-server shut down, data kept in", embedded.data_dir, flush=True)


def stream_name(settings: Settings, name: str) -> str:
    """Accept a subject (``md.snapshot``) or ``deadletter`` and apply the key prefix."""
    if name == "deadletter":
        return settings.names.deadletter
    try:
        return settings.names.stream(Subject(name))
    except ValueError as exc:
        known = ", ".join([*(s.value for s in Subject), "deadletter"])
        raise CommandError(f"unknown stream {name!r}; one of: {known}") from exc


def cmd_tail(args: argparse.Namespace, settings: Settings) -> None:
    streams = {stream_name(settings, name): args.start for name in args.streams}

    async def tail() -> None:
        stop = asyncio.Event()
        install_stop_signals(stop)
        redis = await reachable(settings, Role.DASHBOARD)
        shown = 0
        try:
            if args.last:
                for stream in streams:
                    history = list(reversed(await FanoutReader(redis, {stream: "0"}).last(args.last)))
                    for entry in history:
                        print(format_entry(settings.names, entry, raw=args.raw), flush=True)
                    if history:  # follow on from exactly the last entry shown: no gap, no repeat
                        streams[stream] = history[-1].id
            reader = FanoutReader(redis, streams, block_ms=200)
            async for entry in reader.follow(stop):
                print(format_entry(settings.names, entry, raw=args.raw), flush=True)
                shown += 1
                if args.count and shown >= args.count:
                    return
        finally:
            await redis.aclose()

    run_async(tail())


def cmd_status(args: argparse.Namespace, settings: Settings) -> None:
    async def show() -> None:
        redis = await reachable(settings, Role.DASHBOARD)
        try:
            print(render_status(await collect_status(redis, settings, episodes=args.episodes)), flush=True)
        finally:
            await redis.aclose()

    run_async(show())


def cmd_symbols(args: argparse.Namespace, settings: Settings) -> None:
    if args.action == "show":
        run_async(show_symbols(settings))
        return
    try:
        control = SymbolControl(op=ControlOp(args.action), symbols={args.venue: args.symbols},
                                ts=time.time_ns() // 1_000_000, issued_by=args.issued_by)
    except ValidationError as exc:
        reasons = "; ".join(err["msg"] for err in exc.errors())
        raise CommandError(f"control message rejected: {reasons}") from exc

    async def publish() -> None:
        redis = await reachable(settings, Role.CONTROL)
        try:
            await publish_control(redis, settings, control)
        except ControlRejected as exc:
            raise CommandError(f"control message rejected: {exc}") from exc
        finally:
            await redis.aclose()
        print(f"published to {settings.names.stream(Subject.CONTROL)}: {args.action} {args.venue}: "
              f"{', '.join(control.symbols[args.venue])}")

    run_async(publish())


async def show_symbols(settings: Settings) -> None:
    """Per venue, the user set and the detector set as producers fold them; a producer holds their union."""
    redis = await reachable(settings, Role.CONTROL)
    try:
        state = await read_control_state(redis, settings.names, {})
    finally:
        await redis.aclose()
    for venue in [v.value for v in Venue]:
        user = state.sets.get((ControlSource.USER, venue))
        print(f"{venue}:")
        shown = ", ".join(user) if user is not None else "not set (the producer holds its configured symbols)"
        print(f"  user: {shown}")
        print(f"  detector: {', '.join(state.current(ControlSource.DETECTOR, venue)) or '(none)'}")


def cmd_redis_config(args: argparse.Namespace, settings: Settings) -> None:
    """Render redis.conf for an external redis-server (compose): the server part and a 0600 ACL file with
    every role's password hash, written before that server starts, so roles can log in from its first
    connection and after every restart (the embedded server does the same itself)."""
    missing = [f"TRIARB_REDIS_PASSWORDS__{role.value.upper()}" for role in Role if not settings.password(role)]
    if missing:
        raise CommandError(f"set {', '.join(missing)}: every role needs a password in the ACL file")
    conf = args.conf or settings.redis_conf or repo_redis_conf()
    try:
        server_conf, acl = render_config(conf.read_text(), {role: settings.password(role) or "" for role in Role})
    except OSError as exc:
        raise CommandError(f"cannot read {conf}: {exc.strerror}") from exc
    except AclConfigError as exc:
        raise CommandError(f"{conf}: {exc}") from exc
    args.out.mkdir(parents=True, exist_ok=True)
    write_private(args.out / "redis.conf", server_conf)
    write_private(args.out / "users.acl", acl)
    print(f"wrote {args.out / 'redis.conf'} and {args.out / 'users.acl'} (0600): "
          f"redis-server {args.out / 'redis.conf'} --aclfile {args.out / 'users.acl'}")


def cmd_config(args: argparse.Namespace, settings: Settings) -> None:
    print(json.dumps(settings.masked(), indent=2, default=str))


def cmd_redis_cli(args: argparse.Namespace, settings: Settings) -> None:
    """Exec redis-cli against the stack's Redis as an ACL user; the password goes via REDISCLI_AUTH."""
    binary = shutil.which("redis-cli")
    if binary is None:
        raise CommandError("redis-cli is not installed (apt-get install redis-tools)")
    role = Role(args.role)
    endpoint = resolve_endpoint(settings)
    if endpoint is not None:
        target = ["-h", endpoint.host, "-p", str(endpoint.port), "--user", role.value]
        password = endpoint.passwords.get(role)
    elif settings.redis_url:
        target = ["-u", settings.redis_url]
        password = settings.password(role)
        if password is not None:
            target += ["--user", role.value]
    else:
        raise CommandError(str(RedisNotConfiguredError()))
    env = dict(os.environ)
    if password is not None:
        env["REDISCLI_AUTH"] = password
    passed = args.args[1:] if args.args[:1] == ["--"] else args.args
    os.execve(binary, [binary, *target, *passed], env)


def cmd_replay(args: argparse.Namespace, settings: Settings) -> None:
    if not args.file.is_file():
        raise CommandError(f"no such capture file: {args.file}")
    try:
        if args.check:
            print(json.dumps(check_capture(args.file, top_n=args.top), indent=2 if args.pretty else None))
            return
        venue = ReplayVenue(args.file, speed=None if args.max_speed else args.speed)
    except (CaptureFormatError, ValueError) as exc:
        raise CommandError(str(exc)) from exc

    async def replay() -> None:
        stop = asyncio.Event()
        install_stop_signals(stop)
        url = await venue.start()
        redis = connect(settings, Role.PRODUCER)
        try:
            async with Publisher(redis, settings.names, settings.streams, settings.bus) as publisher:
                producer = VenueProducer(
                    venue.venue, VenueSettings(url=url, symbols=venue.book_symbols(), book_depth=venue.depth or 10),
                    settings.producers, publisher, names=settings.names,
                )
                running = asyncio.create_task(producer.run(stop))
                while not stop.is_set() and producer.feed.counters.frames < len(venue.frames):
                    await asyncio.sleep(0.05)
                stop.set()
                await running
                counters = producer.feed.counters
                print(json.dumps({"file": str(args.file), "venue": venue.venue.value, "frames": counters.frames,
                                  "published": counters.published, "checksum_fail": counters.checksum_fail,
                                  "gaps": counters.gaps, "parse_errors": counters.parse_errors}))
        finally:
            await venue.stop()
            await redis.aclose()

    run_async(replay())


def cmd_producer(args: argparse.Namespace, settings: Settings) -> None:
    venue = Venue(args.venue)
    venue_settings = getattr(settings.producers, venue.value).model_copy()
    if args.venue_url:
        venue_settings.url = args.venue_url
    if args.symbols:
        venue_settings.symbols = args.symbols

    async def produce() -> None:
        stop = asyncio.Event()
        install_stop_signals(stop)
        redis = connect(settings, Role.PRODUCER)
        service = ServiceEndpoint(f"producer-{venue.value}", host=settings.service_host, port=settings.service_port)
        try:
            async with Publisher(redis, settings.names, settings.streams, settings.bus) as publisher:
                catalog = venue_catalog(venue.value, venue_settings.symbols + venue_settings.markets, settings.var_dir)
                producer = VenueProducer(venue, venue_settings, settings.producers, publisher, names=settings.names,
                                         control_redis=redis, capture=capture_writer(settings, venue),
                                         catalog=catalog)
                service.add_check(venue.value, producer_check(producer))
                probe = RedisProbe()
                service.add_check("redis", probe.result)
                await service.start()
                print(f"producer {venue.value}: {venue_settings.url} {', '.join(venue_settings.symbols)}; "
                      f"/healthz on port {service.port}", flush=True)
                async with asyncio.TaskGroup() as tasks:
                    tasks.create_task(probe.watch(redis, stop))
                    tasks.create_task(producer.run(stop))
        finally:
            await service.stop()
            await redis.aclose()

    run_async(produce())


def cmd_demo_venue(args: argparse.Namespace, settings: Settings) -> None:
    """Serve one demo venue on its own, for a producer in another process (compose, the chaos suite)."""
    venue = Venue(args.venue)

    async def serve() -> None:
        stop = asyncio.Event()
        install_stop_signals(stop)
        try:
            served = await start_demo_venue(venue, host=args.host, port=args.port)
        except OSError as exc:
            raise CommandError(f"cannot serve the demo venue on {args.host}:{args.port}: {exc.strerror}") from exc
        try:
            print(f"demo venue {venue.value}: {served.url} serving {', '.join(served.symbols)} "
                  f"(triarb producer {venue.value} --venue-url {served.url} --symbols {' '.join(served.symbols)})",
                  flush=True)
            await stop.wait()
        finally:
            await served.stop()

    run_async(serve())


def cmd_backtest(args: argparse.Namespace, settings: Settings) -> None:
    missing = [str(path) for path in [*args.captures, *args.markets] if not path.is_file()]
    if missing:
        raise CommandError(f"no such file: {', '.join(missing)}")
    episodes_out = args.episodes or args.out.with_name(f"{args.out.stem}.episodes{args.out.suffix or '.ndjson'}")
    for out in (args.out, episodes_out):  # before the run, not after it
        if not out.parent.is_dir():
            raise CommandError(f"cannot write {out}: no directory {out.parent}; create it or choose another path")
    markets = read_market_files(args.markets)
    try:
        result = backtest(args.captures, settings.detector, markets=markets,
                          snapshot_levels=settings.producers.snapshot_levels,
                          progress=None if args.quiet else progress_bar)
    except (CaptureFormatError, ValueError) as exc:
        raise CommandError(str(exc)) from exc
    write_ndjson(result.opportunities, args.out)
    write_ndjson(result.episodes, episodes_out)
    filled = sum(1 for o in result.opportunities if o.fill is not None and o.fill.status == "filled")
    opened = sum(1 for e in result.episodes if e.event is EpisodeEvent.OPEN)
    print(f"{len(result.opportunities)} opportunities ({filled} paper-filled) written to {args.out}; "
          f"{opened} episodes ({len(result.episodes)} events) to {episodes_out}")


def read_market_files(paths: Sequence[Path]) -> dict[str, list[MarketInfo]]:
    """``--markets FILE...``: discovery cache files (``var/discovery/{venue}.json``), grouped by venue."""
    markets: dict[str, list[MarketInfo]] = {}
    for path in paths:
        try:
            listed = load_markets(path)
        except (ValueError, TypeError) as exc:  # orjson's JSONDecodeError is a ValueError
            raise CommandError(f"{path}: not a market list as triarb discovery writes it ({exc})") from exc
        if not listed:
            raise CommandError(f"{path}: lists no markets")
        for market in listed:
            markets.setdefault(market.venue, []).append(market)
    return markets


def cmd_detector(args: argparse.Namespace, settings: Settings) -> None:
    venues = {Venue.COINBASE: settings.producers.coinbase, Venue.KRAKEN: settings.producers.kraken}
    markets = detector_markets(settings, venues)

    async def detect(redis: Redis, publisher: Publisher, stop: asyncio.Event, endpoint: ServiceEndpoint) -> None:
        service = DetectorService(settings, redis, publisher, markets)
        triangles = sum(len(d.triangles) for d in service.detectors.values())
        workers = args.workers or settings.detector.workers
        endpoint.add_check("triangles", lambda: CheckResult(triangles > 0, f"{triangles} triangles"))
        print(f"detector: {triangles} triangles, {workers} worker(s); /healthz on port {endpoint.port}", flush=True)
        await run_workers(service, workers, stop, burst=args.burst, start_id=args.start)

    run_async(serve_group_workers(settings, Role.DETECTOR, "detector", detect))


def cmd_paper(args: argparse.Namespace, settings: Settings) -> None:
    venues = {Venue.COINBASE: settings.producers.coinbase, Venue.KRAKEN: settings.producers.kraken}
    markets = detector_markets(settings, venues)

    async def fill(redis: Redis, publisher: Publisher, stop: asyncio.Event, endpoint: ServiceEndpoint) -> None:
        broker = PaperBroker(settings, redis, publisher, markets)
        print(f"paper broker: {args.workers} worker(s), {settings.detector.leg_latency_ms} ms per leg; "
              f"/healthz on port {endpoint.port}", flush=True)
        await run_paper_workers(broker, args.workers, stop, burst=args.burst, start_id=args.start)

    run_async(serve_group_workers(settings, Role.PAPER, "paper", fill))


WorkersMain = Callable[[Redis, Publisher, asyncio.Event, ServiceEndpoint], Coroutine[Any, Any, None]]


async def serve_group_workers(settings: Settings, role: Role, name: str, work: WorkersMain) -> None:
    """A group worker process: Redis as ``role``, a publisher, /healthz with a Redis probe, ``work`` until
    Ctrl-C/SIGTERM or, with ``--burst``, until it returns (the backlog is drained)."""
    stop = asyncio.Event()
    install_stop_signals(stop)
    redis = connect(settings, role)
    try:
        async with (
            Publisher(redis, settings.names, settings.streams, settings.bus) as publisher,
            ServiceEndpoint(name, settings.service_host, settings.service_port) as endpoint,
        ):
            probe = RedisProbe()
            endpoint.add_check("redis", probe.result)

            async def work_then_stop() -> None:
                await work(redis, publisher, stop, endpoint)
                stop.set()

            tune_gc_for_stream_worker()  # start-up is done: its objects are never scanned again
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(probe.watch(redis, stop))
                tasks.create_task(work_then_stop())
    finally:
        await redis.aclose()


def start_position(value: str) -> str:
    """``--from``: ``$`` (only new entries), ``0`` (everything retained) or a stream id."""
    milliseconds, _, sequence = value.partition("-")
    if value == "$" or (milliseconds.isdigit() and (not sequence or sequence.isdigit()) and len(value) <= 41):
        return value
    raise argparse.ArgumentTypeError(f"{value!r} is not $, 0 or a stream id such as 1767225600000-0")


def cmd_persist(args: argparse.Namespace, settings: Settings) -> None:
    directory = args.dir or settings.var_dir / "data"

    async def persist() -> None:
        stop = asyncio.Event()
        install_stop_signals(stop)
        lock = ArchiveLock(directory)
        try:
            if not await lock.acquire(stop, wait=args.standby):
                return
        except ArchiveLockedError as exc:
            raise CommandError(str(exc)) from exc
        redis = connect(settings, Role.PERSISTENCE)
        writer = PersistenceWriter(settings, redis, directory, gzip_rotated=args.gzip)
        probe = RedisProbe()
        try:
            async with ServiceEndpoint("persistence", settings.service_host, settings.service_port) as endpoint:
                endpoint.add_check("redis", probe.result)
                endpoint.add_check("files", lambda: CheckResult(True, f"{writer.written} entries written"))
                print(f"persistence: writing NDJSON under {directory}; /healthz on port {endpoint.port}",
                      flush=True)
                async with asyncio.TaskGroup() as tasks:
                    tasks.create_task(probe.watch(redis, stop))
                    tasks.create_task(writer.run(stop))
        finally:
            writer.close()
            lock.release()
            await redis.aclose()

    run_async(persist())


def cmd_dashboard(args: argparse.Namespace, settings: Settings) -> None:
    async def dashboard() -> None:
        stop = asyncio.Event()
        install_stop_signals(stop)
        reader = connect(settings, Role.DASHBOARD)
        control = connect(settings, Role.CONTROL) if settings.dashboard_token else None
        try:
            await serve_dashboard(settings, reader, control, stop, on_ready=lambda port: print(
                f"dashboard: http://{settings.dashboard_host}:{port}", flush=True))
        finally:
            await reader.aclose()
            if control is not None:
                await control.aclose()

    run_async(dashboard())


def add_group_options(command: argparse.ArgumentParser, stream: str) -> None:
    command.add_argument("--from", dest="start", type=start_position, default="$", metavar="0|$|ID", help=(
        f"where the group starts on {stream} if it does not exist yet: $ = new entries (default), 0 = all "
        "retained, or a stream id; an existing group keeps its position (moving it is an admin's job)"))
    command.add_argument("--burst", action="store_true", help="drain what is there now, then exit")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="triarb", description="Simulation-first triangular arbitrage on Redis Streams.",
        formatter_class=lambda prog: argparse.HelpFormatter(prog, max_help_position=16, width=120),
    )
    parser.add_argument("--config", type=Path, metavar="FILE", help="TOML settings file (same as TRIARB_CONFIG)")
    parser.add_argument("--version", action="version", version=f"triarb {installed_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    up = commands.add_parser("up", help="run the whole stack (starts a private redis-server unless REDIS_URL)")
    up.add_argument("--demo", action="store_true", help="feed it with the built-in synthetic demo data")
    up.set_defaults(run=cmd_up)

    tail = commands.add_parser("tail", help="follow streams live, one readable line per entry")
    tail.add_argument("streams", nargs="+", metavar="STREAM", help="md.snapshot, md.trade, ..., deadletter")
    tail.add_argument("--from", dest="start", default="$", help="start id: $ = only new (default), 0 = all")
    tail.add_argument("--last", type=int, default=0, help="first print the last N entries of each stream")
    tail.add_argument("--count", type=int, default=0, help="exit after N new entries (0 = follow forever)")
    tail.add_argument("--raw", action="store_true", help="print fields as stored instead of a summary")
    tail.set_defaults(run=cmd_tail)

    status = commands.add_parser(
        "status", help="one screen: feeds, symbols, group pending and lag, newest episodes, paper PnL")
    status.add_argument("--episodes", type=int, default=10, metavar="N", help="how many episodes to show")
    status.set_defaults(run=cmd_status)

    symbols = commands.add_parser(
        "symbols", help="change or show the symbols producers hold (user set ∪ the detector's)",
        description="Each change names one venue and leaves the others alone. A producer holds the union of "
                    "the user set (its configured symbols until the first `set`) and the detector's set.")
    actions = symbols.add_subparsers(dest="action", required=True, metavar="ACTION")
    for op, verb in ((ControlOp.SET, "replace the user set of VENUE with"), (ControlOp.ADD, "add to VENUE"),
                     (ControlOp.REMOVE, "remove from VENUE")):
        change = actions.add_parser(op.value, help=f"{verb} SYMBOL...")
        change.add_argument("venue", metavar="VENUE", choices=[v.value for v in Venue], help="coinbase or kraken")
        change.add_argument("symbols", nargs="+", metavar="SYMBOL", help="canonical BASE-QUOTE, e.g. BTC-USD")
        change.add_argument("--issued-by", default="cli", help="who asked (kept in the control entry)")
    actions.add_parser("show", help="print each venue's user, detector and held sets")
    symbols.set_defaults(run=cmd_symbols)

    config = commands.add_parser("config", help="print the effective configuration, secrets masked")
    config.set_defaults(run=cmd_config)

    redis_config = commands.add_parser(
        "redis-config", help="write redis.conf + a 0600 ACL file with the role password hashes for an external Redis")
    redis_config.add_argument("--out", type=Path, required=True, help="directory for redis.conf and users.acl")
    redis_config.add_argument("--conf", type=Path, help="source config (default: the bundled redis.conf)")
    redis_config.set_defaults(run=cmd_redis_config)

    redis_cli = commands.add_parser("redis-cli", help="open redis-cli on the stack's Redis as an ACL user")
    redis_cli.add_argument("--as", dest="role", default=Role.ADMIN.value, choices=[r.value for r in Role])
    redis_cli.add_argument("args", nargs=argparse.REMAINDER, help="redis-cli arguments, e.g. XLEN md.snapshot")
    redis_cli.set_defaults(run=cmd_redis_cli)

    replay = commands.add_parser("replay", help="run a captured NDJSON session through parsers and books")
    replay.add_argument("file", type=Path, metavar="FILE", help="capture (the ../shared/fixtures line format)")
    replay.add_argument("--check", action="store_true", help="no Redis: print one JSON summary of the books")
    replay.add_argument("--top", type=int, default=5, help="levels per side in the summary (default 5)")
    replay.add_argument("--pretty", action="store_true", help="indent the JSON")
    replay.add_argument("--speed", type=float, default=1.0, help="publish at X times the recorded pace")
    replay.add_argument("--max-speed", action="store_true", help="publish as fast as possible")
    replay.set_defaults(run=cmd_replay)

    producer = commands.add_parser("producer", help="hold one venue's books over WebSocket and publish them")
    producer.add_argument("venue", choices=[v.value for v in Venue])
    producer.add_argument("--venue-url", help="connect here instead (a fake venue, a proxy)")
    producer.add_argument("--symbols", nargs="+", metavar="SYMBOL", help="initial symbols (control stream wins)")
    producer.set_defaults(run=cmd_producer)

    detector = commands.add_parser("detector", help="run triangle-detector workers (consumer group 'detector')")
    detector.add_argument("--workers", type=int, help="workers in this process (default: detector.workers)")
    add_group_options(detector, "md.snapshot")
    detector.set_defaults(run=cmd_detector)

    paper = commands.add_parser("paper", help="run paper-broker workers (group 'paper'): fills on strategy.fill")
    paper.add_argument("--workers", type=int, default=1, help="workers in this process (default 1)")
    add_group_options(paper, "strategy.opportunity")
    paper.set_defaults(run=cmd_paper)

    persist = commands.add_parser("persist", help="persistence worker: every stream entry to NDJSON, exactly once")
    persist.add_argument("--dir", type=Path, help="data directory (default: var/data)")
    persist.add_argument("--gzip", action="store_true", help="gzip files when they rotate")
    persist.add_argument("--standby", action="store_true",
                         help="if another worker holds the directory, wait and take over when it stops")
    persist.set_defaults(run=cmd_persist)

    dashboard = commands.add_parser("dashboard", help="serve the live dashboard (page, SSE, JSON API)")
    dashboard.set_defaults(run=cmd_dashboard)

    demo_venue = commands.add_parser("demo-venue", help="serve a local demo venue (the bundled replay) for a producer")
    demo_venue.add_argument("venue", choices=[v.value for v in Venue])
    demo_venue.add_argument("--host", default="127.0.0.1")
    demo_venue.add_argument("--port", type=int, default=0, help="0 = any free port (printed)")
    demo_venue.set_defaults(run=cmd_demo_venue)

    backtest = commands.add_parser(
        "backtest", help="captures → books → detector → paper broker, offline (no Redis)",
        usage="triarb backtest CAPTURE... [--markets FILE]... --out FILE [--episodes FILE] [--quiet]",
        description="Replays captures (WS_CAPTURE=true files, the ../shared/fixtures format, the bundled demo "
                    "sessions) through the producers' parsers and books, the detector and the paper broker, with "
                    "the configured detector settings. Book versions are numbered as a producer that started at the "
                    "beginning of the captures numbers them, so opportunity ids equal those a live detector that "
                    "evaluates every version reports for `triarb replay FILE`. Each venue's market list (size "
                    "increments, minimum sizes) comes from "
                    "--markets, else the capture header (captures written with a discovery cache carry it), else "
                    "Kraken instrument precisions in the header; failing those it assumes 1e-8 increments and no "
                    "minimum, and warns on stderr.")
    backtest.add_argument("captures", nargs="+", type=Path, metavar="CAPTURE", help="capture files, any venues")
    backtest.add_argument("--markets", type=Path, action="append", default=[], metavar="FILE", help=(
        "a venue's market list in the discovery cache format (var/discovery/{venue}.json, written by the "
        "producers' discovery); repeat for several venues; wins over the capture header"))
    backtest.add_argument("--out", type=Path, required=True, metavar="FILE",
                          help="opportunities as NDJSON (deterministic order)")
    backtest.add_argument("--episodes", type=Path, metavar="FILE", help=(
        "episode events (open/update/close) as NDJSON, as the live detector publishes them on strategy.episode "
        "(default: OUT's name with .episodes before its suffix)"))
    backtest.add_argument("--quiet", action="store_true", help="no progress bar")
    backtest.set_defaults(run=cmd_backtest)

    return parser


def main(argv: Sequence[str] | None = None) -> None:
    os.umask(0o077)  # every file the stack writes (data, captures, caches, logs, archives) is private
    parser = build_parser()
    args = parser.parse_args(redis_cli_passthrough(list(sys.argv[1:] if argv is None else argv)))
    if args.command is None:
        parser.print_help()
        return
    if args.config is not None:  # the settings model reads TRIARB_CONFIG; --config is the same, per command
        if not args.config.is_file():
            fail(f"--config {args.config}: no such file", status=2)
        os.environ["TRIARB_CONFIG"] = str(args.config)
    try:
        settings = Settings()
    except (ValidationError, FileNotFoundError, tomllib.TOMLDecodeError) as exc:
        fail(f"invalid configuration: {configuration_problem(exc)}", status=2)
    configure_logging(settings.log_level, settings.log_format)
    try:
        args.run(args, settings)
    except BrokenPipeError:  # `triarb config | head`: the reader left, nothing is wrong
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (CommandError, RedisNotConfiguredError) as exc:
        fail(str(exc))
    except RedisError as exc:
        fail(f"Redis: {type(exc).__name__}: {exc}")
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            fail(str(exc))
        if exc.filename is None:
            raise
        fail(f"cannot use {exc.filename}: {exc.strerror} (a directory or file setting such as TRIARB_VAR_DIR, "
             "--dir or --out names it)")


def fail(message: str, status: int = 1) -> NoReturn:
    """The one line a user-fixable problem gets: no traceback."""
    print(f"triarb: {message}", file=sys.stderr)
    raise SystemExit(status)


def configuration_problem(exc: Exception) -> str:
    """Settings errors as one line each naming the setting (``detector.min_roi: ...``), not pydantic's report."""
    if isinstance(exc, ValidationError):
        return validation_reasons(exc)
    if isinstance(exc, tomllib.TOMLDecodeError):
        return f"{os.environ.get('TRIARB_CONFIG', DEFAULT_CONFIG_FILE)}: not valid TOML ({exc})"
    return str(exc)


def redis_cli_passthrough(argv: list[str]) -> list[str]:
    """``triarb redis-cli [--as ROLE] ARGS...``: every argument after the command but ``--as`` goes to redis-cli
    untouched, options included (``--scan --pattern 'md:book:*'``, ``-x``), so argparse is told not to read it."""
    at = 0
    while at < len(argv) and argv[at].startswith("-"):  # our own options before the command
        at += 2 if argv[at] == "--config" else 1
    if at >= len(argv) or argv[at] != "redis-cli":
        return argv
    head, rest = argv[: at + 1], argv[at + 1:]
    own: list[str] = []
    if rest[:1] == ["--as"]:
        own, rest = rest[:2], rest[2:]
    elif rest[:1] and rest[0].startswith("--as="):
        own, rest = rest[:1], rest[1:]
    return [*head, *own, "--", *rest] if rest else [*head, *own]


if __name__ == "__main__":
    main()
