"""User-facing errors: each names the option, file, line or field at fault and what was expected.

The CLI prints these as one message (no traceback) and exits with status 2. This module imports
nothing heavy (no torch, no Lightning), so records and env code can raise these errors cheaply.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class LightspielError(ValueError):
    """A mistake in the user's input, as opposed to a bug."""


class ConfigError(LightspielError):
    """A bad option value or model path."""


class DataFileError(LightspielError):
    """A bad line in an episodes or pairs file: ``file:line: field: problem``."""

    def __init__(self, path, line: int, field: str, problem: str) -> None:
        super().__init__(f"{path}:{line}: field {field!r}: {problem}")
        self.path, self.line, self.field = str(path), line, field


def did_you_mean(name: object, choices: Iterable[str]) -> str:
    """``"; did you mean 'score'?"`` for the closest valid choice, or ``""`` when none is close."""
    close = difflib.get_close_matches(str(name), list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def check_choice(value: object, choices: Iterable[str], option: str) -> str:
    """Return ``value`` if it is one of ``choices``; else raise :class:`ConfigError` naming ``option``,
    the valid choices and the closest one."""
    choices = tuple(choices)
    if value not in choices:
        raise ConfigError(
            f"{option} must be one of {', '.join(choices)}; got {value!r}{did_you_mean(value, choices)}"
        )
    return value  # type: ignore[return-value]
