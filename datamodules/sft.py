"""Supervised examples: from a JSONL file, or gold completions an env knows how to give.

- A reasoning env gives each problem's worked solution (``env.unwrapped.gold_solution(seed)``);
- a game gives, at states reached by random play (both seats), the oracle's best move (exact
  minimax where the game is small enough, MCTS otherwise: the values the ``oracle`` pair strategy
  uses), which is also a warm start before DPO.

:class:`SFTDataModule` serves them to :class:`modules.sft.SFT`; the preference datamodule's SFT stage
(``sft_iterations``) calls :func:`gold_examples` too. The examples are written to the run folder
(``sft_train.jsonl``, ``sft_eval.jsonl``, atomically) in TRL's prompt-completion shape.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import lightning as L
import numpy as np
from torch.utils.data import DataLoader

from datamodules.pairs import check_oracle_discount
from datamodules.records import SFTExample, read_jsonl, write_jsonl_atomic
from datamodules.rollout import make_env
from modules.errors import ConfigError

EVAL_SEED_OFFSET = 500_000  # gold examples for evaluation come from seeds this far from training's


def training_seeds(seed: int, count: int, offset: int = 0) -> list[int]:
    """The seeds of ``count`` examples (``offset`` shifts to a disjoint range)."""
    base = 1_000_003 * (seed + 1) + 7 + offset
    return [base + i for i in range(count)]


def gold_examples(
    env_id: str,
    env_kwargs: dict | None,
    seeds: list[int],
    system: str | None = None,
    oracle: str = "auto",
    discount: float = 1.0,
) -> list[SFTExample]:
    """Gold examples of an env: a worked solution per seed (reasoning envs) or, for a game, the
    oracle's best move at every decision of one random self-play game per seed (``discount``:
    exact values discounted per decision, so that the quickest win is the gold move)."""
    env = make_env(env_id, env_kwargs)
    try:
        base = env.unwrapped
        if hasattr(base, "gold_solution"):
            out = []
            for s in seeds:
                prompt, completion = base.gold_solution(int(s))
                out.append(SFTExample(prompt, completion, f"{env_id}:{s}", system))
            return out
        if not hasattr(base, "state"):
            raise ConfigError(f"env {env_id!r} has no gold completions (no gold_solution, not a game)")
    finally:
        env.close()
    return _game_gold(env_id, env_kwargs, seeds, system, oracle, discount)


def _game_gold(
    env_id: str, env_kwargs: dict | None, seeds: list[int], system: str | None, oracle: str, discount: float
) -> list[SFTExample]:
    from datamodules.pairs import _OracleValues
    from envs import renderer_for

    env = make_env(env_id, {**(env_kwargs or {}), "opponent": "self"})
    values_of = _OracleValues(oracle, 200, np.random.default_rng(0), discount)
    out: list[SFTExample] = []
    seen: set[str] = set()
    try:
        for s in seeds:
            rng = np.random.default_rng([int(s), 11])
            obs, info = env.reset(seed=int(s))
            over = False
            while not over:
                base = env.unwrapped
                seat = int(obs["seat"])
                values, _ = values_of(info["game"], base.state.clone(), seat)
                renderer = renderer_for(info["game"])
                by_text = {renderer.action_text(base.state, seat, a): v for a, v in values.items()}
                best = max(by_text.values())
                key = f"{seat}\x00{obs['prompt']}"
                if key not in seen:
                    seen.add(key)
                    chosen = sorted(t for t, v in by_text.items() if v == best)[0]
                    out.append(SFTExample(obs["prompt"], chosen, f"{env_id}:{s}:oracle", system))
                legal = obs["legal_actions"]
                obs, _, terminated, truncated, info = env.step(int(rng.integers(len(legal))))
                over = terminated or truncated
    finally:
        env.close()
    return out


def _collate(batch: list[SFTExample]) -> list[SFTExample]:
    return batch


class SFTDataModule(L.LightningDataModule):
    """Prompt/completion examples for SFT.

    Args:
        data_path: A JSONL file of examples (TRL's prompt-completion or messages shape, or plain
            ``{"prompt": str, "completion": str}``); validated line by line.
        env: Instead, a Gymnasium id whose gold completions to learn (see the module docstring).
        env_kwargs: Options of that env.
        num_examples: Gold examples drawn from the env (one per seed; a game gives one per decision).
        eval_examples: Held-out gold examples (from seeds disjoint from training's).
        eval_ratio: With ``data_path``: the share of prompts held out for validation.
        oracle: For games: ``auto``, ``minimax`` or ``mcts``.
        oracle_discount: For games, with an exact oracle: discount each later decision (1: plain
            minimax), so that the gold move of a won position is its quickest win and of a lost one
            its slowest loss (``envs.oracles.action_values``).
        batch_size: Examples per training batch.
        seed: Seeds the examples and the shuffle.
        run_dir: Where ``sft_{train,eval}.jsonl`` go; defaults to the trainer's ``default_root_dir``.
    """

    def __init__(
        self,
        data_path: str | None = None,
        env: str | None = None,
        env_kwargs: dict | None = None,
        num_examples: int = 256,
        eval_examples: int = 32,
        eval_ratio: float = 0.1,
        oracle: str = "auto",
        oracle_discount: float = 1.0,
        batch_size: int = 8,
        seed: int = 0,
        run_dir: str | None = None,
    ) -> None:
        super().__init__()
        if (data_path is None) == (env is None):
            raise ConfigError(
                "--data: give exactly one of data_path (a JSONL file) or env (gold completions)"
            )
        if data_path is not None and not Path(data_path).is_file():
            raise ConfigError(
                f"--data.data_path: no such file {data_path!r} (expected a JSONL of prompt/completion)"
            )
        for name, value in (("num_examples", num_examples), ("batch_size", batch_size)):
            if value < 1:
                raise ConfigError(f"--data.{name} must be >= 1, got {value}")
        if eval_examples < 0 or not 0.0 <= eval_ratio < 1.0:
            raise ConfigError(
                f"--data.eval_examples must be >= 0 and eval_ratio in [0, 1), got {eval_examples}, {eval_ratio}"
            )
        worked = False  # an env whose gold completions are worked solutions, not the oracle's moves
        if env is not None:
            probe = make_env(env, env_kwargs)  # a bad id or option fails now, before the model loads
            worked = hasattr(probe.unwrapped, "gold_solution")
            probe.close()
        unused_by = "--data.data_path" if data_path is not None else None
        if worked:
            unused_by = f"--data.env {env!r} (its gold completions are worked solutions)"
        check_oracle_discount(oracle_discount, oracle, unused_by)
        self.data_path, self.env, self.env_kwargs = data_path, env, dict(env_kwargs or {})
        self.num_examples, self.eval_examples, self.eval_ratio = num_examples, eval_examples, eval_ratio
        self.oracle, self.batch_size, self.seed, self._run_dir = oracle, batch_size, seed, run_dir
        self.oracle_discount = oracle_discount
        self.train_examples: list[SFTExample] = []
        self.eval_set: list[SFTExample] = []

    @property
    def run_dir(self) -> Path:
        if self._run_dir:
            return Path(self._run_dir)
        return Path(self.trainer.default_root_dir) if self.trainer is not None else Path("runs/default")

    def setup(self, stage: str) -> None:
        if self.train_examples:
            return
        module = self.trainer.lightning_module if self.trainer is not None else None
        system = getattr(getattr(module, "policy", None), "system_message", None)
        if self.data_path is not None:
            examples = read_jsonl(self.data_path, SFTExample)
            train, evals = [], []
            for ex in examples:
                h = int(hashlib.sha1(f"{self.seed}\x00{ex.prompt}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
                (evals if h < self.eval_ratio else train).append(ex)
            self.train_examples, self.eval_set = train, evals
        else:
            seeds = training_seeds(self.seed, self.num_examples)
            held = training_seeds(self.seed, self.eval_examples, EVAL_SEED_OFFSET)
            gold = dict(system=system, oracle=self.oracle, discount=self.oracle_discount)
            self.train_examples = gold_examples(self.env, self.env_kwargs, seeds, **gold)
            self.eval_set = gold_examples(self.env, self.env_kwargs, held, **gold)
        if not self.train_examples:
            raise ConfigError("--data: no training examples (an empty file, or every prompt held out)")
        write_jsonl_atomic(self.run_dir / "sft_train.jsonl", self.train_examples)
        write_jsonl_atomic(self.run_dir / "sft_eval.jsonl", self.eval_set)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_examples, batch_size=self.batch_size, shuffle=True, collate_fn=_collate)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.eval_set, batch_size=self.batch_size, shuffle=False, collate_fn=_collate)
