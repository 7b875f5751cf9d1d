"""Single-player reasoning envs with verifiable rewards (``lightspiel/Math-v0``, ...).

:mod:`answers` (final-answer extraction and the exact check), :mod:`problems` (a user's JSONL file or
an offline ``reasoning-gym`` generator), :mod:`base` (the env contract for one problem, one answer),
:mod:`math_env`; :mod:`logic` (PrOntoQA-style problems and the step-by-step proof solver),
:mod:`logic_env`. docs/reasoning.md describes prompts, answer formats, rewards and data sources.
"""

from __future__ import annotations

import gymnasium

#: Gymnasium ids of the reasoning envs and their entry points.
REASONING_ENVS: dict[str, str] = {
    "lightspiel/Math-v0": "envs.reasoning.math_env:MathEnv",
    "lightspiel/LogicProof-v0": "envs.reasoning.logic_env:LogicProofEnv",
}


def register_reasoning_ids() -> None:
    """Register every id of :data:`REASONING_ENVS` with Gymnasium (idempotent)."""
    for env_id, entry_point in REASONING_ENVS.items():
        if env_id not in gymnasium.registry:
            # opponent "self": the datamodules and callbacks read a default opponent from the spec
            gymnasium.register(env_id, entry_point=entry_point, kwargs={"opponent": "self"})
