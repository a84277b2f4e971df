"""The ``tunebus`` verbs and their flags; ``collect``'s come from the declared settings."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from pipeline.collector.settings import Flag, Integer, Kind, Number, Setting
from pipeline.entry.ray_actor import DEFAULT_NAME as RAY_DEFAULT_NAME
from pipeline.wire.sockets import DEFAULT_STATUS_ADDRESS

__all__ = ["parser"]

ARGUMENT_PREFIX = re.compile(r"^argument ([^:]+): ")
SECONDS = Number(minimum=0)
COUNT = Integer(minimum=1)


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one readable line, naming the flag as typed, and exit 2.

    ``arguments``, if given, adds the arguments when the parser is first used.
    """

    def __init__(self, *args: Any, arguments: Callable[[_Parser], None] | None = None,
                 keep_argv: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._arguments = arguments
        self._keep_argv = keep_argv

    def error(self, message: str) -> NoReturn:
        message = ARGUMENT_PREFIX.sub(r"\1: ", message)
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        self._add_arguments()
        parsed, unknown = super().parse_known_args(args, namespace)
        if self._keep_argv:  # what was typed, for the children of --shards
            parsed.argv = list(sys.argv[1:] if args is None else args)
        return parsed, unknown

    def format_help(self) -> str:
        self._add_arguments()
        return super().format_help()

    def format_usage(self) -> str:
        self._add_arguments()
        return super().format_usage()

    def _add_arguments(self) -> None:
        arguments, self._arguments = self._arguments, None
        if arguments is not None:
            arguments(self)


def _typed(kind: Kind) -> Callable[[str], Any]:
    """An argparse ``type`` reading a flag's text as ``kind`` does, with its error message."""

    def convert(text: str) -> Any:
        try:
            return kind.from_text(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return convert


def _add_setting(group: argparse._ArgumentGroup, setting: Setting) -> None:
    """The flag of one declared setting; absent from the parsed namespace unless given."""
    if isinstance(setting.kind, Flag):
        group.add_argument(setting.flag, action="store_true", default=argparse.SUPPRESS,
                           help=setting.help_text())
        return
    group.add_argument(setting.flag, type=_typed(setting.kind), default=argparse.SUPPRESS,
                       metavar=setting.kind.metavar, help=setting.help_text())


def _add_collect_settings(p: _Parser) -> None:
    from pipeline.collector.config import collector_settings

    groups: dict[str, argparse._ArgumentGroup] = {}
    for setting in collector_settings():
        if setting.sink and setting.sink not in groups:
            groups[setting.sink] = p.add_argument_group(f"options of the {setting.sink} sink")
        _add_setting(groups[setting.sink] if setting.sink else p, setting)  # type: ignore[arg-type]
    p.add_argument("--shards", type=_typed(COUNT), default=argparse.SUPPRESS, metavar="N",
                   help="run N collectors (shards) as one, each writing the trials routed to it: shard k "
                        "binds the bus, status and metrics ports + k (ipc paths get .k); they are "
                        "restarted when killed, and stopped together (default: 1, no supervisor)")
    p.add_argument("--config", type=Path, default=None, metavar="FILE",
                   help="TOML file of these settings (names with - or _, at the top level or under "
                        "[collect]; a sink's options also in [sinks.<name>]); flags given here override it")
    p.add_argument("--filter", action="append", default=argparse.SUPPRESS, metavar="SINK:NAME=VALUE",
                   help="add a filter to a sink's chain, in order; repeatable: tensorboard:keep=loss,acc, "
                        "tensorboard:smooth=loss:coeff=0.9, aim:every_s=5 (a sink's --filter flags "
                        "replace the chain its config gives)")


def _add_collect(sub: argparse._SubParsersAction[_Parser]) -> None:
    # Its flags come on first use: loading the sinks for their options takes seconds
    # (tensorboardX pulls in boto3), which no other command should pay.
    sub.add_parser("collect", help="run the collector daemon", arguments=_add_collect_settings,
                   keep_argv=True,
                   description="Receive Tune events from BusCallback and write them with the sinks.")


def _add_replay(sub: argparse._SubParsersAction[_Parser]) -> None:
    p = sub.add_parser("replay", help="deliver a spool file left behind by a driver",
                       description="Send the events of a sender spool file to a collector, in order; "
                                   "the collector writes each event once.")
    p.add_argument("spool", type=Path, help="a .spool (or .live) file from the sender's spool directory")
    p.add_argument("--to", required=True, help="the collector's bus address, e.g. tcp://127.0.0.1:5555")
    p.add_argument("--timeout-s", type=_typed(SECONDS), default=120.0,
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
    p.add_argument("--trials", type=_typed(COUNT), default=4, help="trials (default: %(default)s)")
    p.add_argument("--iterations", type=_typed(COUNT), default=20,
                   help="results each trial reports (default: %(default)s)")


def _add_status(sub: argparse._SubParsersAction[_Parser]) -> None:
    p = sub.add_parser("status", help="ask a running collector how it is doing",
                       description="Print a running collector's producers, sinks, queues and faults.")
    p.add_argument("address", nargs="?", default=None,
                   help=f"the collector's --status-bind address (default: {DEFAULT_STATUS_ADDRESS}); "
                        "every shard of a set answers, from any one's address")
    p.add_argument("--ray", nargs="?", const=RAY_DEFAULT_NAME, default=None, metavar="NAME",
                   help="ask the Ray collector called NAME instead (default name: %(const)s), each shard "
                        "by its actor on its own node, joining the running cluster (as stop --ray)")
    p.add_argument("--json", action="store_true", help="print the raw answer as JSON")
    p.add_argument("--timeout-s", type=_typed(SECONDS), default=5.0,
                   help="how long to wait for an answer (default: %(default)s)")


def _add_stop(sub: argparse._SubParsersAction[_Parser]) -> None:
    p = sub.add_parser("stop", help="stop a running collector gracefully",
                       description="Stop a collector the way SIGTERM does: it stops reading, writes "
                                   "everything it holds, closes its files and exits 0. Anyone who can "
                                   "reach its status socket can do this (it binds loopback by default).")
    p.add_argument("address", nargs="?", default=None,
                   help=f"the daemon's --status-bind address (default: {DEFAULT_STATUS_ADDRESS})")
    p.add_argument("--ray", nargs="?", const=RAY_DEFAULT_NAME, default=None, metavar="NAME",
                   help="stop the Ray actor called NAME instead (default name: %(const)s), joining the "
                        "running cluster (ray.init(address='auto'): RAY_ADDRESS or the local cluster)")
    p.add_argument("--timeout-s", type=_typed(SECONDS), default=60.0,
                   help="how long to wait for the drain (default: %(default)s)")


def _add_bench(sub: argparse._SubParsersAction[_Parser]) -> None:
    p = sub.add_parser("bench", help="run the benchmarks (python -m bench)",
                       description="Run every benchmark; each prints one JSON line "
                                   "and saves it in bench/results/.")
    p.add_argument("--quick", action="store_true", help="tiny sizes: prove the scripts work")
    p.add_argument("--only", action="append", default=[], metavar="NAME",
                   help="run only this benchmark (repeatable)")
    p.add_argument("--plots", action="store_true", help="also save PNG plots in bench/results/")


def parser() -> _Parser:
    """The ``tunebus`` parser with every verb; ``collect``'s flags are added on first use."""
    top = _Parser(prog="tunebus", description="Ray Tune logging over a ZeroMQ bus.")
    sub = top.add_subparsers(dest="command", parser_class=_Parser)
    _add_collect(sub)
    _add_demo(sub)
    _add_replay(sub)
    _add_keygen(sub)
    _add_bench(sub)
    _add_status(sub)
    _add_stop(sub)
    return top

