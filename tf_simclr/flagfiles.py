"""Flag files and `--name=value` arguments -> `Config`, without absl: for the scripts.

`run.py` parses its flags with absl. The scripts (`scripts/feature_eval.py`,
`scripts/ablations.py`) take the same flags and flag files, but have flags of
their own and must not import `run.py`; they use this module instead:

- `read_flagfile(path)`: `{name: value string}` of a flag file;
- `values_from_args(args)`: the same for command-line arguments, where
  `--flagfile=PATH` is expanded in place;
- `config_from_flags(values)`: a `Config` from such strings, each parsed by the
  type of its field (`tf_simclr.config.flag_specs`), as absl parses it.

Flag file syntax, as absl's: one `--name=value` per line; blank lines and lines
starting with `#` or `//` are ignored; `--name` alone sets a boolean flag to
true and `--noname` to false; a later value of a flag replaces an earlier one;
`--flagfile=OTHER` includes OTHER at that place. A nested `--flagfile=` path is
read as absl reads it, relative to the working directory, when it exists there;
else relative to the folder of the file that names it or one of that folder's
parents (the repository's flag files name `experiments/...` paths, so they work
from the repository root with `run.py` and from anywhere with these scripts).
"""

from __future__ import annotations

import os

from tf_simclr.config import Config, ConfigError, flag_specs

TRUE = ("true", "t", "1")
FALSE = ("false", "f", "0")


def _kinds() -> dict[str, type]:
    return {name: kind for name, kind, *_ in flag_specs()}


def parse_bool(text: str, name: str = "flag") -> bool:
    """absl's boolean syntax: true/t/1 or false/f/0, any case."""
    lowered = text.strip().lower()
    if lowered in TRUE:
        return True
    if lowered in FALSE:
        return False
    raise ConfigError(name, "expects true or false (or 1 / 0)", text)


def parse_value(name: str, text: str):
    """The value of the `Config` field `name` written as `text` on a command line."""
    kind = _kinds().get(name)
    if kind is None:
        raise ConfigError(name, "is not a run.py flag")
    if kind is bool:
        return parse_bool(text, name)
    try:
        return kind(text)
    except ValueError:
        raise ConfigError(name, f"expects {kind.__name__}", text) from None


def _split(arg: str, kinds: dict[str, type]) -> tuple[str, str | None]:
    """`--name=value` -> (name, value); `--name` -> (name, None); `--noname` of a
    boolean flag -> (name, "false")."""
    name, sep, value = arg.lstrip("-").partition("=")
    if sep:
        return name, value
    if name not in kinds and name.startswith("no") and kinds.get(name[2:]) is bool:
        return name[2:], "false"
    return name, None


def values_from_args(args: list[str], base_dir: str = "") -> dict[str, str]:
    """`{name: value string}` of command-line style arguments, later ones winning.

    `--flagfile=PATH` (relative to `base_dir`, default the working directory) is
    replaced by the file's flags; `--name value` works for non-boolean flags and
    `--name` alone means true. Arguments that are not flags are a ConfigError.
    """
    kinds = _kinds()
    values: dict[str, str] = {}
    rest = list(args)
    while rest:
        arg = rest.pop(0)
        if not arg.startswith("-") or arg in ("-", "--"):
            raise ConfigError("flagfile", "expected --name=value", arg)
        name, value = _split(arg, kinds)
        if value is None:
            if kinds.get(name) is bool or not rest or rest[0].startswith("-"):
                value = "true"
            else:
                value = rest.pop(0)
        if name == "flagfile":
            values.update(read_flagfile(os.path.join(base_dir, value)))
        else:
            values[name] = value
    return values


def _nested_path(value: str, including: str) -> str:
    """Where a nested `--flagfile=value` of the file `including` is (see the docstring)."""
    if os.path.isabs(value) or os.path.exists(value):
        return value
    folder = os.path.dirname(os.path.abspath(including))
    while True:
        candidate = os.path.join(folder, value)
        if os.path.exists(candidate) or os.path.dirname(folder) == folder:
            return candidate if os.path.exists(candidate) else value
        folder = os.path.dirname(folder)


def read_flagfile(path: str, _including: tuple[str, ...] = ()) -> dict[str, str]:
    """`{name: value string}` of a flag file (see the module docstring for the syntax).

    Raises:
      ConfigError (on `flagfile`): the file, or one it includes, is missing or
        includes itself, or a line is not a flag.
    """
    real = os.path.realpath(path)
    if real in _including:
        raise ConfigError("flagfile", "includes itself (through --flagfile lines)", path)
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise ConfigError("flagfile", f"cannot be read ({e.strerror})", path) from None
    kinds = _kinds()
    values: dict[str, str] = {}
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith(("#", "//")):
            continue
        if not line.startswith("-"):
            raise ConfigError("flagfile", f"line {number} is not a --name=value flag", path)
        name, value = _split(line, kinds)
        if name == "flagfile":
            values.update(read_flagfile(_nested_path(value or "", path), (*_including, real)))
        else:
            values[name] = "true" if value is None else value
    return values


def config_from_flags(values: dict[str, str]) -> Config:
    """The `Config` of `{name: value string}` flags; other fields keep their defaults.

    Raises:
      ConfigError: a name that is not a `Config` field ("is not a run.py flag"),
        or a value its type cannot parse. Values are not validated
        (`Config.validate` does that).
    """
    return Config(**{name: parse_value(name, text) for name, text in values.items()})


def load(path: str, overrides: dict[str, str] | None = None) -> Config:
    """The `Config` of a flag file, with `overrides` (value strings) applied on top."""
    return config_from_flags({**read_flagfile(path), **(overrides or {})})
