"""Rollouts and preference construction: episodes in, batches out.

Names are imported on first use (PEP 562): ``datamodules.records`` (the JSONL records) imports
without torch or Lightning, so tools that only read or write episodes stay light.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "build_pairs": "datamodules.pairs",
    "margin_pairs": "datamodules.pairs",
    "oracle_pairs": "datamodules.pairs",
    "split_pairs": "datamodules.pairs",
    "state_key": "datamodules.pairs",
    "PreferenceDataModule": "datamodules.preference",
    "OnPolicyDataModule": "datamodules.onpolicy",
    "SFTDataModule": "datamodules.sft",
    "SFTExample": "datamodules.records",
    "gold_examples": "datamodules.sft",
    "Episode": "datamodules.records",
    "PreferencePair": "datamodules.records",
    "Turn": "datamodules.records",
    "read_jsonl": "datamodules.records",
    "RolloutEngine": "datamodules.rollout",
    "RolloutResult": "datamodules.rollout",
    "outcome_metrics": "datamodules.rollout",
    "AgentPlayer": "datamodules.players",
    "PolicyPlayer": "datamodules.players",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'datamodules' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
