"""A setting declared once: name, kind (type and bounds), default, help, and the sink it belongs to."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Choice", "Flag", "Integer", "Kind", "Names", "Number", "PathKind", "Setting", "Text", "setting"]

SETTING = "setting"
"""The key of a dataclass field's metadata that holds its ``Setting``."""


class Kind:
    """How a setting's values are read from text and from values, checked, and shown.

    A kind turns text (a flag) or a value (TOML, Python) into a checked value, and
    raises ``ValueError("expected <what>, got <value>")``; callers prefix the name
    the user typed.
    """

    metavar = "VALUE"

    def expected(self) -> str:
        """What a value must be, for error messages: "an integer >= 1"."""
        return "a value"

    def from_text(self, text: str) -> Any:
        """The value a command-line flag's text stands for, checked."""
        return self.from_value(text)

    def from_value(self, value: Any) -> Any:
        """``value`` (from TOML or Python) as this kind's type, checked; ValueError if it is not one."""
        raise NotImplementedError

    def to_text(self, value: Any) -> str:
        """The flag text that reads back as ``value``."""
        return str(value)

    def show(self, value: Any) -> str:
        """``value`` for ``--help``."""
        return self.to_text(value)

    def bad(self, value: Any) -> ValueError:
        return ValueError(f"expected {self.expected()}, got {value!r}")


@dataclass(frozen=True, slots=True)
class Integer(Kind):
    """A whole number within ``minimum``..``maximum`` (either may be open)."""

    minimum: int | None = None
    maximum: int | None = None
    metavar: str = "N"

    def expected(self) -> str:
        if self.minimum is not None and self.maximum is not None:
            return f"an integer {self.minimum}..{self.maximum}"
        return "an integer" + (f" >= {self.minimum}" if self.minimum is not None else "")

    def from_value(self, value: Any) -> int:
        if isinstance(value, str):
            try:
                number = int(value.strip())
            except ValueError:
                raise self.bad(value) from None
        elif isinstance(value, int) and not isinstance(value, bool):
            number = value
        else:
            raise self.bad(value)
        if (self.minimum is not None and number < self.minimum) or (
                self.maximum is not None and number > self.maximum):
            raise self.bad(value)
        return number


@dataclass(frozen=True, slots=True)
class Number(Kind):
    """A finite or infinite real number no less than ``minimum`` (NaN never)."""

    minimum: float | None = None
    metavar: str = "SECONDS"

    def expected(self) -> str:
        return "a number" + (f" >= {self.minimum:g}" if self.minimum is not None else "")

    def from_value(self, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise self.bad(value)
        try:
            number = float(value)
        except ValueError:
            raise self.bad(value) from None
        if number != number or (self.minimum is not None and number < self.minimum):
            raise self.bad(value)
        return number


@dataclass(frozen=True, slots=True)
class Text(Kind):
    """A string, not blank unless ``empty``; with ``prefixes``, one of them must start it."""

    prefixes: tuple[str, ...] = ()
    example: str = ""
    empty: bool = False
    metavar: str = "TEXT"

    def expected(self) -> str:
        if not self.prefixes:
            return "a string" if self.empty else "a non-empty string"
        return f"an address like {self.example}" + (" (or '' for none)" if self.empty else "")

    def from_value(self, value: Any) -> str:
        if not isinstance(value, str) or (not self.empty and not value.strip()):
            raise self.bad(value)
        if self.prefixes and not value.startswith(self.prefixes) and not (self.empty and value == ""):
            raise self.bad(value)
        return value

    def show(self, value: Any) -> str:
        return str(value) if value else "''"


@dataclass(frozen=True, slots=True)
class PathKind(Kind):
    """A filesystem path, ``~`` expanded; with ``directory``, an existing one must be a directory."""

    directory: bool = False
    metavar: str = "PATH"

    def expected(self) -> str:
        return "a directory" if self.directory else "a path"

    def from_value(self, value: Any) -> Path:
        if not isinstance(value, (str, Path)) or value == "":
            raise self.bad(value)
        path = Path(value).expanduser()
        if self.directory and path.exists() and not path.is_dir():
            raise ValueError(f"expected a directory, got the file {str(path)!r}")
        return path


@dataclass(frozen=True, slots=True)
class Flag(Kind):
    """True or false; on the command line the flag alone means true."""

    metavar = ""

    def expected(self) -> str:
        return "true or false"

    def from_value(self, value: Any) -> bool:
        if not isinstance(value, bool):
            raise self.bad(value)
        return value


@dataclass(frozen=True, slots=True)
class Names(Kind):
    """Names, comma-separated on the command line, a list in TOML; ``known`` lists the allowed ones."""

    known: Callable[[], Sequence[str]] | None = None
    at_least_one: bool = False
    what: str = "name"
    metavar: str = "NAMES"

    def expected(self) -> str:
        return f"comma-separated {self.what}s" if not self.at_least_one else f"one or more {self.what}s"

    def from_text(self, text: str) -> tuple[str, ...]:
        return self.from_value([name.strip() for name in text.split(",") if name.strip()])

    def from_value(self, value: Any) -> tuple[str, ...]:
        if isinstance(value, str):
            return self.from_text(value)
        if not isinstance(value, (list, tuple)) or not all(isinstance(n, str) for n in value):
            raise self.bad(value)
        names = tuple(value)
        if (self.at_least_one and not names) or not all(n.strip() for n in names):
            raise self.bad(value)
        known = self.known() if self.known is not None else None
        for name in names:
            if known is not None and name not in known:
                raise ValueError(f"unknown {self.what} {name!r}; choose from {', '.join(known)}")
        if len(set(names)) != len(names):
            raise ValueError(f"a {self.what} is named twice in {','.join(names)}")
        return names

    def to_text(self, value: Any) -> str:
        return ",".join(value)

    def show(self, value: Any) -> str:
        return ",".join(value) if value else "none"


@dataclass(frozen=True, slots=True)
class Choice(Kind):
    """One of a fixed set of words."""

    options: tuple[str, ...] = ()
    metavar: str = "WORD"

    def expected(self) -> str:
        return "one of " + ", ".join(self.options)

    def from_value(self, value: Any) -> str:
        if value not in self.options:
            raise self.bad(value)
        return str(value)


@dataclass(frozen=True, slots=True)
class Setting:
    """One setting: what it is called, what it takes, its default, and what it does.

    The collector's settings (``CollectorConfig``) and each sink's options (``Sink.options``)
    are declared with these; the command line, the TOML reader, ``--help``, the
    effective-config line and the Ray actor's arguments are all derived from them.

    ``sink`` names the sink an option belongs to: its flag and flat key are then
    prefixed with the sink's name (``repo`` of ``aim`` is ``--aim-repo``, ``aim_repo``).
    A setting whose default is None may also be None (a path nobody gave).
    """

    name: str
    kind: Kind
    default: Any
    help: str
    default_text: str = ""
    """What ``--help`` says the default is, where the value alone says too little."""
    sink: str = ""

    @property
    def key(self) -> str:
        """The flat name: the keyword argument, the TOML key at the top level."""
        return f"{self.sink}_{self.name}" if self.sink else self.name

    @property
    def flag(self) -> str:
        return "--" + self.key.replace("_", "-")

    def check(self, value: Any) -> Any:
        """``value`` checked and converted; ValueError naming this setting's key."""
        if value is None and self.default is None:
            return None
        try:
            return self.kind.from_value(value)
        except ValueError as exc:
            raise ValueError(f"{self.key}: {exc}") from None

    def help_text(self) -> str:
        shown = self.default_text or ("none" if self.default is None else self.kind.show(self.default))
        known = self.kind.known() if isinstance(self.kind, Names) and self.kind.known else ()
        choices = f"; one or more of {', '.join(known)}" if known else ""
        return f"{self.help}{choices} (default: {shown})"

    def for_sink(self, sink: str) -> Setting:
        """This option as it belongs to the sink called ``sink``."""
        return dataclasses.replace(self, sink=sink)


def setting(default: Any, kind: Kind, help: str, default_text: str = "") -> Any:
    """A dataclass field declared as a ``Setting``; the field's name is the setting's name."""
    declared = Setting("", kind, default, help, default_text)
    return dataclasses.field(default=default, metadata={SETTING: declared})


def declared(cls: type) -> tuple[Setting, ...]:
    """The settings a dataclass declares with ``setting``, in order, each with its field's name."""
    return tuple(dataclasses.replace(f.metadata[SETTING], name=f.name)
                 for f in dataclasses.fields(cls) if SETTING in f.metadata)
