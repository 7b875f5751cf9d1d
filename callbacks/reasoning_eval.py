"""Accuracy on held-out problems of a reasoning env, before training and as it trains.

``ReasoningEval`` answers ``num_problems`` held-out problems (seeds from ``seed``, far from any
training seed) greedily with the live policy, reads the env's verdicts and reports:

- math: ``accuracy`` (with its 95% Wilson interval), ``parse_rate`` (an answer was found),
  ``marker_rate`` (it used ``#### ``), ``mean_answer_chars``, ``mean_reward``;
- proofs (verdicts with per-step results): also ``valid_step_rate`` (valid steps over all steps
  written) and ``all_valid_rate`` (proofs whose every step is valid).

Each evaluation is logged (``eval_<name>/...``), its first answers go to TensorBoard as text, and it
is written to ``reports/reasoning_<name>_<label>.json``; at the end of fit every evaluation is
compared with the first, problem by problem (McNemar), in ``reports/reasoning_<name>_comparison.json``.
Added to a game run (``env: lightspiel/Math-v0`` with its own ``system_prompt`` and
``max_new_tokens``), it measures transfer from play to math as the game trains (SPIRAL, arXiv
2506.24119, reports such transfer); ``configs/quickstart.yaml`` shows how, commented out.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import lightning as L
from lightning.pytorch.utilities import rank_zero_info

from callbacks.schedule import EvaluationSchedule
from datamodules.metrics import mcnemar, verdict_metrics
from datamodules.records import Episode, write_json_atomic
from datamodules.rollout import RolloutEngine, make_env
from datamodules.transcripts import log_transcripts
from modules.errors import ConfigError
from modules.modes import check_mode


def _line(m: dict) -> str:
    """One evaluation in words: accuracy with its interval, and the proof rates where there are some."""
    text = (
        f"accuracy {m['accuracy']:.3f} [{m['accuracy_low']:.3f}, {m['accuracy_high']:.3f}] on "
        f"{int(m['problems'])} held-out problems, parse {m['parse_rate']:.2f}"
    )
    if "valid_step_rate" in m:
        text += f", valid steps {m['valid_step_rate']:.3f}, all steps valid {m['all_valid_rate']:.3f}"
    return text


def _success(episode: Episode) -> bool:
    v = (episode.turns[0].verdict or {}) if episode.turns else {}
    return bool(v.get("correct", v.get("all_valid", False)))


class ReasoningEval(EvaluationSchedule):
    """Held-out accuracy of a reasoning env, before training and every K epochs.

    Args:
        env: Gymnasium id of the reasoning env.
        env_kwargs: Its options (task, difficulty, prompt variant, ...).
        num_problems: Held-out problems per evaluation.
        every_n_epochs: Evaluate after every K-th epoch (and after the last).
        at_start: Also evaluate before the first update.
        name: Names the metrics (``eval_<name>/...``), the reports and the checkpoint state.
        mode: Acting mode (``generate``: free text, the way users ask a model).
        seed: First held-out seed.
        num_envs: Problems answered together.
        system_prompt: The system message while evaluating (``None``: the policy's own). A game run
            that measures transfer to math sets one that asks for math, not moves.
        max_new_tokens: The answer budget while evaluating (``None``: the policy's own; a game's
            policy is often given a few tokens only, too few to work a problem out).
    """

    def __init__(
        self,
        env: str = "lightspiel/Math-v0",
        env_kwargs: dict | None = None,
        num_problems: int = 100,
        every_n_epochs: int = 1,
        at_start: bool = True,
        name: str = "math",
        mode: str = "generate",
        seed: int = 900_000_000,
        num_envs: int = 16,
        system_prompt: str | None = None,
        max_new_tokens: int | None = None,
    ) -> None:
        if not name or not name.replace("_", "").replace("-", "").isalnum():
            raise ConfigError(f"ReasoningEval: name must be letters, digits, '-' or '_'; got {name!r}")
        for key, value in (
            ("num_problems", num_problems),
            ("every_n_epochs", every_n_epochs),
            ("num_envs", num_envs),
        ):
            if value < 1:
                raise ConfigError(f"ReasoningEval: {key} must be >= 1, got {value}")
        check_mode(mode, "ReasoningEval: mode")
        if max_new_tokens is not None and max_new_tokens < 1:
            raise ConfigError(f"ReasoningEval: max_new_tokens must be >= 1, got {max_new_tokens}")
        self.system_prompt, self.max_new_tokens = system_prompt, max_new_tokens
        make_env(env, env_kwargs).close()  # a bad id or option fails now, before the model loads
        self.env, self.env_kwargs = env, dict(env_kwargs or {})
        self.num_problems, self.every_n_epochs, self.at_start = num_problems, every_n_epochs, at_start
        self.name, self.mode, self.seed, self.num_envs = name, mode, seed, num_envs
        self.history: list[dict] = []

    @property
    def state_key(self) -> str:
        return self._generate_state_key(name=self.name)

    def _report(self, trainer: L.Trainer, suffix: str) -> Path:
        return Path(trainer.default_root_dir) / "reports" / f"reasoning_{self.name}_{suffix}.json"

    def evaluate(self, trainer: L.Trainer, pl_module: L.LightningModule, label: str) -> dict:
        seeds = [self.seed + i for i in range(self.num_problems)]
        engine = RolloutEngine(self.env, self.env_kwargs, min(self.num_envs, self.num_problems))
        with self._asking(pl_module.policy):
            played = engine.play(pl_module.policy, seeds, mode=self.mode, greedy=True, progress=f"eval {self.name}")
        episodes = played.episodes
        entry = {
            "label": label,
            "epoch": trainer.current_epoch,
            "step": trainer.global_step,
            "metrics": verdict_metrics(episodes),
            "problems": {str(e.seed): _success(e) for e in episodes},
        }
        self.history.append(entry)
        prefix = f"eval_{self.name}"
        for logger in trainer.loggers:
            logger.log_metrics(
                {f"{prefix}/{k}": v for k, v in entry["metrics"].items()}, step=trainer.global_step
            )
            log_transcripts(logger, f"{prefix}/answers", episodes, trainer.global_step)
        rank_zero_info(f"{prefix} {label}: {_line(entry['metrics'])}")
        if trainer.is_global_zero:
            write_json_atomic(self._report(trainer, label), entry)
        return entry

    @contextlib.contextmanager
    def _asking(self, policy):
        """The policy with this evaluation's system prompt and answer budget, restored afterwards."""
        saved = policy.system_prompt, policy.max_new_tokens
        if self.system_prompt is not None:
            policy.system_prompt = self.system_prompt
        if self.max_new_tokens is not None:
            policy.max_new_tokens = self.max_new_tokens
        try:
            yield
        finally:
            policy.system_prompt, policy.max_new_tokens = saved

    def comparison(self) -> list[dict]:
        """Every evaluation against the first, on the problems both answered (McNemar)."""
        if not self.history:
            return []
        first = self.history[0]
        rows = []
        for entry in self.history:
            common = sorted(set(first["problems"]) & set(entry["problems"]))
            test = mcnemar([first["problems"][s] for s in common], [entry["problems"][s] for s in common])
            rows.append({"label": entry["label"], **entry["metrics"], "mcnemar_vs_first": test})
        return rows

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        rows = self.comparison()
        if len(rows) < 2:
            return
        for row in rows:
            test = row["mcnemar_vs_first"]
            rank_zero_info(
                f"eval_{self.name} {row['label']:>9}: {_line(row)}; accuracy vs first: b={test['b']} c={test['c']} "
                f"p={test['p_value']:.3g}"
            )
        if trainer.is_global_zero:
            write_json_atomic(self._report(trainer, "comparison"), rows)

    def state_dict(self) -> dict:
        return {"history": self.history}

    def load_state_dict(self, state_dict: dict) -> None:
        self.history = list(state_dict.get("history", []))
