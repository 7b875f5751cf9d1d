"""The preference DataModule: episodes (given, or played by the live policy) -> pairs -> batches.

Data is built lazily when the trainer asks for a dataloader, for the current *iteration*: the live
policy is taken from the trainer's LightningModule at that moment, so iteration n's episodes come
from the policy as it stands after iteration n-1's updates. Per iteration the run folder holds::

    iter_000/episodes.jsonl     appended one line per finished game (a killed run keeps them)
    iter_000/pairs_train.jsonl  written atomically, prompt/chosen/rejected plus scores and provenance
    iter_000/pairs_eval.jsonl
    iter_000/summary.json       the generation's figures (outcomes or accuracy, pairs made), atomically

A resumed run finds the files of its iteration and only plays the episodes still missing.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import gymnasium
import lightning as L
import torch
from torch.utils.data import DataLoader

from datamodules.batching import GroupBatchSampler
from datamodules.distributed import barrier, gather_episodes, is_writer, rank_and_world
from datamodules.pairs import (
    ORACLES,
    STRATEGIES,
    build_pairs,
    check_oracle_discount,
    judge_pairs,
    split_pairs,
)
from datamodules.records import (
    Episode,
    PreferencePair,
    SFTExample,
    read_complete_episodes,
    read_jsonl,
    write_json_atomic,
    write_jsonl_atomic,
)
from datamodules.rollout import RolloutEngine, outcome_metrics
from datamodules.seeding import reseed_global, seeded_generator
from datamodules.transcripts import log_transcripts
from modules.errors import ConfigError, check_choice
from modules.modes import check_mode


def _collate(batch: list) -> list:
    return batch


class StateBatchSampler(GroupBatchSampler):
    """Batches of about ``batch_size`` pairs that keep each state's pairs together.

    A state's pairs share one prompt, and the DPO module runs each distinct prompt of a batch once,
    so keeping them together makes a state with k pairs cost one prompt pass instead of k.
    """

    def __init__(
        self,
        pairs: list[PreferencePair],
        batch_size: int,
        shuffle: bool = True,
        generator: torch.Generator | None = None,
        sampler=None,
    ) -> None:
        super().__init__(
            [p.state_key for p in pairs], batch_size, shuffle, generator=generator, sampler=sampler
        )


def _answer_tables(episodes) -> dict[str, dict[str, dict[str, float]]]:
    """``{fingerprint: {prompt: {answer: log-probability}}}`` of the episodes' recorded
    ``Turn.answer_logps``."""
    tables: dict[str, dict[str, dict[str, float]]] = {}
    for episode in episodes:
        if episode.policy_fingerprint is None:
            continue
        table = tables.setdefault(episode.policy_fingerprint, {})
        for turn in episode.turns:
            if turn.answer_logps:
                table.setdefault(turn.prompt, {}).update(turn.answer_logps)
    return tables


class PreferenceDataModule(L.LightningDataModule):
    """Builds DPO pairs from self-play episodes, iteration after iteration.

    Args:
        env: Gymnasium id of the game, e.g. ``lightspiel/TicTacToe-v0``.
        env_kwargs: Options of the env (opponent, illegal_rule, ...).
        opponents: Mix of opponents for the rollouts, e.g. ``[self, random]``: the iteration's games are
            dealt round-robin among them (overrides ``env_kwargs.opponent``). Self-play alone sees only
            the states its own sharpening policy reaches; a random opponent keeps the states varied.
        episodes_path: A JSONL file of episodes to use for iteration 0 instead of playing.
        pairs_path: A JSONL file of pairs to train iteration 0 on, as given (e.g. made and inspected
            with ``python -m cli pairs`` and ``split``); ``eval_pairs_path`` the held-out ones.
        eval_pairs_path: Held-out pairs for validation with ``pairs_path``.
        num_episodes: Games played per iteration.
        num_envs: Games stepped together (one batched policy call per wave).
        mode: How the policy acts in rollouts: ``score``, ``constrained`` or ``generate``.
        temperature: Sampling temperature of rollouts (None: the policy's own). Above 1 explores more
            states, which matters once the policy has sharpened.
        opponent_temperature: The rollout temperature of games against the named opponents, over
            ``temperature``, e.g. ``{random: 0, mcts: 0}``; 0 plays greedily, as the tournament does.
            Greedy games against a fixed opponent visit more of the positions the tournament meets
            (its games are greedy too), while sampled self-play keeps exploring; greedy self-play from
            a fixed opening replays one game. Keys: the opponents the games meet.
        window: Pairs are built from the episodes of the last ``window`` iterations (1: fresh only).
        strategy: How pairs are built: ``margin`` or ``oracle`` (games), ``correctness`` or
            ``validity`` (reasoning envs; see ``datamodules.pairs``).
        oracle: The oracle for ``strategy: oracle``: ``minimax`` (exact), ``mcts``, or ``auto``
            (exact where the game is small enough, MCTS otherwise).
        margin: Minimum score (or value) gap between chosen and rejected.
        oracle_discount: ``oracle`` pairs and the SFT stage's gold moves: exact (minimax) values
            discount each later decision by this factor, so that with a ``margin`` below the gaps it
            makes (``1 - oracle_discount**2`` at most; about 0.07 at the smallest in tic-tac-toe at
            0.95, hence ``margin: 0.05``) a quicker win is preferred to a slower one and a slower
            loss to a quicker one (``datamodules.pairs``); 1: plain minimax, under which every move
            of a won (or lost) position is worth the same. Games too large for exact search (MCTS
            values, under ``oracle: auto``) are not discounted; a warning says so once per game.
        ranked_only: ``oracle`` pairs only at states where some legal move is worse than the best
            by ``margin``; the others (every legal move within ``margin`` of the best) carry only
            illegal-answer pairs, observed or made, and cost a training pass each
            (``datamodules.pairs.oracle_pairs``).
        max_pairs_per_state: Cap on pairs drawn from one state.
        illegal_negatives: ``oracle`` pairs: also prefer the chosen move to up to this many moves the
            state does not allow (an occupied cell), as the env would read them: score-mode rollouts
            never produce an illegal answer, and without these a model trained on canonical moves
            goes on naming taken cells when it answers in free text.
        samples_per_problem: Games (answers) played from each start: a reasoning env's problem is
            answered this many times, so that its answers can be compared.
        min_validity_gap: ``validity`` pairs: least gap in the share of valid proof steps.
        require_valid_winner: ``validity`` pairs: only a proof whose every step is valid may win.
        sft_iterations: The first iterations are supervised (SFT on the env's gold completions:
            worked solutions, or the oracle's moves in games) instead of pairs; with
            ``IterativeRegeneration(update_reference: true)`` the DPO reference then starts from the
            SFT model (seed 003: SFT, then DPO against it).
        sft_examples: Gold examples per SFT iteration.
        judge_model: Re-score ambiguous pairs (score gap within ``judge_band`` of ``margin``) with this
            frozen judge model (hub name or folder; ``embedded`` for the embedded model): each is kept,
            flipped or dropped (``datamodules.pairs.judge_pairs``; seed 000's offline judge), the
            decision stored in the pair's ``judge`` field. None: no judge.
        judge_band: How far above ``margin`` a pair's gap may be and still be asked.
        judge_threshold: The judge's confidence needed to keep (or, at ``1 - threshold``, flip) a pair.
        judge_dtype: The judge's dtype.
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
        pairs_path: str | None = None,
        eval_pairs_path: str | None = None,
        num_episodes: int = 64,
        num_envs: int = 16,
        mode: str = "score",
        temperature: float | None = None,
        opponent_temperature: dict[str, float] | None = None,
        window: int = 1,
        strategy: str = "oracle",
        oracle: str = "auto",
        margin: float = 0.1,
        oracle_discount: float = 1.0,
        ranked_only: bool = False,
        max_pairs_per_state: int = 2,
        illegal_negatives: int = 0,
        samples_per_problem: int = 1,
        min_validity_gap: float = 0.1,
        require_valid_winner: bool = False,
        sft_iterations: int = 0,
        sft_examples: int = 256,
        judge_model: str | None = None,
        judge_band: float = 0.1,
        judge_threshold: float = 0.6,
        judge_dtype: str = "auto",
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
        if ranked_only and strategy != "oracle":
            raise ConfigError(f"--data.ranked_only needs strategy: oracle, got strategy {strategy!r}")
        if illegal_negatives < 0 or (illegal_negatives and strategy != "oracle"):
            raise ConfigError(
                f"--data.illegal_negatives must be >= 0 and needs strategy: oracle, got {illegal_negatives} "
                f"with strategy {strategy!r}"
            )
        for name, value in (
            ("num_episodes", num_episodes),
            ("num_envs", num_envs),
            ("batch_size", batch_size),
            ("max_pairs_per_state", max_pairs_per_state),
            ("samples_per_problem", samples_per_problem),
            ("sft_examples", sft_examples),
        ):
            if value < 1:
                raise ConfigError(f"--data.{name} must be >= 1, got {value}")
        if margin <= 0:
            raise ConfigError(f"--data.margin must be > 0, got {margin}")
        uses_oracle = strategy == "oracle" or sft_iterations > 0
        check_oracle_discount(oracle_discount, oracle, None if uses_oracle else f"strategy {strategy!r}")
        if min_validity_gap <= 0:
            raise ConfigError(f"--data.min_validity_gap must be > 0, got {min_validity_gap}")
        if judge_band < 0 or not 0.5 <= judge_threshold <= 1.0:
            raise ConfigError(
                f"--data.judge_band must be >= 0 and judge_threshold in [0.5, 1], got {judge_band}, {judge_threshold}"
            )
        if sft_iterations < 0:
            raise ConfigError(f"--data.sft_iterations must be >= 0, got {sft_iterations}")
        if not 0.0 <= eval_ratio < 1.0:
            raise ConfigError(f"--data.eval_ratio must be in [0, 1), got {eval_ratio}")
        from envs import OPPONENTS

        for opponent in opponents or []:
            check_choice(opponent, OPPONENTS, "--data.opponents")
        for option, path in (("pairs_path", pairs_path), ("eval_pairs_path", eval_pairs_path)):
            if path is not None and not Path(path).is_file():
                raise ConfigError(f"--data.{option}: no such file {path!r} (expected pairs JSONL)")
        if pairs_path is not None and episodes_path is not None:
            raise ConfigError(
                "--data: give episodes_path (pairs are built) or pairs_path (pairs as given), not both"
            )
        if episodes_path is not None and not Path(episodes_path).is_file():
            raise ConfigError(
                f"--data.episodes_path: no such file {episodes_path!r} (expected episodes JSONL)"
            )
        self.env, self.env_kwargs = env, dict(env_kwargs or {})
        self.opponents = list(opponents or [])
        for opponent, value in (opponent_temperature or {}).items():
            check_choice(
                opponent,
                self._met_opponents(),
                "--data.opponent_temperature key (an opponent the games meet)",
            )
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not (math.isfinite(value) and value >= 0)
            ):
                raise ConfigError(
                    f"--data.opponent_temperature.{opponent} must be a finite number >= 0 (0: greedy), got {value!r}"
                )
        self.episodes_path = episodes_path
        self.pairs_path, self.eval_pairs_path = pairs_path, eval_pairs_path
        self.num_episodes, self.num_envs, self.mode = num_episodes, num_envs, mode
        self.temperature, self.window = temperature, window
        self.opponent_temperature = {k: float(v) for k, v in (opponent_temperature or {}).items()}
        self.strategy, self.oracle, self.margin = strategy, oracle, margin
        self.oracle_discount, self.ranked_only = oracle_discount, ranked_only
        self.max_pairs_per_state, self.eval_ratio, self.seed = max_pairs_per_state, eval_ratio, seed
        self.samples_per_problem, self.illegal_negatives = samples_per_problem, illegal_negatives
        self.min_validity_gap, self.require_valid_winner = min_validity_gap, require_valid_winner
        self.sft_iterations, self.sft_examples = sft_iterations, sft_examples
        self.judge_model, self.judge_band, self.judge_threshold = judge_model, judge_band, judge_threshold
        self.judge_dtype = judge_dtype
        self._judge = None
        self.batch_size, self._run_dir = batch_size, run_dir
        self.train_sft: list[SFTExample] = []
        self.eval_sft: list[SFTExample] = []
        self.iteration = 0
        self._built: int | None = None
        self.last_episodes: list[Episode] = []  # this iteration's games (transcripts, failure replay)
        self._starts: list[dict] = []  # replayed starts for the next games (FailureReplay)
        self._answer_tables: dict[int, dict] = {}  # earlier iterations' recorded answer log-probs
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

    def set_starts(self, starts: list[dict]) -> None:
        """Start some of the next iteration's games from saved states (:class:`callbacks.FailureReplay`):
        the first ``len(starts)`` games of the iteration replay them, each from its ``history`` with the
        learner in the seat that failed there, against the opponent it failed against (a start's
        ``opponent``, else the slot's); the other games start fresh. The pairs of a replayed game
        come from the decisions after its start."""
        self._starts = [dict(s, history=[int(a) for a in s["history"]]) for s in starts]

    def _plan(self) -> list[dict]:
        """This iteration's games in play order: ``{"seed", "opponent", "options", "tag", "id"}``; game
        ``i`` meets ``opponents[i % len(opponents)]`` unless it replays a start; every start is played
        ``samples_per_problem`` times (tags ``#k``), a replayed one tagged ``@i`` (its slot)."""
        starts = [s for s in self._starts if s.get("env") == self.env][: self.num_episodes]
        plan = []
        for i, seed in enumerate(self._seeds()):
            opponent, options, tag = self._opponent_for(i), None, ""
            if i < len(starts):
                start = starts[i]
                seed, tag = int(start["seed"]), f"@{i}"
                opponent = start.get("opponent") or self._start_opponent(start, opponent)
                options = {"history": start["history"]}
                if start.get("learner_seat") is not None and opponent != "self":
                    options["learner_seat"] = int(start["learner_seat"])  # replay from the same side
            for k in range(self.samples_per_problem):
                game = {"seed": seed, "opponent": opponent, "options": options}
                game["tag"] = tag + (f"#{k}" if self.samples_per_problem > 1 else "")
                game["id"] = RolloutEngine.episode_id_of(self.env, seed, self.iteration, game["tag"])
                plan.append(game)
        return plan

    def _start_opponent(self, start: dict, slot: str) -> str:
        """The opponent of a start given without one (``ReplayData`` does not require it): self-play
        for a self-play failure (no learner seat), else the slot's, or the first other opponent the
        games meet when the slot is self-play (which would drop the seat that failed)."""
        if start.get("learner_seat") is None:
            return "self"
        others = [o for o in self._met_opponents() if o != "self"]
        return slot if slot != "self" or not others else others[0]

    def episodes(self, policy=None) -> list[Episode]:
        """This iteration's episodes: the given file, or the run folder's file topped up by playing."""
        if self.iteration == 0 and self.episodes_path:
            return read_jsonl(self.episodes_path, Episode)
        path = self.iteration_dir() / "episodes.jsonl"
        plan = self._plan()
        # Only this configuration's games count: a run folder reused with another game, opponent or
        # acting mode must not feed the old games to the new run.
        have = {
            e.episode_id: e
            for e in read_complete_episodes(path)
            if e.env_id == self.env and e.mode == self.mode
        }
        kept = {
            k: have[g["id"]]
            for k, g in enumerate(plan)
            if g["id"] in have
            and have[g["id"]].opponent == g["opponent"]
            and list(have[g["id"]].start_history) == (g["options"] or {}).get("history", [])
        }
        missing = [k for k in range(len(plan)) if k not in kept]
        barrier()  # every rank has read the file before any rank appends to it
        if missing:
            if policy is None:
                raise RuntimeError("the preference datamodule needs the policy to play episodes")
            kept.update(self._play(policy, plan, missing, path))
        return [kept[k] for k in sorted(kept)]

    def _play(self, policy, plan: list[dict], missing: list[int], path: Path) -> dict[int, Episode]:
        """Play the ``missing`` games of ``plan``: ``{plan index: episode}``."""
        opponents = self._met_opponents()
        start, played = time.perf_counter(), {}
        # Under DDP each rank plays every world-th missing game; rank zero appends its own games as
        # they end and the others' once gathered. Each game samples from its own generator, so the
        # games do not depend on how many processes share them.
        rank, world = rank_and_world()
        mine_k = missing[rank::world]
        # Generate mode samples from torch's generator: seeded by the run's position (a resumed run
        # plays the games the uninterrupted one played) and the rank (ranks draw apart).
        reseed_global(self.seed, self.iteration, rank, "rollout")
        # The games of every opponent are stepped together: one act call a wave serves them all.
        if mine_k:
            engine = RolloutEngine(self.env, self.env_kwargs, self.num_envs)
            game_opponents = [plan[k]["opponent"] for k in mine_k]
            result = engine.play(
                policy,
                [plan[k]["seed"] for k in mine_k],
                mode=self.mode,
                out_path=path if rank == 0 else None,
                iteration=self.iteration,
                reset_options=lambda j: plan[mine_k[j]]["options"],
                progress=f"rollout iter {self.iteration} vs {', '.join(opponents)}",
                temperature=self.temperature,
                tags=[plan[k]["tag"] for k in mine_k],
                opponents=game_opponents,
                temperatures=[self.opponent_temperature.get(o) for o in game_opponents],
                # Score mode, when the policy playing is DPO's reference: every answer's
                # log-probability at each decision, for the reference to read instead of a pass.
                answer_logps=self.mode == "score" and self._reference_plays(policy),
            )
            played = {e.episode_id: e for e in result.episodes}
        mine = gather_episodes(played, path)
        self.rollout_metrics = outcome_metrics(list(mine.values()), time.perf_counter() - start)
        index = {plan[k]["id"]: k for k in missing}
        return {index[i]: e for i, e in mine.items()}

    def _opponent_for(self, index: int) -> str:
        if self.opponents:
            return self.opponents[index % len(self.opponents)]
        if "opponent" in self.env_kwargs:
            return str(self.env_kwargs["opponent"])
        return str(gymnasium.spec(self.env).kwargs.get("opponent", "random"))

    def _met_opponents(self) -> list[str]:
        """The opponents the games meet: ``opponents``, else the env's one opponent."""
        return self.opponents or [self._opponent_for(0)]

    def _stored_episodes(self, iteration: int) -> list[Episode]:
        if iteration == 0 and self.episodes_path:
            return read_jsonl(self.episodes_path, Episode)
        return read_complete_episodes(self.iteration_dir(iteration) / "episodes.jsonl")

    def _seeds(self) -> list[int]:
        base = 1_000_003 * (self.seed + 1) + 10_007 * self.iteration
        return [base + i for i in range(self.num_episodes)]

    @property
    def sft_stage(self) -> bool:
        """Whether this iteration is supervised (``sft_iterations``) rather than preference pairs."""
        return self.iteration < self.sft_iterations

    def _build_sft(self, policy) -> None:
        """The SFT stage's data: the env's gold completions, fresh seeds each iteration."""
        from datamodules.sft import EVAL_SEED_OFFSET, gold_examples, training_seeds

        system = getattr(policy, "system_message", None)
        offset = 10_007 * self.iteration
        count = max(1, round(self.sft_examples * self.eval_ratio))
        self.train_sft = gold_examples(
            self.env,
            self.env_kwargs,
            training_seeds(self.seed, self.sft_examples, offset),
            system,
            self.oracle,
            self.oracle_discount,
        )
        self.eval_sft = gold_examples(
            self.env,
            self.env_kwargs,
            training_seeds(self.seed, count, offset + EVAL_SEED_OFFSET),
            system,
            self.oracle,
            self.oracle_discount,
        )
        folder = self.iteration_dir()
        if is_writer():
            write_jsonl_atomic(folder / "sft_train.jsonl", self.train_sft)
            write_jsonl_atomic(folder / "sft_eval.jsonl", self.eval_sft)
        self.rollout_metrics, self.last_episodes = {}, []
        self.train_pairs, self.eval_pairs = [], []
        self._built = self.iteration

    def _pair_options(self) -> dict:
        if self.strategy == "validity":
            return {
                "min_validity_gap": self.min_validity_gap,
                "require_valid_winner": self.require_valid_winner,
                "max_pairs_per_state": self.max_pairs_per_state,
                "seed": self.seed,
            }
        kwargs = {"margin": self.margin, "max_pairs_per_state": self.max_pairs_per_state, "seed": self.seed}
        if self.strategy == "oracle":
            kwargs["oracle"] = self.oracle
            kwargs["illegal_negatives"] = self.illegal_negatives
            kwargs["discount"] = self.oracle_discount
            kwargs["ranked_only"] = self.ranked_only
        return kwargs

    def _load_judge(self):
        """The judge model, loaded once (a frozen second model; see :mod:`modules.judge`)."""
        if self._judge is None:
            from modules.judge import Judge

            self._judge = Judge(
                None if self.judge_model == "embedded" else self.judge_model, self.judge_dtype
            )
        return self._judge

    def build(self, policy=None) -> None:
        """Episodes -> pairs -> split, written to the iteration folder (gold examples in the SFT stage)."""
        if self.sft_stage:
            self._build_sft(policy)
            return
        if self.iteration == 0 and self.pairs_path:
            self.train_pairs = read_jsonl(self.pairs_path, PreferencePair)
            self.eval_pairs = read_jsonl(self.eval_pairs_path, PreferencePair) if self.eval_pairs_path else []
            self.rollout_metrics, self.last_episodes = {}, []
            if not self.train_pairs:
                raise ConfigError(f"--data.pairs_path {self.pairs_path!r} holds no pairs")
            self._built = self.iteration
            return
        self.rollout_metrics = {}
        episodes = self.episodes(policy)
        self.last_episodes = episodes
        for earlier in range(max(self.sft_iterations, self.iteration - self.window + 1), self.iteration):
            episodes = self._stored_episodes(earlier) + episodes
        pairs = build_pairs(episodes, self.strategy, **self._pair_options())
        if self.judge_model is not None:
            pairs = judge_pairs(pairs, self._load_judge(), self.margin, self.judge_band, self.judge_threshold)
        # The chat the pairs are trained in, written with them (TRL reads the same).
        system = getattr(policy, "system_message", None)
        for pair in pairs:
            pair.system = system
        self.train_pairs, self.eval_pairs = split_pairs(pairs, self.eval_ratio, self.seed)
        folder = self.iteration_dir()
        if is_writer():  # every rank holds the same pairs; one writes them
            write_jsonl_atomic(folder / "pairs_train.jsonl", self.train_pairs)
            write_jsonl_atomic(folder / "pairs_eval.jsonl", self.eval_pairs)
        # The generation's summary (seed 004): what its games or traces reached, and the pairs made.
        summary = {
            "iteration": self.iteration,
            "episodes": len(self.last_episodes),
            **{
                k: v
                for k, v in outcome_metrics(self.last_episodes).items()
                if not k.endswith(("_low", "_high"))
            },
            "pairs_train": len(self.train_pairs),
            "pairs_eval": len(self.eval_pairs),
            "strategy": self.strategy,
        }
        if is_writer():
            write_json_atomic(folder / "summary.json", summary)
        if not self.train_pairs:
            raise ConfigError(
                f"iteration {self.iteration}: {len(episodes)} episodes gave no training pairs with strategy "
                f"{self.strategy!r} and margin {self.margin}; play more episodes or lower --data.margin"
            )
        self._built = self.iteration

    def reference_answer_logps(self, fingerprint: str) -> dict[str, dict[str, float]]:
        """``{prompt: {answer: log-probability}}`` recorded at the score-mode decisions of this
        iteration's games and of every earlier iteration's (iteration 0's may be a given
        ``episodes_path``; a ``window``'s earlier games are among them), by the policy whose :meth:`~modules.Policy.fingerprint` is
        ``fingerprint``; other policies' games are left out. DPO's reference for those answers when
        its reference is that policy (``DPO.cache_reference``): a fixed base reference played
        iteration 0 with a fresh adapter, so later iterations' states met then need no reference
        pass either. An earlier iteration's file is read once."""
        for earlier in range(self.iteration):
            if earlier not in self._answer_tables:
                self._answer_tables[earlier] = _answer_tables(self._stored_episodes(earlier))
        table: dict[str, dict[str, float]] = {}
        for source in [_answer_tables(self.last_episodes), *self._answer_tables.values()]:
            for prompt, answers in source.get(fingerprint, {}).items():
                table.setdefault(prompt, {}).update(answers)
        return table

    def _reference_plays(self, policy) -> bool:
        """Whether ``policy`` is, as it stands, DPO's reference: then its score-mode rollouts record
        every answer's log-probability for the reference to read (a fresh adapter at iteration 0;
        every iteration under ``IterativeRegeneration(update_reference)``, which moves the reference
        before the games). Not for a reference-free module, which has no reference."""
        module = self.trainer.lightning_module if self.trainer is not None else None
        if getattr(module, "reference_free", False):
            return False
        if not (hasattr(policy, "fingerprint") and hasattr(policy, "reference_fingerprint")):
            return False
        return policy.fingerprint() == policy.reference_fingerprint()

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
        order = seeded_generator(self.seed, self.iteration, "order")  # the same order after a resume
        if self.sft_stage:
            return DataLoader(
                self.train_sft, batch_size=self.batch_size, shuffle=True, collate_fn=_collate, generator=order
            )
        sampler = StateBatchSampler(self.train_pairs, self.batch_size, shuffle=True, generator=order)
        return DataLoader(self.train_pairs, batch_sampler=sampler, collate_fn=_collate)

    def val_dataloader(self) -> DataLoader:
        self._ensure_built()
        if self.sft_stage:
            return DataLoader(self.eval_sft, batch_size=self.batch_size, shuffle=False, collate_fn=_collate)
        sampler = StateBatchSampler(self.eval_pairs, self.batch_size, shuffle=False)
        return DataLoader(self.eval_pairs, batch_sampler=sampler, collate_fn=_collate)
