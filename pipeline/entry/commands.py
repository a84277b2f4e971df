"""What each ``tunebus`` verb does with its parsed flags; ``COMMANDS`` names them."""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import signal
import sys
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from pipeline.wire.sockets import DEFAULT_STATUS_ADDRESS

if TYPE_CHECKING:
    from pipeline.collector.config import CollectorConfig
    from pipeline.ops.shard_status import ShardAnswer

__all__ = ["COMMANDS", "collect_config"]

log = logging.getLogger("tunebus")

GC_GEN0_THRESHOLD = 100_000


def _error(command: str, message: object, status: int) -> int:
    """Say ``message`` as ``tunebus <command>``'s one error line on stderr; ``status`` to exit with."""
    print(f"tunebus {command}: error: {message}", file=sys.stderr)
    return status


async def _serve(config: CollectorConfig) -> None:
    from pipeline.collector.assembly import build_collector

    collector = build_collector(config)
    # Decoding a frame allocates thousands of small objects: with the default
    # thresholds the cyclic GC rescans the queued backlog constantly (a third of
    # the decode time measured here). Queued events hold no cycles.
    gc.freeze()
    gc.set_threshold(GC_GEN0_THRESHOLD, 50, 100)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await collector.run(stop)


def _run_loop(main: Coroutine[Any, Any, None]) -> None:
    """Run the collector on uvloop when it is installed (the ``fast`` extra), else on asyncio's loop."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
        return
    uvloop.run(main)


def _collect(args: argparse.Namespace) -> int:
    try:
        config = collect_config(args)
    except ValueError as exc:
        return _error("collect", exc, 2)
    logging.basicConfig(level=config.log_level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    shards = getattr(args, "shards", 1)
    if shards > 1:
        from pipeline.entry.shard_set import ShardSet, plan_shards

        try:
            plan = plan_shards(config, shards)
        except ValueError as exc:
            return _error("collect", exc, 2)
        return ShardSet(plan, getattr(args, "argv", [])).run()
    log.info("effective config: %s", config.describe())
    try:
        _run_loop(_serve(config))
    except (OSError, ValueError) as exc:  # address in use, unwritable directory, bad key file
        return _error("collect", exc, 1)
    return 0


def collect_config(args: argparse.Namespace) -> CollectorConfig:
    """The configuration ``tunebus collect`` runs with: its ``--config`` file, then its flags."""
    from pipeline.collector.config import CollectorConfig
    from pipeline.entry.config_file import read_config

    not_settings = ("command", "config", "filter", "shards", "argv")
    given = {k: v for k, v in vars(args).items() if k not in not_settings}
    given.update(_filter_flags(getattr(args, "filter", [])))
    from_file = read_config(args.config) if args.config is not None else {}
    return CollectorConfig.from_flat(**{**from_file, **given})


def _filter_flags(flags: list[str]) -> dict[str, list[dict[str, str]]]:
    """``--filter SINK:NAME=VALUE`` flags as each sink's ``<sink>_filters`` chain, in order."""
    from pipeline.collector.filter_spec import parse_filter_flag
    from sinks import sink_names

    chains: dict[str, list[dict[str, str]]] = {}
    for flag in flags:
        sink, table = parse_filter_flag(flag)
        if sink not in sink_names():
            raise ValueError(f"--filter {flag}: unknown sink {sink!r}; choose from {', '.join(sink_names())}")
        chains.setdefault(f"{sink}_filters", []).append(table)
    return chains


def _replay(args: argparse.Namespace) -> int:
    from pipeline.producer.replay import replay

    logging.basicConfig(level="INFO", format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        delivered, total = replay(args.spool, args.to, args.timeout_s,
                                  args.curve_secret_key, args.curve_server_key, keep=args.keep)
    except (OSError, ValueError) as exc:
        return _error("replay", exc, 2)
    if delivered:
        print(f"tunebus replay: {total} events from {args.spool}: all confirmed")
    else:
        print(f"tunebus replay: {total} events from {args.spool}: NOT all confirmed by {args.to}; "
              f"the rest stay in {args.spool}: run tunebus replay {args.spool} --to {args.to} again")
    return 0 if delivered else 1


def _keygen(args: argparse.Namespace) -> int:
    from pipeline.wire.sockets import make_keys

    try:
        public, secret = make_keys(args.dir, args.name, force=args.force)
    except ValueError as exc:
        return _error("keygen", exc, 2)
    print(f"public key: {public}\nsecret key: {secret} (mode 0600: keep it where it is used)")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from pipeline.entry.demo import run_demo

    return run_demo(args.out, args.trials, args.iterations)


def _status(args: argparse.Namespace) -> int:
    from pipeline.ops.shard_status import ask_every_shard
    from pipeline.ops.status_table import render_shards

    if args.ray is not None:
        if args.address is not None:
            return _error("status", "give a status address or --ray NAME, not both", 2)
        found = _status_ray(args.ray, args.timeout_s)
        if isinstance(found, int):
            return found
        answers = found
    else:
        try:
            answers = ask_every_shard(args.address or DEFAULT_STATUS_ADDRESS, args.timeout_s)
        except (TimeoutError, ValueError) as exc:
            return _error("status", exc, 1)
    if args.json:
        if len(answers) == 1 and answers[0].status is not None:
            print(answers[0].status.to_json(indent=2))
        else:
            print("[\n" + ",\n".join(a.status.to_json(indent=2) if a.status is not None else
                                      json.dumps({"address": a.address, "error": a.error}) for a in answers)
                  + "\n]")
    else:
        print(render_shards(answers))
    return 0


def _stop(args: argparse.Namespace) -> int:
    if args.ray is not None:
        if args.address is not None:
            return _error("stop", "give a status address or --ray NAME, not both", 2)
        return _stop_ray(args.ray, args.timeout_s)
    from pipeline.ops.shard_status import stop_every_shard

    address = args.address or DEFAULT_STATUS_ADDRESS
    try:
        stops = stop_every_shard(address, args.timeout_s)
    except (TimeoutError, ValueError) as exc:
        return _error("stop", exc, 1)
    if len(stops) == 1:
        if not stops[0].stopped:
            return _error("stop", stops[0].error or f"the collector at {address} is stopping but still "
                                  f"draining after {args.timeout_s:g}s (tunebus status {address} shows "
                                  "its queues)", 1)
        print(f"tunebus stop: the collector at {address} wrote everything it held and stopped")
        return 0
    draining = [s for s in stops if not s.stopped and not s.error]
    for shard in stops:
        what = ("wrote everything it held and stopped" if shard.stopped else
                f"no answer ({shard.error}): not running?" if shard.error else
                f"still draining after {args.timeout_s:g}s")
        print(f"tunebus stop: shard {shard.index} of {len(stops)} at {shard.address} {what}")
    return 1 if draining else 0


def _join_ray(verb: str) -> int:
    """Join the running Ray cluster: 0, or the exit status after one line saying there is none."""
    import ray

    try:
        ray.init(address="auto", configure_logging=False, log_to_driver=False, logging_level=logging.ERROR)
    except (ConnectionError, RuntimeError) as exc:
        return _error(verb, f"no Ray cluster to join ({exc}); set RAY_ADDRESS", 1)
    return 0


def _status_ray(name: str, timeout_s: float) -> list[ShardAnswer] | int:
    """Every shard's answer of the Ray collector ``name``, asked by its actors; else the exit status."""
    import ray

    from pipeline.entry.ray_actor import status_on_ray

    joined = _join_ray("status")
    if joined:
        return joined
    try:
        answers = status_on_ray(name, timeout_s)
    finally:
        ray.shutdown()
    if answers is None:
        return _error("status", f"no collector actor called {name!r} on this cluster", 1)
    return answers


def _stop_ray(name: str, timeout_s: float) -> int:
    import ray

    from pipeline.entry.ray_actor import stop_collector_on_ray

    joined = _join_ray("stop")
    if joined:
        return joined
    try:
        stopped = stop_collector_on_ray(name, timeout_s)
    except RuntimeError as exc:
        return _error("stop", exc, 1)
    finally:
        ray.shutdown()
    if stopped is None:
        return _error("stop", f"no collector actor called {name!r} on this cluster", 1)
    shards = f" ({stopped.shard_count} shards)" if stopped.shard_count > 1 else ""
    print(f"tunebus stop: collector {name!r}{shards} wrote everything it held into {stopped.out} and stopped")
    return 0


def _bench(args: argparse.Namespace) -> int:
    from bench.__main__ import main as bench_main

    only = [f"--only={name}" for name in args.only]
    flags = [*(["--quick"] if args.quick else []), *(["--plots"] if args.plots else [])]
    return bench_main([*flags, *only], prog="tunebus bench")


COMMANDS = {"collect": _collect, "demo": _demo, "replay": _replay, "keygen": _keygen,
            "bench": _bench, "status": _status, "stop": _stop}

