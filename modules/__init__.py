"""The policy, the losses, and one LightningModule per algorithm.

Names are imported on first use (PEP 562), so ``import modules.errors`` or ``modules.modes`` does not
pull in torch or Lightning.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "DPO": "modules.dpo",
    "PPO": "modules.ppo",
    "GRPO": "modules.grpo",
    "SFT": "modules.sft",
    "OnPolicyModule": "modules.onpolicy",
    "Action": "modules.policy",
    "Policy": "modules.policy",
    "PolicyModule": "modules.base",
    "embedded_model_dir": "modules.policy",
    "ConfigError": "modules.errors",
    "DataFileError": "modules.errors",
    "LightspielError": "modules.errors",
    "ACTING_MODES": "modules.modes",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'modules' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
