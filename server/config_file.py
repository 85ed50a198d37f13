"""`tuskit server --config FILE`: the server's flags from a TOML file, for systemd units and containers.

Keys are the flag names without dashes in front (`max-size = "10GiB"`, `behind-proxy = true`,
`cors-origins = ["https://a.example", "https://b.example"]`); values are what the flag takes, so every
flag, including ones added later, is a key. Precedence: a flag on the command line, then `TUSKIT_<FLAG>`
from the environment, then the file, then the default. An unknown key is an error that names it (a typo
must not silently leave a setting at its default). Relative paths are relative to the file's folder.

argparse cannot say whether a value was given or defaulted, so every default is wrapped in `Unset` until
`resolve()` decides between the file and the default.
"""

from __future__ import annotations

import argparse
import difflib
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuskit.settings import env_name

_NOT_KEYS = {"help", "config"}


@dataclass(frozen=True)
class Unset:
    """A flag's default, as argparse leaves it when the flag was not on the command line."""

    value: Any


class ConfigFileError(ValueError):
    pass


class ConfigLayer:
    """Made last when a parser is complete: it wraps the defaults of every option it has by then."""

    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self.options: dict[str, argparse.Action] = {}
        for action in parser._actions:
            if action.option_strings and action.dest != "help":
                action.default = Unset(action.default)
                self.options[action.option_strings[0].lstrip("-")] = action

    def resolve(self, args: argparse.Namespace) -> argparse.Namespace:
        """Fill every option not given on the command line from the environment, the file or the default."""
        config = args.config.value if isinstance(args.config, Unset) else args.config
        from_file = self.load(Path(config)) if config else {}
        for key, action in self.options.items():
            value = getattr(args, action.dest)
            if isinstance(value, Unset):
                value = from_file[key] if key in from_file and env_name(key) not in os.environ else value.value
            setattr(args, action.dest, value)
        return args

    def load(self, path: Path) -> dict[str, Any]:
        """The file's values, each parsed as its flag would parse it."""
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigFileError(f"cannot read {path}: {exc.strerror or exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigFileError(f"{path}: {exc}") from None
        values: dict[str, Any] = {}
        for key, value in raw.items():
            action = self.options.get(key)
            if action is None or key in _NOT_KEYS:
                known = [k for k in self.options if k not in _NOT_KEYS]
                close = difflib.get_close_matches(key.replace("_", "-"), known, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ConfigFileError(f"{path}: unknown key {key!r}{hint}")
            try:
                values[key] = _parse(action, value, path.parent)
            except (argparse.ArgumentTypeError, TypeError, ValueError) as exc:
                raise ConfigFileError(f"{path}: bad value for {key!r}: {exc}") from None
        return values


def _parse(action: argparse.Action, value: Any, folder: Path) -> Any:
    if action.nargs == 0:  # a switch such as --behind-proxy
        if not isinstance(value, bool):
            raise TypeError("expected true or false")
        return action.const if value else not action.const
    if isinstance(value, bool | dict):
        raise TypeError(f"expected what --{action.option_strings[0].lstrip('-')} takes, got {value!r}")
    if action.type is None:
        if not isinstance(value, str):
            raise TypeError("expected a string")
        parsed: Any = value
    else:
        text = ",".join(str(v) for v in value) if isinstance(value, list) else str(value)
        parsed = action.type(text)  # type: ignore[operator]
    if isinstance(parsed, Path):
        parsed = folder / parsed.expanduser()  # an absolute path stays what it is
    if action.choices is not None and parsed not in action.choices:
        raise ValueError(f"expected one of {', '.join(map(str, action.choices))}")
    return parsed
