"""The `tuskit` command line.

Each side registers its own subcommands (`tuskit.server.cli`, `tuskit.desktop.cli`) so that this root
module stays free of Tornado and Textual imports: `tuskit sync` must not pay for the server, nor the
server for Textual.
"""

from __future__ import annotations

import argparse
import importlib
import platform
import sys
from collections.abc import Sequence

import tuskit

# module path -> the subcommands it registers (imported only when that subcommand runs)
_COMMANDS: dict[str, str] = {
    "server": "tuskit.server.cli",
    "sign": "tuskit.server.cli",
    "sync": "tuskit.desktop.cli",
    "desk": "tuskit.desktop.cli",
    "upload": "tuskit.desktop.cli",
    "ls": "tuskit.desktop.cli",
}


class _Version(argparse.Action):
    """`--version`: looked up only when asked for (see `tuskit.__getattr__`)."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help="print the version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        print(f"tuskit {tuskit.__version__} (tus 1.0.0, Python {platform.python_version()})")
        parser.exit()


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """Build the parser; with `only`, import just the module that owns that subcommand."""
    parser = argparse.ArgumentParser(prog="tuskit", description="Resumable uploads over tus 1.0")
    parser.add_argument("--version", action=_Version)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    wanted = {_COMMANDS[only]} if only in _COMMANDS else dict.fromkeys(_COMMANDS.values())
    for module_name in wanted:
        importlib.import_module(module_name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    first = next((a for a in args_list if not a.startswith("-")), None)
    parser = build_parser(first)
    args = parser.parse_args(args_list)
    return int(args.run(args) or 0)
