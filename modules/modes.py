"""The acting modes of a policy, named in one place (no torch here: envs, records and configs use it).

- ``score``: rank the legal actions' texts by log-likelihood and pick among them (legal by construction);
- ``constrained``: decode token by token, masking every token that does not continue a legal action;
- ``generate``: free text, parsed by the environment (may be illegal or unparsable).
"""

from __future__ import annotations

from modules.errors import check_choice

ACTING_MODES: tuple[str, ...] = ("score", "constrained", "generate")


def check_mode(mode: object, option: str = "mode") -> str:
    """``mode`` if it is an acting mode, else a :class:`~modules.errors.ConfigError` naming ``option``."""
    return check_choice(mode, ACTING_MODES, option)
