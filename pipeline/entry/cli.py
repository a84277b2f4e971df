"""The ``tunebus`` command: ``collect`` runs the daemon, ``stop`` stops it, ``demo`` tries it out."""

from __future__ import annotations

import sys

from pipeline.entry.commands import COMMANDS, collect_config
from pipeline.entry.parser import parser

__all__ = ["collect_config", "main", "parser"]


def main(argv: list[str] | None = None) -> int:
    """Run the verb ``argv`` names (default: the command line's); its exit status."""
    top = parser()
    args, unknown = top.parse_known_args(argv)
    if unknown:
        prog = f"tunebus {args.command}" if args.command else "tunebus"
        top.exit(2, f"{prog}: error: unrecognized arguments: {' '.join(unknown)} (see --help)\n")
    if args.command is None:
        top.error(f"choose a command: {', '.join(COMMANDS)}")
    return COMMANDS[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
