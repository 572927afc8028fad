"""Where the settings' text comes from: the environment and a .env file.

``read_variables`` gathers the ``COPYTRADE_`` variables of both (a real environment variable
wins over the file; a blank value means "the default"), refuses names that are not settings
(naming the closest valid one), and ``nest`` turns them into the nested mapping the
``Settings`` model validates: ``COPYTRADE_LIMITER__PER_SECOND`` -> ``{"limiter":
{"per_second": ...}}``; a whole section may also be given as JSON (``COPYTRADE_DHAN='{...}'``),
its ``__`` keys then win over the JSON's.

Every error is a ``SettingsSourceError`` whose text is one line naming the variable or the
file, never a value.
"""

from __future__ import annotations

import difflib
import io
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from dotenv import dotenv_values
from dotenv.parser import parse_stream

__all__ = ["ENV_PREFIX", "NESTED", "SettingsSourceError", "known_keys", "nest", "read_variables"]

ENV_PREFIX = "COPYTRADE_"
NESTED = "__"


class SettingsSourceError(ValueError):
    """The raw settings cannot be read; each item of ``problems`` is one line."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


def known_keys(fields: Iterable[str], sections: Mapping[str, Iterable[str]]) -> set[str]:
    """Every valid variable name: each top-level field, and each field of a section."""
    keys = {ENV_PREFIX + name.upper() for name in fields}
    for section, names in sections.items():
        keys |= {f"{ENV_PREFIX}{section.upper()}{NESTED}{name.upper()}" for name in names}
    return keys


def read_variables(
    env_file: Path | None, environ: Mapping[str, str], valid: set[str]
) -> dict[str, str]:
    """The non-blank ``COPYTRADE_`` variables (upper-case names), the environment's winning."""
    from_file = _read_env_file(env_file) if env_file is not None else {}
    from_env = {name.upper(): value for name, value in environ.items() if _is_ours(name)}
    # Blank names are checked too: a misspelt key is a mistake whatever its value.
    unknown = sorted((set(from_file) | set(from_env)) - valid)
    if unknown:
        raise SettingsSourceError([_unknown_key(name, valid) for name in unknown])
    merged = {name: value for name, value in from_file.items() if value}
    merged.update({name: value for name, value in from_env.items() if value})
    return merged


def nest(variables: Mapping[str, str], sections: set[str]) -> dict[str, Any]:
    """The variables as the nested mapping the model validates (names lower-cased)."""
    data: dict[str, Any] = {}
    # Sorted, so a whole section (COPYTRADE_DHAN) comes before its keys (COPYTRADE_DHAN__...).
    for name, value in sorted(variables.items()):
        path = name[len(ENV_PREFIX) :].lower().split(NESTED, 1)
        field = path[0]
        if len(path) == 2:
            section = data.setdefault(field, {})
            if isinstance(section, dict):
                section[path[1]] = value
        elif field in sections:
            data[field] = _section_json(name, value)
        else:
            data[field] = value
    return data


def _is_ours(name: str) -> bool:
    return name.upper().startswith(ENV_PREFIX)


def _unknown_key(name: str, valid: set[str]) -> str:
    # Compared without the prefix every name shares, or everything looks alike.
    stems = {key[len(ENV_PREFIX) :]: key for key in valid}
    close = difflib.get_close_matches(name[len(ENV_PREFIX) :], sorted(stems), n=1, cutoff=0.6)
    hint = f"did you mean {stems[close[0]]}?" if close else "see .env.example for the valid keys"
    return f"{name}: is not a known setting ({hint})"


def _section_json(name: str, value: str) -> dict[str, Any]:
    try:
        decoded = json.loads(value)
    except json.JSONDecodeError:
        raise SettingsSourceError([f"{name}: is not valid JSON"]) from None
    if not isinstance(decoded, dict):
        raise SettingsSourceError([f"{name}: must be a JSON object"])
    return decoded


def _read_env_file(path: Path) -> dict[str, str]:
    """The file's ``COPYTRADE_`` variables; a blank or bare ``NAME`` is kept as ``""``."""
    where = f"env file {path}"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SettingsSourceError([f"{where}: not found"]) from None
    except IsADirectoryError:
        raise SettingsSourceError([f"{where}: is a folder, not a file"]) from None
    except UnicodeDecodeError:
        raise SettingsSourceError([f"{where}: is not UTF-8 text"]) from None
    except OSError as exc:
        raise SettingsSourceError([f"{where}: cannot read ({exc.strerror})"]) from None
    # python-dotenv only logs a line it cannot parse and drops it: a dropped line could be a
    # safety setting, so it is an error here (reported by line number, never by content).
    for binding in parse_stream(io.StringIO(text)):
        if binding.error:
            line = binding.original.line
            raise SettingsSourceError([f"{where} line {line}: cannot parse (expected NAME=value)"])
    values = dotenv_values(stream=io.StringIO(text))
    return {name.upper(): value or "" for name, value in values.items() if _is_ours(name)}
