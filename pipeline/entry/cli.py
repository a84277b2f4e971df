"""The ``tunebus`` command: ``collect`` runs the daemon, ``demo`` runs a small sweep through it."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import signal
import sys
from pathlib import Path
from typing import NoReturn

from pipeline.wire.sockets import DEFAULT_ADDRESS, DEFAULT_STATUS_ADDRESS

__all__ = ["main"]

log = logging.getLogger("tunebus")

GC_GEN0_THRESHOLD = 100_000


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one readable line and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port 0..65535, got {text}")
    return value


def _sink_list(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(",") if name.strip())


def _name_list(text: str) -> tuple[str, ...]:
    names = _sink_list(text)
    if not names:
        raise argparse.ArgumentTypeError(f"expected comma-separated names, got {text!r}")
    return names


def _add_collect(sub: argparse._SubParsersAction[_Parser]) -> None:
    p = sub.add_parser("collect", help="run the collector daemon",
                       description="Receive Tune events from BusCallback and write them with the sinks.")
    p.add_argument("--bind", default=DEFAULT_ADDRESS, help="ZeroMQ address to bind (default: %(default)s)")
    p.add_argument("--out", type=Path, default=Path("~/ray_results"),
                   help="root for experiment folders; use Tune's storage_path (default: %(default)s)")
    p.add_argument("--sinks", type=_sink_list, default=("json", "csv", "tensorboard"),
                   help="comma-separated sinks to write: json, csv, tensorboard, aim "
                        "(default: json,csv,tensorboard)")
    p.add_argument("--aim-repo", type=Path, default=None,
                   help="one Aim repo for every experiment (default: each experiment's folder, as Tune)")
    p.add_argument("--aim-metrics", type=_name_list, default=(),
                   help="comma-separated result keys (flattened, no ray/tune/ prefix) to track in Aim "
                        "(default: every finite scalar)")
    p.add_argument("--aim-experiment-name", default=None,
                   help="every Aim run's experiment, as AimLoggerCallback's experiment_name "
                        "(default: the Tune experiment's name)")
    p.add_argument("--aim-durable", action="store_true",
                   help="acknowledge events only once Aim has written them too (default: Aim may lag)")
    p.add_argument("--max-queue-events", type=_positive_int, default=200_000,
                   help="events a sink may queue in memory: a durable sink then stops the collector "
                        "reading, a lagging one spills to its backlog (default: %(default)s)")
    p.add_argument("--backlog-max-bytes", type=_non_negative_int, default=1024 * 1024 * 1024,
                   help="disk per non-durable sink (aim unless --aim-durable) for events past its queue, "
                        "in <out>/.tunebus; full, it pushes back; 0 for none (default: %(default)s)")
    p.add_argument("--batch-max-events", type=_positive_int, default=5_000,
                   help="most events one sink write takes (default: %(default)s)")
    p.add_argument("--batch-linger-s", type=_non_negative_float, default=0.05,
                   help="seconds a sink waits for a full batch once it has an event (default: %(default)s)")
    p.add_argument("--max-message-bytes", type=_positive_int, default=64 * 1024 * 1024,
                   help="largest frame accepted; larger ones drop the connection (default: %(default)s)")
    p.add_argument("--quarantine-max-bytes", type=_positive_int, default=256 * 1024 * 1024,
                   help="bytes of bad frames kept in <out>/.tunebus/quarantine.msgpack "
                        "(default: %(default)s)")
    p.add_argument("--curve-secret-key", type=Path, default=None,
                   help="the collector's .key_secret file (tunebus keygen): require CurveZMQ")
    p.add_argument("--curve-clients", type=Path, default=None,
                   help="directory of client public .key files admitted with --curve-secret-key")
    p.add_argument("--status-bind", default=DEFAULT_STATUS_ADDRESS,
                   help="control socket for tunebus status; '' for none (default: %(default)s)")
    p.add_argument("--metrics-port", type=_port, default=None,
                   help="serve Prometheus metrics on this port, 0 for any (default: no metrics)")
    p.add_argument("--metrics-host", default="127.0.0.1",
                   help="interface for --metrics-port (default: %(default)s)")
    p.add_argument("--log-interval-s", type=_non_negative_float, default=30.0,
                   help="log a line of throughput and lag this often, 0 for never (default: %(default)s)")
    p.add_argument("--ended-producer-ttl-s", type=_non_negative_float, default=7 * 24 * 3600.0,
                   help="forget a driver this long after its run ended, so the ledger stays small; a "
                        "replay of its spool after that may write twice; 0 for never (default: %(default)s)")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                   help="how much the collector logs (default: %(default)s)")
    p.add_argument("--config", type=Path, default=None,
                   help="TOML file of these flags (names with - or _); flags given here override it")


def _add_replay(sub: argparse._SubParsersAction[_Parser]) -> None:
    p = sub.add_parser("replay", help="deliver a spool file left behind by a driver",
                       description="Send the events of a sender spool file to a collector, in order; "
                                   "the collector writes each event once.")
    p.add_argument("spool", type=Path, help="a .spool (or .live) file from the sender's spool directory")
    p.add_argument("--to", required=True, help="the collector's bus address, e.g. tcp://127.0.0.1:5555")
    p.add_argument("--timeout-s", type=_non_negative_float, default=120.0,
                   help="how long to wait for the collector to confirm (default: %(default)s)")
    p.add_argument("--keep", action="store_true", help="keep the spool file after delivery")
    p.add_argument("--curve-secret-key", default=None, help="client .key_secret file for CurveZMQ")
    p.add_argument("--curve-server-key", default=None, help="the collector's public .key file")


def _add_keygen(sub: argparse._SubParsersAction[_Parser]) -> None:
    p = sub.add_parser("keygen", help="make a CurveZMQ key pair",
                       description="Write NAME.key (public) and NAME.key_secret into DIR.")
    p.add_argument("dir", type=Path, help="directory for the key files")
    p.add_argument("name", help="base name of the key files, e.g. collector or driver1")
    p.add_argument("--force", action="store_true",
                   help="replace an existing pair (everyone holding the old key is locked out)")


def _add_demo(sub: argparse._SubParsersAction[_Parser]) -> None:
    p = sub.add_parser("demo", help="run a small Tune sweep through a local collector",
                       description="Start a collector, run a small Tune sweep through BusCallback, "
                                   "and print where the files went.")
    p.add_argument("--out", type=Path, default=Path("tunebus-demo"),
                   help="storage path for the sweep and the collector (default: %(default)s)")
    p.add_argument("--trials", type=_positive_int, default=4, help="trials (default: %(default)s)")
    p.add_argument("--iterations", type=_positive_int, default=20,
                   help="results each trial reports (default: %(default)s)")


def _add_status(sub: argparse._SubParsersAction[_Parser]) -> None:
    p = sub.add_parser("status", help="ask a running collector how it is doing",
                       description="Print a running collector's producers, sinks, queues and faults.")
    p.add_argument("address", nargs="?", default=DEFAULT_STATUS_ADDRESS,
                   help="the collector's --status-bind address (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print the raw answer as JSON")
    p.add_argument("--timeout-s", type=_non_negative_float, default=5.0,
                   help="how long to wait for an answer (default: %(default)s)")


def _add_bench(sub: argparse._SubParsersAction[_Parser]) -> None:
    p = sub.add_parser("bench", help="run the benchmarks (python -m bench)",
                       description="Run every benchmark; each prints one JSON line "
                                   "and saves it in bench/results/.")
    p.add_argument("--quick", action="store_true", help="tiny sizes: prove the scripts work")
    p.add_argument("--only", action="append", default=[], metavar="NAME",
                   help="run only this benchmark (repeatable)")
    p.add_argument("--plots", action="store_true", help="also save PNG plots in bench/results/")


def parser() -> _Parser:
    top = _Parser(prog="tunebus", description="Ray Tune logging over a ZeroMQ bus.")
    sub = top.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_collect(sub)
    _add_demo(sub)
    _add_replay(sub)
    _add_keygen(sub)
    _add_bench(sub)
    _add_status(sub)
    return top


async def _serve(config: object) -> None:
    from pipeline.collector.assembly import build_collector

    collector = build_collector(config)  # type: ignore[arg-type]
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


def _collect(args: argparse.Namespace) -> int:
    from pipeline.collector.assembly import CollectorConfig

    logging.basicConfig(level=args.log_level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        config = CollectorConfig(
            out=args.out, bind=args.bind, sinks=args.sinks,
            max_queue_events=args.max_queue_events, backlog_max_bytes=args.backlog_max_bytes,
            batch_max_events=args.batch_max_events,
            batch_linger_s=args.batch_linger_s, max_message_bytes=args.max_message_bytes,
            quarantine_max_bytes=args.quarantine_max_bytes,
            curve_secret_key=args.curve_secret_key, curve_clients=args.curve_clients,
            aim_repo=args.aim_repo, aim_metrics=args.aim_metrics, aim_durable=args.aim_durable,
            aim_experiment_name=args.aim_experiment_name,
            status_bind=args.status_bind, metrics_port=args.metrics_port,
            metrics_host=args.metrics_host, log_interval_s=args.log_interval_s,
            ended_producer_ttl_s=args.ended_producer_ttl_s,
        )
    except ValueError as exc:
        print(f"tunebus collect: error: {exc}", file=sys.stderr)
        return 2
    log.info("effective config: %s", config)
    try:
        asyncio.run(_serve(config))
    except (OSError, ValueError) as exc:  # address in use, unwritable directory, bad key file
        print(f"tunebus collect: error: {exc}", file=sys.stderr)
        return 1
    return 0


def _replay(args: argparse.Namespace) -> int:
    from pipeline.producer.replay import replay

    logging.basicConfig(level="INFO", format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        delivered, total = replay(args.spool, args.to, args.timeout_s,
                                  args.curve_secret_key, args.curve_server_key, keep=args.keep)
    except (OSError, ValueError) as exc:
        print(f"tunebus replay: error: {exc}", file=sys.stderr)
        return 2
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
        print(f"tunebus keygen: error: {exc}", file=sys.stderr)
        return 2
    print(f"public key: {public}\nsecret key: {secret} (mode 0600: keep it where it is used)")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from pipeline.entry.demo import run_demo

    return run_demo(args.out, args.trials, args.iterations)


def _status(args: argparse.Namespace) -> int:
    from pipeline.ops.status_client import ask_status
    from pipeline.ops.status_table import render_status

    try:
        answer = ask_status(args.address, args.timeout_s)
    except (TimeoutError, ValueError) as exc:
        print(f"tunebus status: error: {exc}", file=sys.stderr)
        return 1
    print(answer.to_json(indent=2) if args.json else render_status(answer))
    return 0


def _bench(args: argparse.Namespace) -> int:
    from bench.__main__ import main as bench_main

    only = [f"--only={name}" for name in args.only]
    flags = [*(["--quick"] if args.quick else []), *(["--plots"] if args.plots else [])]
    return bench_main([*flags, *only], prog="tunebus bench")


COMMANDS = {"collect": _collect, "demo": _demo, "replay": _replay, "keygen": _keygen,
            "bench": _bench, "status": _status}


def _with_config_file(top: _Parser, argv: list[str] | None, path: Path) -> argparse.Namespace:
    """Parse again with the file's values as collect's defaults, so that given flags win."""
    from pipeline.entry.config_file import toml_defaults

    commands = next(a for a in top._actions if isinstance(a, argparse._SubParsersAction))
    collect = commands.choices["collect"]
    try:
        collect.set_defaults(**toml_defaults(path, collect))
    except ValueError as exc:
        top.exit(2, f"tunebus collect: error: {exc}\n")
    return top.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    top = parser()
    args = top.parse_args(argv)
    if args.command == "collect" and args.config is not None:
        args = _with_config_file(top, argv, args.config)
    return COMMANDS[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
