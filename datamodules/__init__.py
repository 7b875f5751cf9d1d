"""Rollouts and preference construction: episodes in, batches out."""

from datamodules.pairs import build_pairs, margin_pairs, oracle_pairs, split_pairs, state_key
from datamodules.preference import PreferenceDataModule
from datamodules.records import Episode, PreferencePair, Turn, read_jsonl
from datamodules.rollout import RolloutEngine, RolloutResult, outcome_metrics

__all__ = [
    "Episode",
    "PreferenceDataModule",
    "PreferencePair",
    "RolloutEngine",
    "RolloutResult",
    "Turn",
    "build_pairs",
    "margin_pairs",
    "oracle_pairs",
    "outcome_metrics",
    "read_jsonl",
    "split_pairs",
    "state_key",
]
