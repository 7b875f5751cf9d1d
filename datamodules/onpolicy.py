"""On-policy data for PPO and GRPO: every epoch, fresh games by the live policy, turned into rows.

Each training epoch is one rollout: the policy as it stands plays ``num_episodes`` games (in any acting
mode; in self-play both seats are training data); finished games are appended to
``iter_NNN/episodes.jsonl`` (NNN = the epoch); every learner turn becomes a row::

    {"prompt", "completion_ids", "old_logps", "value", "reward", "outcome", "episode_id", "seat",
     "turn", "game", "group", "legal"}

``reward`` is the turn's own reward (illegal-answer penalties where they fire, and any return change
during the turn), with the rest of the seat's final return added at its last turn, so a seat's rewards
add up to its return minus its penalties (plus its ``move_reward`` terms when the oracle judges). ``outcome`` is that sum, repeated on every turn (what GRPO
compares).

``oracle_reward`` > 0 adds a judgement of every legal learner move, ``move_reward``: minus the move's
regret (the best legal move's value minus this move's value, as a share of the game's utility range,
times ``oracle_reward``), with values from an oracle (:mod:`envs.oracles`: exact minimax where the
game is solvable, MCTS otherwise). A move that keeps the best value available costs nothing; a blunder
that turns a won game into a lost one costs ``oracle_reward``. PPO adds it to the turn's ``reward``
(GAE then credits mostly the turn itself, not the whole game); GRPO adds it to the turn's own advantage, as it
does an illegal answer's penalty. ``outcome`` stays the game's. A game's result against a random
opponent says little about single moves (a blunder often goes unpunished); the oracle judges each.
Only zero-sum games of perfect information are accepted: on hidden information MCTS searches as if
every seat saw the hidden state (in Kuhn poker every bluff would look like a blunder). The module (:class:`~datamodules.protocols.AdvantageEstimator`) then fills ``advantage``
once per rollout; batches never split a group (``grouping``) and are visited ``ppo_epochs`` times.

``grouping: prompt`` compares answers at one decision state instead of whole games: at every learner
turn the policy samples ``group_size - 1`` more answers to the same observation (in the rollout's mode
and temperature); each answer, the played one included, is judged on its own: minus the env's
``illegal_penalty`` if the env reads no legal move from it, plus the oracle's ``move_reward`` if
``oracle_reward`` is on. Those rows carry ``unit: "turn"`` and ``outcome`` = that judgement (the
played game's result is not comparable with answers that were never played out), and share the
state's ``group``; GRPO normalises within it. Siblings are training rows only: the game goes on with
the answer it played.

Where no oracle can judge a move (a cooperative game, hidden information), ``sibling_judge: playout``
lets the game judge it: every answer at the state, the played one included, is played on by the
current policy (same mode, temperature and opponent) from the state it leads to, to the end; its value
is the seat's return there minus the seat's later illegal-answer penalties, or the game's return at
once where the answer ends the game (a Monte Carlo estimate of the answer's value, as VinePPO,
Kazemnejad et al. 2024, estimates a state's). An answer with no legal move is valued at the game's
lowest return, minus its penalty. In score mode, ``distinct_siblings`` makes the group's other
answers distinct legal moves drawn without replacement from the score policy (Gumbel top-k; Kool et
al. 2019), so a state with a few legal moves is compared on all of them even when the policy
almost always picks one (sampled siblings would repeat it).

A resumed run (``--ckpt_path last``) finds the episodes of the epoch it stopped in and plays only
the missing games; the sampling generator is reseeded per epoch from ``seed`` and the epoch, so the
same policy weights give the same games.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import gymnasium
import lightning as L
import numpy as np
from torch.utils.data import DataLoader

from datamodules.batching import GroupBatchSampler
from datamodules.distributed import barrier, gather_episodes, rank_and_world
from datamodules.pairs import ORACLES, _OracleValues
from datamodules.protocols import AdvantageEstimator, require
from datamodules.records import Episode, read_complete_episodes
from datamodules.rollout import RolloutEngine, make_env, outcome_metrics
from datamodules.seeding import reseed_global, seeded_generator
from datamodules.transcripts import log_transcripts
from modules.errors import ConfigError, check_choice
from modules.modes import check_mode

#: How rows are grouped (the GRPO comparison set; batches never split a group).
GROUPINGS: tuple[str, ...] = ("game", "start", "prompt", "none")
#: How ``grouping: prompt`` judges the answers at one state.
SIBLING_JUDGES: tuple[str, ...] = ("alone", "playout")


def _collate(batch: list[dict]) -> list[dict]:
    return batch


def episode_rows(episode: Episode, group: str, move_rewards: list[float] | None = None) -> list[dict]:
    """The learner turns of one finished game as training rows (see the module docstring);
    ``move_rewards`` (one per turn of ``episode.turns``, 0 for turns not judged) are the oracle's."""
    by_seat: dict[int, list] = {}
    for index, turn in enumerate(episode.turns):
        if turn.learner:
            by_seat.setdefault(turn.seat, []).append((turn, move_rewards[index] if move_rewards else 0.0))
    rows = []
    for seat, judged in sorted(by_seat.items()):
        turns = [t for t, _ in judged]
        outcome = float(episode.returns[seat] - episode.penalties[seat])
        rewards = [float(t.reward) for t in turns]
        rewards[-1] += outcome - sum(rewards)  # the rest of the seat's return lands on its last turn
        for k, ((turn, move_reward), reward) in enumerate(zip(judged, rewards)):
            rows.append(
                {
                    "prompt": turn.prompt,
                    "completion": turn.completion,
                    "completion_ids": turn.completion_ids,
                    "old_logps": turn.token_logps,
                    "value": turn.value,
                    "reward": reward + move_reward,
                    "move_reward": move_reward,
                    "outcome": outcome,
                    "episode_id": episode.episode_id,
                    "seat": seat,
                    "turn": k,
                    "last": k == len(turns) - 1,
                    "game": episode.game,
                    "group": group,
                    "legal": turn.legal,
                    "step_reward": float(turn.reward),
                    **score_choice(episode.mode, turn.legal_actions, turn.completion),
                }
            )
    return rows


def score_choice(mode: str, legal_actions: list[str], answer: str) -> dict:
    """A score-mode answer's moves and its index among them (``candidates``, ``candidate``: what
    GRPO's ``score_objective: candidates`` normalises over); nothing for other modes."""
    if mode != "score" or answer not in legal_actions:
        return {}
    return {"candidates": list(legal_actions), "candidate": list(legal_actions).index(answer)}


def move_regret(values_of, seen: dict, game: str, history: list[int], seat: int, action: int) -> float:
    """The regret of playing ``action`` at the position ``history`` (``seat`` to move): the best legal
    move's value minus its value, as a share of the game's utility range. ``seen`` caches each
    position's values: one search per position, so the same move gets the same judgement."""
    from envs import load_game, state_from_history

    key = (game, tuple(history), seat)
    if key not in seen:
        seen[key] = values_of(game, state_from_history(game, history), seat)[0]
    values = seen[key]
    spiel = load_game(game)
    span = float(spiel.max_utility() - spiel.min_utility()) or 1.0
    return (max(values.values()) - values[int(action)]) / span


def judge_moves(
    episodes: list[Episode], coef: float, values_of, seen: dict | None = None
) -> tuple[list[list[float]], dict[str, float]]:
    """The oracle's ``move_reward`` of every turn of ``episodes`` (see the module docstring), and the
    rollout's move quality: ``optimal_move_share`` (legal learner moves that keep the best value) and
    ``move_regret`` (their mean regret as a share of the utility range).

    ``values_of(game, state, seat) -> ({action: value}, oracle_used)`` is
    :class:`datamodules.pairs._OracleValues`; ``seen`` its per-position cache (:func:`move_regret`).
    Illegal answers (the move played was not the learner's) and other players' turns get 0."""
    seen = {} if seen is None else seen
    out, regrets = [], []
    for episode in episodes:
        judged = []
        for turn in episode.turns:
            if not (turn.learner and turn.legal and turn.action is not None):
                judged.append(0.0)
                continue
            regret = move_regret(values_of, seen, episode.game, turn.history, turn.seat, turn.action)
            regrets.append(regret)
            judged.append(-coef * regret)
        out.append(judged)
    stats = (
        {
            "optimal_move_share": sum(r <= 1e-9 for r in regrets) / len(regrets),
            "move_regret": sum(regrets) / len(regrets),
        }
        if regrets
        else {}
    )
    return out, stats


def _spiel_game(env: str, env_kwargs: dict, needs: str):
    """The OpenSpiel game behind ``env``; one line (``needs``, then that ``env`` is not one) when
    there is none (a reasoning env)."""
    game = make_env(env, {**env_kwargs, "opponent": env_kwargs.get("opponent", _default_opponent(env))})
    try:
        spiel_game = getattr(game.unwrapped, "game", None)
    finally:
        game.close()
    if not hasattr(spiel_game, "get_type"):
        raise ConfigError(f"{needs}; {env} is not one")
    return spiel_game


def check_oracle_game(env: str, env_kwargs: dict, oracle: str, option: str) -> None:
    """One line naming ``option`` when ``oracle`` cannot value the moves of ``env``'s game."""
    from envs.oracles import SearchTooLargeError, check_mcts_game, check_minimax_game

    spiel_game = _spiel_game(env, env_kwargs, f"{option} needs an OpenSpiel game to search")
    try:  # two players, zero-sum, perfect information, sequential: what minimax values assume
        check_minimax_game(spiel_game)
    except SearchTooLargeError:
        # MCTS on determinizations searches as if every seat saw the hidden state: in Kuhn poker it
        # would punish every bluff, in a signaling game every message would look perfect.
        raise ConfigError(
            f"{option} needs a zero-sum game of perfect information (the oracle's values assume every seat "
            f"sees the whole state and one seat's gain is the other's loss); {env} is not one"
        ) from None
    try:
        if oracle != "minimax":
            check_mcts_game(spiel_game)
    except (SearchTooLargeError, ValueError) as err:
        raise ConfigError(f"{option} needs a game the oracle can search ({oracle}); {env}: {err}") from None


def check_playout_game(env: str, env_kwargs: dict) -> None:
    """One line when ``sibling_judge: playout`` cannot play on from an answer in ``env``: it needs an
    OpenSpiel game whose players move one at a time (an answer is then one action)."""
    import pyspiel

    spiel_game = _spiel_game(env, env_kwargs, "--data.sibling_judge playout needs an OpenSpiel game to play on")
    if spiel_game.get_type().dynamics != pyspiel.GameType.Dynamics.SEQUENTIAL:
        raise ConfigError(
            f"--data.sibling_judge playout needs a game whose players move in turn; {env} has simultaneous "
            "moves (one answer is not a whole move there)"
        )


def _gumbel_top(logps: list[float], k: int, exclude: int | None, rng: np.random.Generator) -> list[int]:
    """``k`` distinct indices drawn without replacement with probabilities ``softmax(logps)``
    (Gumbel top-k), ``exclude`` left out."""
    keys = np.asarray(logps, dtype=np.float64) + rng.gumbel(size=len(logps))
    order = [int(i) for i in np.argsort(-keys) if int(i) != exclude]
    return order[:k]


def _default_opponent(env: str) -> str:
    """The opponent an env id is registered with (``self`` for the single-player reasoning envs),
    ``random`` when it names none; an unknown id is left to ``make_env`` to report."""
    return (
        str(gymnasium.spec(env).kwargs.get("opponent", "random")) if env in gymnasium.registry else "random"
    )


class OnPolicyDataModule(L.LightningDataModule):
    """Fresh games from the live policy every epoch, as rows for PPO or GRPO.

    Args:
        env: Gymnasium id of the game, e.g. ``lightspiel/TicTacToe-v0``.
        env_kwargs: Options of the env (opponent, illegal_rule, illegal_penalty, ...).
        opponents: Mix of opponents (``[self, random]``): games are dealt round-robin among them
            (overrides ``env_kwargs.opponent``).
        num_episodes: Games per epoch (with ``grouping: start``: starts per epoch, each played
            ``group_size`` times).
        num_envs: Games stepped together.
        mode: Acting mode of the rollouts: ``generate`` (free text, what the model must learn to
            answer legally), ``constrained`` or ``score``.
        temperature: Sampling temperature of rollouts (None: the policy's own).
        grouping: GRPO groups: ``game`` (the seats of one game), ``start`` (``group_size`` games from
            one seed: same chance and opening, only the policy's samples differ), ``prompt``
            (``group_size`` answers at each learner decision state, each judged alone: see the module
            docstring), ``none``.
        group_size: Games per start with ``grouping: start``; answers per state with ``prompt``.
        sibling_judge: How ``grouping: prompt`` judges each answer at a state: ``alone`` (its own
            legality and the oracle's ``move_reward``) or ``playout`` (the game played on from that
            answer by the current policy, to its end: the seat's return there; see the module
            docstring). ``playout`` needs no oracle, so it also serves cooperative and
            hidden-information games.
        distinct_siblings: In score mode, the ``group_size - 1`` other answers at a state are distinct
            legal moves other than the one played, drawn without replacement (Gumbel top-k) from
            the score policy, instead of independent samples that repeat the likeliest move.
        oracle_reward: Weight of the oracle's judgement of each legal learner move (see the module
            docstring); 0 disables it.
        oracle: The oracle for ``oracle_reward``: ``minimax`` (exact), ``mcts`` or ``auto`` (exact
            where the game is solvable, MCTS otherwise).
        mcts_simulations: Simulations per state when the oracle is MCTS.
        ppo_epochs: Passes over each rollout's rows (PPO's inner epochs).
        batch_size: Rows per optimizer step (about: a group is never split).
        seed: Seeds the games and the sampling.
        run_dir: Where ``iter_NNN/`` folders go; defaults to the trainer's ``default_root_dir``.
    """

    def __init__(
        self,
        env: str = "lightspiel/TicTacToe-v0",
        env_kwargs: dict | None = None,
        opponents: list[str] | None = None,
        num_episodes: int = 32,
        num_envs: int = 16,
        mode: str = "generate",
        temperature: float | None = None,
        grouping: str = "none",
        group_size: int = 4,
        sibling_judge: str = "alone",
        distinct_siblings: bool = False,
        oracle_reward: float = 0.0,
        oracle: str = "auto",
        mcts_simulations: int = 100,
        ppo_epochs: int = 1,
        batch_size: int = 16,
        seed: int = 0,
        run_dir: str | None = None,
    ) -> None:
        super().__init__()
        from envs import OPPONENTS

        check_mode(mode, "--data.mode")
        check_choice(grouping, GROUPINGS, "--data.grouping")
        check_choice(oracle, ORACLES, "--data.oracle")
        check_choice(sibling_judge, SIBLING_JUDGES, "--data.sibling_judge")
        if (sibling_judge != "alone" or distinct_siblings) and grouping != "prompt":
            option = "distinct_siblings" if distinct_siblings else "sibling_judge"
            raise ConfigError(f"--data.{option} applies to grouping: prompt only, got grouping: {grouping}")
        if distinct_siblings and mode != "score":
            raise ConfigError(
                f"--data.distinct_siblings needs mode: score (the other legal moves are the answers), got {mode}"
            )
        for opponent in opponents or []:
            check_choice(opponent, OPPONENTS, "--data.opponents")
        for name, value in (
            ("num_episodes", num_episodes),
            ("num_envs", num_envs),
            ("group_size", group_size),
            ("mcts_simulations", mcts_simulations),
            ("ppo_epochs", ppo_epochs),
            ("batch_size", batch_size),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"--data.{name} must be an int >= 1, got {value!r}")
        if grouping in ("start", "prompt") and group_size < 2:
            raise ConfigError(
                f"--data.group_size must be >= 2 with grouping: {grouping} (a group of one has no "
                f"baseline: its advantage is always 0), got {group_size}"
            )
        if temperature is not None and temperature <= 0:
            raise ConfigError(f"--data.temperature must be > 0, got {temperature}")
        if (
            isinstance(oracle_reward, bool)
            or not isinstance(oracle_reward, (int, float))
            or not math.isfinite(oracle_reward)
            or oracle_reward < 0
        ):
            raise ConfigError(f"--data.oracle_reward must be a finite number >= 0, got {oracle_reward!r}")
        make_env(env, {**(env_kwargs or {}), "opponent": (opponents or [_default_opponent(env)])[0]}).close()
        if oracle_reward:
            check_oracle_game(env, dict(env_kwargs or {}), oracle, "--data.oracle_reward")
        if sibling_judge == "playout":
            check_playout_game(env, dict(env_kwargs or {}))
        self.sibling_judge, self.distinct_siblings = sibling_judge, bool(distinct_siblings)
        self.env, self.env_kwargs = env, dict(env_kwargs or {})
        self._base_kwargs = {k: v for k, v in self.env_kwargs.items() if k != "opponent"}
        self.opponents = list(opponents or [])
        self.num_episodes, self.num_envs, self.mode, self.temperature = (
            num_episodes,
            num_envs,
            mode,
            temperature,
        )
        self.grouping, self.group_size, self.ppo_epochs = grouping, group_size, ppo_epochs
        self.oracle_reward, self.oracle, self.mcts_simulations = (
            float(oracle_reward),
            oracle,
            mcts_simulations,
        )
        self.batch_size, self.seed, self._run_dir = batch_size, seed, run_dir
        self.iteration = 0
        self.last_episodes: list[Episode] = []
        self.rows: list[dict] = []
        self.rollout_metrics: dict[str, float] = {}
        self._starts: list[dict] = []
        self._oracle: _OracleValues | None = None
        self._built: int | None = None
        self._resumed_after: int | None = None

    # ------------------------------------------------------------------ protocols the callbacks use
    def set_iteration(self, iteration: int) -> None:
        self.iteration = iteration

    def set_stage(self, env: str, env_kwargs: dict) -> None:
        """Switch the game (a curriculum stage) from the next rollout on; the stage's options are laid
        over the datamodule's own ``env_kwargs`` (so illegal-answer rules set for the run stay)."""
        merged = {**self._base_kwargs, **env_kwargs}  # the run's illegal-answer rules stay
        make_env(env, {**merged, "opponent": merged.get("opponent", _default_opponent(env))}).close()
        if self.oracle_reward:
            check_oracle_game(env, merged, self.oracle, f"--data.oracle_reward (curriculum stage {env})")
        self.env, self.env_kwargs = env, merged
        self.opponents = []

    def set_starts(self, starts: list[dict]) -> None:
        """Start some of the next rollout's games from saved states (failure replay)."""
        self._starts = [dict(s) for s in starts]

    # ------------------------------------------------------------------ paths
    @property
    def run_dir(self) -> Path:
        if self._run_dir:
            return Path(self._run_dir)
        if self.trainer is not None:
            return Path(self.trainer.default_root_dir)
        return Path("runs/default")

    def setup(self, stage: str) -> None:
        if self.trainer is not None:
            # Every epoch is a new rollout: the train loader must be rebuilt each epoch.
            self.trainer.reload_dataloaders_every_n_epochs = 1

    # ------------------------------------------------------------------ rollouts
    def _opponent_for(self, index: int) -> str:
        if self.opponents:
            return self.opponents[index % len(self.opponents)]
        if "opponent" in self.env_kwargs:
            return str(self.env_kwargs["opponent"])
        return _default_opponent(self.env)

    def _plan(self) -> list[dict]:
        """This epoch's games: ``{"seed", "opponent", "options", "group"}`` in play order."""
        base = 1_000_003 * (self.seed + 1) + 10_007 * self.iteration
        starts = [s for s in self._starts if s.get("env") == self.env]
        plan = []
        for i in range(self.num_episodes):
            opponent = self._opponent_for(i)
            replay = starts[i] if i < len(starts) else None
            seed = int(replay["seed"]) if replay else base + i
            options = {}
            if replay:
                options["history"] = list(replay["history"])
                if replay.get("learner_seat") is not None and opponent != "self":
                    options["learner_seat"] = int(replay["learner_seat"])  # replay from the same side
            repeats = self.group_size if self.grouping == "start" else 1
            for _ in range(repeats):
                plan.append({"seed": seed, "opponent": opponent, "options": options, "group": f"start:{i}"})
        return plan

    def episodes(self, policy) -> list[Episode]:
        """This epoch's games: those already in the run folder (a resumed run), the rest played now."""
        path = self.run_dir / f"iter_{self.iteration:03d}" / "episodes.jsonl"
        plan = self._plan()
        have = {
            e.episode_id: e
            for e in read_complete_episodes(path)
            if e.env_id == self.env and e.mode == self.mode
        }
        tags = RolloutEngine.episode_tags([g["seed"] for g in plan])
        barrier()  # every rank has read the file before any rank appends to it
        rank, world = rank_and_world()
        start, played = time.perf_counter(), []
        # Sampling depends only on the seed, the epoch and the weights, not on the process's history.
        reseed_global(self.seed, self.iteration, rank, "rollout")
        engine = RolloutEngine(self.env, self.env_kwargs, self.num_envs)
        ids = [engine.episode_id(game["seed"], self.iteration, tags[k]) for k, game in enumerate(plan)]
        episodes: dict[int, Episode] = {k: have[i] for k, i in enumerate(ids) if i in have}
        # Under DDP each rank plays every world-th missing game (its own generator each, so the games
        # do not depend on the split); rank zero writes them all, as in preference.py. The games of
        # every opponent are stepped together: one act call a wave serves them all.
        missing = [k for k, i in enumerate(ids) if i not in have][rank::world]
        if missing or world > 1:
            result = engine.play(
                policy,
                [plan[k]["seed"] for k in missing],
                mode=self.mode,
                out_path=path if rank == 0 else None,
                iteration=self.iteration,
                reset_options=lambda j: plan[missing[j]]["options"] or None,
                progress=f"rollout epoch {self.iteration}",
                temperature=self.temperature,
                tags=[tags[k] for k in missing],
                opponents=[plan[k]["opponent"] for k in missing],
            )
            mine = gather_episodes(dict(zip(missing, result.episodes)), path)
            episodes.update(mine)
            played += list(mine.values())
        self.rollout_metrics = outcome_metrics(played, time.perf_counter() - start) if played else {}
        return [episodes[k] for k in sorted(episodes)]

    def build(self, policy, module=None) -> None:
        """Play (or reload) this epoch's games and turn them into rows with advantages."""
        self.last_episodes = self.episodes(policy)
        plan = self._plan()
        judged: list[list[float] | None] = [None] * len(self.last_episodes)
        seen: dict = {}  # the oracle's values per position, this epoch (shared with the prompt groups)
        if self.oracle_reward:
            self._epoch_oracle()
            judged, quality = judge_moves(self.last_episodes, self.oracle_reward, self._oracle, seen)
            self.rollout_metrics.update(quality)
        if self.grouping == "prompt":
            rows = self._state_groups(policy, self.last_episodes, seen)
        else:
            rows = []
            for k, episode in enumerate(self.last_episodes):
                group = {"game": episode.episode_id, "start": plan[k]["group"], "none": "all"}[self.grouping]
                rows += episode_rows(episode, group, judged[k])
        if not rows:
            raise ConfigError(
                f"epoch {self.iteration}: {len(self.last_episodes)} games gave no learner turns to train on"
            )
        for r in rows:
            r["temperature"] = self.temperature  # what the answers were sampled at (None: the policy's)
        if module is not None:
            stats = require(module, AdvantageEstimator, "OnPolicyDataModule", "a model").assign_advantages(
                rows
            )
            self.rollout_metrics.update({f"advantage_{k}": v for k, v in stats.items()})
        self.rows = rows

    def _epoch_oracle(self) -> None:
        """One oracle for the run (it decides once per game whether to search exactly), with its own
        generator per epoch: MCTS values are the same after a resume."""
        if self._oracle is None:
            self._oracle = _OracleValues(self.oracle, self.mcts_simulations, None)
        self._oracle.rng = np.random.default_rng([abs(self.seed), self.iteration])

    def _state_groups(self, policy, episodes: list[Episode], seen: dict) -> list[dict]:
        """``grouping: prompt``: every learner turn with ``group_size - 1`` sibling answers sampled at
        its observation, all judged alone (see the module docstring), as rows of one group. ``seen``
        is the epoch's oracle cache (:func:`move_regret`): a position is searched once for all its
        answers."""
        from envs import state_from_history
        from envs.core import MAX_ANSWER_CHARS

        turns = [(e, i, t) for e in episodes for i, t in enumerate(e.turns) if t.learner]
        if not turns:
            return []
        reps = self.group_size - 1
        rank, _ = rank_and_world()
        reseed_global(self.seed, self.iteration, rank, "siblings")  # the same siblings after a resume
        if self.distinct_siblings:
            siblings = self._distinct_siblings(policy, turns, reps)
        else:
            observations = [
                {
                    "prompt": t.prompt,
                    "legal_actions": list(t.legal_actions),
                    "rng": np.random.default_rng([abs(self.seed), self.iteration, n, j]),
                }
                for n, (_, _, t) in enumerate(turns)
                for j in range(reps)
            ]
            sampled = policy.act(observations, mode=self.mode, temperature=self.temperature)
            siblings = [sampled[n * reps : (n + 1) * reps] for n in range(len(turns))]
        penalty = float(self.env_kwargs.get("illegal_penalty", 1.0))
        env = make_env(self.env, {**self._base_kwargs, "opponent": "self"})
        parse = env.unwrapped.renderer.parse
        env.close()
        quality: list[float] = []

        def judge(episode: Episode, turn, action: int | None) -> tuple[bool, float]:
            """(legal, move reward) of playing ``action`` (None: nothing legal read) at ``turn``."""
            if action is None:
                return False, 0.0
            if not self.oracle_reward:
                return True, 0.0
            regret = move_regret(self._oracle, seen, episode.game, turn.history, turn.seat, action)
            quality.append(regret)
            return True, -self.oracle_reward * regret

        grouped = []
        for n, (episode, index, turn) in enumerate(turns):
            state = state_from_history(episode.game, turn.history)
            legal_ids = set(state.legal_actions(turn.seat))
            answers = [
                (turn.completion, turn.completion_ids, turn.token_logps, turn.action if turn.legal else None)
            ]
            for a in siblings[n]:
                chosen = parse(a.text[:MAX_ANSWER_CHARS], state, turn.seat)
                action = int(chosen) if chosen is not None and int(chosen) in legal_ids else None
                answers.append((a.text, a.token_ids, a.token_logps, action))
            grouped.append((episode, index, turn, answers))
        played_on = self._playouts(policy, grouped) if self.sibling_judge == "playout" else {}
        rows = []
        for n, (episode, index, turn, answers) in enumerate(grouped):
            group = f"{episode.episode_id}/{index}"
            for j, (text, ids, logps, action) in enumerate(answers):
                legal, move_reward = judge(episode, turn, action)
                step_reward = 0.0 if legal else -penalty
                if self.sibling_judge == "playout":  # the game's result from this answer on
                    step_reward += played_on[(n, j)]
                rows.append(
                    {
                        "prompt": turn.prompt,
                        "completion": text,
                        "completion_ids": ids,
                        "old_logps": logps,
                        "value": None,
                        "reward": step_reward + move_reward,
                        "move_reward": move_reward,
                        "outcome": step_reward + move_reward,
                        "episode_id": f"{group}/{j}",
                        "seat": turn.seat,
                        "turn": 0,
                        "last": True,
                        "game": episode.game,
                        "group": group,
                        "legal": legal,
                        "step_reward": step_reward,
                        "unit": "turn",
                        **score_choice(self.mode, turn.legal_actions, text),
                    }
                )
        if played_on:
            self.rollout_metrics["playout_mean_return"] = sum(played_on.values()) / len(played_on)
        if quality:
            self.rollout_metrics["group_optimal_move_share"] = sum(r <= 1e-9 for r in quality) / len(quality)
            self.rollout_metrics["group_move_regret"] = sum(quality) / len(quality)
        return rows

    def _distinct_siblings(self, policy, turns: list, reps: int) -> list[list]:
        """``distinct_siblings``: per learner turn, up to ``reps`` legal moves other than the one
        played, drawn without replacement from the score policy at the rollout temperature."""
        from modules.policy import Action

        temp = self.temperature if self.temperature is not None else policy.temperature
        probs = policy.action_probabilities(
            [t.prompt for _, _, t in turns], [list(t.legal_actions) for _, _, t in turns], temperature=temp
        )
        out = []
        for n, ((_, _, turn), p) in enumerate(zip(turns, probs)):
            legal = list(turn.legal_actions)
            played = legal.index(turn.completion) if turn.completion in legal else None
            rng = np.random.default_rng([abs(self.seed), self.iteration, n, 3])
            logps = [math.log(max(x, 1e-300)) for x in p]
            out.append(
                [
                    Action(text=legal[c], index=c, logp=logps[c], token_ids=policy.completion_ids(legal[c]))
                    for c in _gumbel_top(logps, reps, played, rng)
                ]
            )
        return out

    def _playouts(self, policy, grouped: list) -> dict[tuple[int, int], float]:
        """``sibling_judge: playout``: the value of every answer ``(n, j)`` of ``grouped`` for the seat
        that gave it: the seat's return (minus its later illegal-answer penalties) in a game played on
        from the state after the answer by the current policy, in the rollout's mode and temperature,
        with the episode's opponent; the return itself where the answer ends the game. An answer
        with no legal move gets the game's lowest return (its illegal penalty is added by the
        caller)."""
        from envs import load_game, state_from_history

        values: dict[tuple[int, int], float] = {}
        todo: dict[str, list] = {}  # opponent -> [(key, seat, history, learner seat)]
        for n, (episode, _, turn, answers) in enumerate(grouped):
            for j, (_, _, _, action) in enumerate(answers):
                if action is None:
                    values[(n, j)] = float(load_game(episode.game).min_utility())
                    continue
                history = list(turn.history) + [int(action)]
                state = state_from_history(episode.game, history)
                if state.is_terminal():
                    values[(n, j)] = float(state.returns()[turn.seat])
                else:
                    todo.setdefault(episode.opponent, []).append(((n, j), turn.seat, history, episode.learner_seat))
        rank, _ = rank_and_world()
        reseed_global(self.seed, self.iteration, rank, "playouts")
        items = [item for group in todo.values() for item in group]
        opponents = [opponent for opponent, group in todo.items() for _ in group]
        if items:  # every opponent's playouts stepped together
            engine = RolloutEngine(self.env, self.env_kwargs, self.num_envs)
            base = 1_000_003 * (self.seed + 1) + 10_007 * self.iteration + 7_919
            options = [
                {"history": history, **({"learner_seat": learner} if learner >= 0 else {})}
                for _, _, history, learner in items
            ]
            result = engine.play(
                policy,
                [base + k for k in range(len(items))],
                mode=self.mode,
                iteration=self.iteration,
                reset_options=lambda k: dict(options[k]),
                progress=f"playouts epoch {self.iteration}",
                temperature=self.temperature,
                tags=[f"/playout{k}" for k in range(len(items))],
                opponents=opponents,
            )
            for (key, seat, _, _), played in zip(items, result.episodes):
                values[key] = float(played.returns[seat] - played.penalties[seat])
        return values

    def state_dict(self) -> dict:
        return {"built_epoch": self._built}

    def load_state_dict(self, state_dict: dict) -> None:
        self._resumed_after = state_dict.get("built_epoch")

    # ------------------------------------------------------------------ loaders
    def train_dataloader(self) -> DataLoader:
        if self.trainer is not None:
            self.iteration = self.trainer.current_epoch
            # A resumed run first asks for a loader while its epoch counter still shows the epoch the
            # checkpoint finished: that request is for the next epoch (the checkpoint records the
            # epoch whose rollout was built last). Asked twice for one epoch, the rollout and its
            # advantages (whose estimators keep state, e.g. role baselines) are made once.
            if self._resumed_after is not None and self.iteration <= self._resumed_after:
                self.iteration = self._resumed_after + 1
        module = self.trainer.lightning_module if self.trainer is not None else None
        if self._built != self.iteration:
            self.build(getattr(module, "policy", None), module)
            self._built = self.iteration
            if self.trainer is not None:  # once per rollout, to every logger
                metrics = {f"rollout/{k}": v for k, v in self.rollout_metrics.items()}
                metrics["rollout/rows"] = float(len(self.rows))
                metrics["rollout/epoch"] = float(self.iteration)
                for logger in self.trainer.loggers:
                    logger.log_metrics(metrics, step=self.trainer.global_step)
                    log_transcripts(logger, "rollout/games", self.last_episodes, self.trainer.global_step)
        keys = [r["group"] if self.grouping != "none" else r["episode_id"] for r in self.rows]
        order = seeded_generator(self.seed, self.iteration, "order")  # the same order after a resume
        sampler = GroupBatchSampler(
            keys, self.batch_size, shuffle=True, passes=self.ppo_epochs, generator=order
        )
        return DataLoader(self.rows, batch_sampler=sampler, collate_fn=_collate)
