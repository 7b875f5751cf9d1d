"""The single-player env a reasoning task is: one episode = one problem, one free-text answer.

:class:`ReasoningEnv` keeps the env contract (:mod:`envs.contract`) for any task: the observation is
the prompt (``legal_actions`` is empty: the answer is free-form), the episode ends with the first
answer, and the step's ``info`` carries the task's ``verdict`` (a JSON-serialisable dict: for math,
the extracted answer, whether it is correct, and the reward terms; for proofs, per-step solver
verdicts). The rollout engine stores the verdict on the turn (``Turn.verdict``), where the pair
strategies and the accuracy callback read it. A subclass says how a seed becomes a problem
(``_problem``), what the prompt is (``_prompt``) and how an answer is judged (``_judge``).
"""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces

from envs.contract import RESET_OPTIONS
from envs.core import ACTION_CHARSET, CHARSET, MAX_PROMPT_CHARS


class ReasoningEnv(gymnasium.Env):
    """Base class of the reasoning envs (one problem, one answer, a verdict).

    Subclasses set ``self.name`` (the ``game`` of its records, e.g. ``math:chain_sum``) and implement
    ``_problem(seed)``, ``_prompt(problem)`` and ``_judge(problem, text) -> verdict`` where the verdict
    holds at least ``reward`` (float), ``parsed`` (bool) and ``answer`` (the extracted answer or None).
    """

    metadata = {"render_modes": ["ansi"]}
    opponent = "self"  # single-player: the learner is the only seat
    num_players = 1

    def __init__(self, opponent: str = "self", render_mode: str | None = None) -> None:
        if opponent != "self":
            raise ValueError(
                f"opponent: a single-player reasoning env has no opponent (only 'self'), got {opponent!r}"
            )
        self.render_mode = render_mode
        self.observation_space = spaces.Dict(
            {
                "prompt": spaces.Text(max_length=MAX_PROMPT_CHARS, min_length=0, charset=CHARSET),
                "legal_actions": spaces.Sequence(spaces.Text(max_length=1, charset=CHARSET), stack=False),
                "seat": spaces.Discrete(1),
            }
        )
        self.action_space = spaces.Text(max_length=4096, min_length=0, charset=ACTION_CHARSET)
        self.problem = None
        self._over = True
        self._last: dict[str, Any] = {}

    # ------------------------------------------------------------------ for subclasses
    name = "reasoning"

    def _problem(self, seed: int):
        raise NotImplementedError

    def _prompt(self, problem) -> str:
        raise NotImplementedError

    def _judge(self, problem, text: str) -> dict:
        raise NotImplementedError

    # ------------------------------------------------------------------ gymnasium
    def _info(self, over: bool) -> dict:
        return {
            "game": self.name,
            "seat": -1 if over else 0,
            "learner_seat": 0,
            "history": [],
            "simultaneous": False,
            "opponent_actions": [],
        }

    def _obs(self) -> dict:
        prompt = self._prompt(self.problem)
        return {"prompt": prompt, "legal_actions": (), "seat": 0}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        for key, value in (options or {}).items():
            if key not in RESET_OPTIONS:
                raise ValueError(f"reset option {key!r} is not one of {RESET_OPTIONS}")
            if key == "history" and value != []:
                raise ValueError(
                    f"reset option history: a reasoning env has no moves to replay, got {value!r}"
                )
            if key == "learner_seat" and value not in (None, 0):
                raise ValueError(
                    f"reset option learner_seat: a single-player env has seat 0 only, got {value!r}"
                )
        pick = int(seed) if seed is not None else int(self.np_random.integers(2**31 - 1))
        self.problem = self._problem(pick)
        self._over = False
        return self._obs(), self._info(False)

    def step(self, action: str | int):
        if self._over:
            raise RuntimeError("step() after the episode ended; call reset()")
        text = action if isinstance(action, str) else str(action)
        verdict = self._judge(self.problem, text)
        reward = float(verdict["reward"])
        parsed = bool(verdict["parsed"])
        self._over = True
        info = self._info(True)
        info.update(
            acting_seat=0,
            action=None,
            action_text=verdict.get("answer"),
            parsed=parsed,
            legal=parsed,
            outcome="ok" if parsed else "unparsed",
            rule=None if parsed else "forfeit",
            penalty=0.0,
            retries=0,
            returns=[reward],
            penalties=[0.0],
            verdict=verdict,
        )
        self._last = {"answer": text, "verdict": verdict}
        return self._obs(), reward, True, False, info

    def render(self) -> str:
        lines = [self._prompt(self.problem)] if self.problem is not None else []
        if self._last:
            lines += [f"answer: {self._last['answer']}", f"verdict: {self._last['verdict']}"]
        return "\n".join(lines)


def numpy_free(value: Any) -> Any:
    """``value`` with numpy scalars turned into Python ones (verdicts must serialise as JSON)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {k: numpy_free(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [numpy_free(v) for v in value]
    return value
