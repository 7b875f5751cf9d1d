"""The preference DataModule: episodes (given, or played by the live policy) -> pairs -> batches.

Data is built lazily when the trainer asks for a dataloader, for the current *iteration*: the live
policy is taken from the trainer's LightningModule at that moment, so iteration n's episodes come
from the policy as it stands after iteration n-1's updates. Per iteration the run folder holds::

    iter_000/episodes.jsonl     appended one line per finished game (a killed run keeps them)
    iter_000/pairs_train.jsonl  written atomically, prompt/chosen/rejected plus scores and provenance
    iter_000/pairs_eval.jsonl

A resumed run finds the files of its iteration and only plays the episodes still missing.
"""

from __future__ import annotations

import time
from pathlib import Path

import gymnasium
import lightning as L
from torch.utils.data import DataLoader

from datamodules.batching import GroupBatchSampler
from datamodules.pairs import ORACLES, STRATEGIES, build_pairs, split_pairs
from datamodules.records import (
    Episode,
    PreferencePair,
    read_complete_episodes,
    read_jsonl,
    write_jsonl_atomic,
)
from datamodules.rollout import RolloutEngine, outcome_metrics
from datamodules.transcripts import log_transcripts
from modules.errors import ConfigError, check_choice
from modules.modes import check_mode


def _collate(batch: list[PreferencePair]) -> list[PreferencePair]:
    return batch


class StateBatchSampler(GroupBatchSampler):
    """Batches of about ``batch_size`` pairs that keep each state's pairs together.

    A state's pairs share one prompt, and the DPO module runs each distinct prompt of a batch once,
    so keeping them together makes a state with k pairs cost one prompt pass instead of k.
    """

    def __init__(self, pairs: list[PreferencePair], batch_size: int, shuffle: bool = True) -> None:
        super().__init__([p.state_key for p in pairs], batch_size, shuffle)


class PreferenceDataModule(L.LightningDataModule):
    """Builds DPO pairs from self-play episodes, iteration after iteration.

    Args:
        env: Gymnasium id of the game, e.g. ``lightspiel/TicTacToe-v0``.
        env_kwargs: Options of the env (opponent, illegal_rule, ...).
        opponents: Mix of opponents for the rollouts, e.g. ``[self, random]``: the iteration's games are
            dealt round-robin among them (overrides ``env_kwargs.opponent``). Self-play alone sees only
            the states its own sharpening policy reaches; a random opponent keeps the states varied.
        episodes_path: A JSONL file of episodes to use for iteration 0 instead of playing.
        num_episodes: Games played per iteration.
        num_envs: Games stepped together (one batched policy call per wave).
        mode: How the policy acts in rollouts: ``score``, ``constrained`` or ``generate``.
        temperature: Sampling temperature of rollouts (None: the policy's own). Above 1 explores more
            states, which matters once the policy has sharpened.
        window: Pairs are built from the episodes of the last ``window`` iterations (1: fresh only).
        strategy: How pairs are built: ``margin`` or ``oracle``.
        oracle: The oracle for ``strategy: oracle``: ``minimax`` (exact), ``mcts``, or ``auto``
            (exact where the game is small enough, MCTS otherwise).
        margin: Minimum score (or value) gap between chosen and rejected.
        max_pairs_per_state: Cap on pairs drawn from one state.
        eval_ratio: Fraction of states held out for evaluation.
        seed: Seeds the episodes, the pair sampling and the split.
        batch_size: Pairs per training batch (about: a state's pairs stay in one batch).
        run_dir: Where iteration folders go; defaults to the trainer's ``default_root_dir``.
    """

    def __init__(
        self,
        env: str = "lightspiel/TicTacToe-v0",
        env_kwargs: dict | None = None,
        opponents: list[str] | None = None,
        episodes_path: str | None = None,
        num_episodes: int = 64,
        num_envs: int = 16,
        mode: str = "score",
        temperature: float | None = None,
        window: int = 1,
        strategy: str = "oracle",
        oracle: str = "auto",
        margin: float = 0.1,
        max_pairs_per_state: int = 2,
        eval_ratio: float = 0.1,
        seed: int = 0,
        batch_size: int = 8,
        run_dir: str | None = None,
    ) -> None:
        super().__init__()
        check_choice(strategy, STRATEGIES, "--data.strategy")
        check_choice(oracle, ORACLES, "--data.oracle")
        check_mode(mode, "--data.mode")
        if temperature is not None and temperature <= 0:
            raise ConfigError(f"--data.temperature must be > 0, got {temperature}")
        if window < 1:
            raise ConfigError(f"--data.window must be >= 1, got {window}")
        for name, value in (
            ("num_episodes", num_episodes),
            ("num_envs", num_envs),
            ("batch_size", batch_size),
            ("max_pairs_per_state", max_pairs_per_state),
        ):
            if value < 1:
                raise ConfigError(f"--data.{name} must be >= 1, got {value}")
        if margin <= 0:
            raise ConfigError(f"--data.margin must be > 0, got {margin}")
        if not 0.0 <= eval_ratio < 1.0:
            raise ConfigError(f"--data.eval_ratio must be in [0, 1), got {eval_ratio}")
        from envs import OPPONENTS

        for opponent in opponents or []:
            check_choice(opponent, OPPONENTS, "--data.opponents")
        if episodes_path is not None and not Path(episodes_path).is_file():
            raise ConfigError(
                f"--data.episodes_path: no such file {episodes_path!r} (expected episodes JSONL)"
            )
        self.env, self.env_kwargs = env, dict(env_kwargs or {})
        self.opponents = list(opponents or [])
        self.episodes_path = episodes_path
        self.num_episodes, self.num_envs, self.mode = num_episodes, num_envs, mode
        self.temperature, self.window = temperature, window
        self.strategy, self.oracle, self.margin = strategy, oracle, margin
        self.max_pairs_per_state, self.eval_ratio, self.seed = max_pairs_per_state, eval_ratio, seed
        self.batch_size, self._run_dir = batch_size, run_dir
        self.iteration = 0
        self._built: int | None = None
        self.last_episodes: list[Episode] = []  # this iteration's games (for transcripts)
        self.train_pairs: list[PreferencePair] = []
        self.eval_pairs: list[PreferencePair] = []
        self.rollout_metrics: dict[str, float] = {}

    # ------------------------------------------------------------------ paths
    @property
    def run_dir(self) -> Path:
        if self._run_dir:
            return Path(self._run_dir)
        if self.trainer is not None:
            return Path(self.trainer.default_root_dir)
        return Path("runs/default")

    def iteration_dir(self, iteration: int | None = None) -> Path:
        return self.run_dir / f"iter_{self.iteration if iteration is None else iteration:03d}"

    # ------------------------------------------------------------------ building
    def set_iteration(self, iteration: int) -> None:
        """Move to ``iteration``; its data is built (or reloaded) when next requested."""
        self.iteration = iteration

    def episodes(self, policy=None) -> list[Episode]:
        """This iteration's episodes: the given file, or the run folder's file topped up by playing."""
        if self.iteration == 0 and self.episodes_path:
            return read_jsonl(self.episodes_path, Episode)
        path = self.iteration_dir() / "episodes.jsonl"
        seeds = self._seeds()
        wanted = {s: self._opponent_for(i) for i, s in enumerate(seeds)}
        # Only this configuration's games count: a run folder reused with another game, opponent or
        # acting mode must not feed the old games to the new run.
        have = [
            e
            for e in read_complete_episodes(path)
            if e.seed in wanted
            and e.env_id == self.env
            and e.mode == self.mode
            and e.opponent == wanted[e.seed]
        ]
        done = {e.seed for e in have}
        missing = [s for s in seeds if s not in done]
        if missing:
            if policy is None:
                raise RuntimeError("the preference datamodule needs the policy to play episodes")
            have += self._play(policy, seeds, missing, path)
        order = {s: i for i, s in enumerate(seeds)}
        return sorted(have, key=lambda e: order[e.seed])

    def _play(self, policy, seeds: list[int], missing: list[int], path: Path) -> list[Episode]:
        """Play the missing seeds; seed i of the iteration meets ``opponents[i % len(opponents)]``."""
        opponents = self.opponents or [self._opponent_for(0)]
        missing_set = set(missing)
        start, played = time.perf_counter(), []
        for k, opponent in enumerate(opponents):
            mine = [s for i, s in enumerate(seeds) if i % len(opponents) == k and s in missing_set]
            if not mine:
                continue
            kwargs = {**self.env_kwargs, "opponent": opponent}
            engine = RolloutEngine(self.env, kwargs, self.num_envs)
            result = engine.play(
                policy,
                mine,
                mode=self.mode,
                out_path=path,
                iteration=self.iteration,
                progress=f"rollout iter {self.iteration} vs {opponent}",
                temperature=self.temperature,
            )
            played += result.episodes
        self.rollout_metrics = outcome_metrics(played, time.perf_counter() - start)
        return played

    def _opponent_for(self, index: int) -> str:
        if self.opponents:
            return self.opponents[index % len(self.opponents)]
        if "opponent" in self.env_kwargs:
            return str(self.env_kwargs["opponent"])
        return str(gymnasium.spec(self.env).kwargs.get("opponent", "random"))

    def _stored_episodes(self, iteration: int) -> list[Episode]:
        if iteration == 0 and self.episodes_path:
            return read_jsonl(self.episodes_path, Episode)
        return read_complete_episodes(self.iteration_dir(iteration) / "episodes.jsonl")

    def _seeds(self) -> list[int]:
        base = 1_000_003 * (self.seed + 1) + 10_007 * self.iteration
        return [base + i for i in range(self.num_episodes)]

    def build(self, policy=None) -> None:
        """Episodes -> pairs -> split, written to the iteration folder."""
        self.rollout_metrics = {}
        episodes = self.episodes(policy)
        self.last_episodes = episodes
        for earlier in range(max(0, self.iteration - self.window + 1), self.iteration):
            episodes = self._stored_episodes(earlier) + episodes
        kwargs = {"margin": self.margin, "max_pairs_per_state": self.max_pairs_per_state, "seed": self.seed}
        if self.strategy == "oracle":
            kwargs["oracle"] = self.oracle
        pairs = build_pairs(episodes, self.strategy, **kwargs)
        # The chat the pairs are trained in, written with them (TRL reads the same).
        system = getattr(policy, "system_message", None)
        for pair in pairs:
            pair.system = system
        self.train_pairs, self.eval_pairs = split_pairs(pairs, self.eval_ratio, self.seed)
        folder = self.iteration_dir()
        write_jsonl_atomic(folder / "pairs_train.jsonl", self.train_pairs)
        write_jsonl_atomic(folder / "pairs_eval.jsonl", self.eval_pairs)
        if not self.train_pairs:
            raise ConfigError(
                f"iteration {self.iteration}: {len(episodes)} episodes gave no training pairs with strategy "
                f"{self.strategy!r} and margin {self.margin}; play more episodes or lower --data.margin"
            )
        self._built = self.iteration

    def _ensure_built(self) -> None:
        if self._built != self.iteration:
            module = self.trainer.lightning_module if self.trainer is not None else None
            self.build(getattr(module, "policy", None))
            for logger in self.trainer.loggers if self.trainer is not None else []:
                metrics = {f"rollout/{k}": v for k, v in self.rollout_metrics.items()}
                metrics["rollout/pairs_train"] = float(len(self.train_pairs))
                metrics["rollout/iteration"] = float(self.iteration)
                logger.log_metrics(metrics, step=self.trainer.global_step)
                log_transcripts(logger, "rollout/games", self.last_episodes, self.trainer.global_step)

    # ------------------------------------------------------------------ loaders
    def train_dataloader(self) -> DataLoader:
        self._ensure_built()
        sampler = StateBatchSampler(self.train_pairs, self.batch_size, shuffle=True)
        return DataLoader(self.train_pairs, batch_sampler=sampler, collate_fn=_collate)

    def val_dataloader(self) -> DataLoader:
        self._ensure_built()
        sampler = StateBatchSampler(self.eval_pairs, self.batch_size, shuffle=False)
        return DataLoader(self.eval_pairs, batch_sampler=sampler, collate_fn=_collate)
