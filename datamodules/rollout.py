"""Batched rollouts: many environments stepped together, one policy call per wave of waiting seats.

The engine knows environments (``envs``) and asks players to act (:mod:`datamodules.players`). Two
ways to seat them:

- ``play(policy, ...)``: the policy is the learner; the env's own opponent (``env_kwargs.opponent``)
  plays the other seats inside the env, or the learner drives every seat with ``opponent: self``;
- ``play(policy, ..., opponents=[...])``: as the first, each game with its own env opponent; the
  games of all opponents are stepped together, so one ``act`` call serves them all;
- ``play(None, ..., seats=fn)``: ``fn(game_index)`` gives a player per seat (the learner, a frozen
  snapshot, another model, a built-in agent); the envs run in self-play mode and the engine routes
  each observation to the player of its seat. A checkpoint pool, a judge or a match between two
  LLMs needs no other engine.

Each wave sends all waiting observations of one policy player to one ``act`` call.
"""

from __future__ import annotations

import json
import math
import time
import typing
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import gymnasium
import numpy as np
from gymnasium.envs.registration import load_env_creator
from tqdm.auto import tqdm

import envs  # noqa: F401  (registers the lightspiel/* ids)
from datamodules.metrics import outcome_metrics_with_intervals as outcome_metrics
from datamodules.players import AgentPlayer, Player, PolicyPlayer
from datamodules.records import Episode, EpisodeWriter, Turn
from modules.errors import ConfigError, did_you_mean
from modules.memory import release_freed_memory


@dataclass
class RolloutResult:
    episodes: list[Episode]
    metrics: dict[str, float] = field(default_factory=dict)


def _accepts_str(hint) -> bool:
    return hint is str or hint is typing.Any or str in typing.get_args(hint)


def _typed_options(env_id: str, env_kwargs: dict) -> dict:
    """Options given on the command line (``--data.init_args.env_kwargs.illegal_penalty 1.0``) arrive
    as strings, as jsonargparse leaves a free-form dict's values: a string for an option the env does
    not take as a string (by its constructor's annotations) is read as a JSON scalar (``1.0``,
    ``1e-3``, ``7``, ``true``, ``null``); string options (``game: "2048"``) and anything else stay."""
    try:
        entry = gymnasium.spec(env_id).entry_point
        creator = load_env_creator(entry) if isinstance(entry, str) else entry
        hints = typing.get_type_hints(creator.__init__)
    except Exception:  # an env without readable annotations: leave its options alone
        return dict(env_kwargs)
    out = {}
    for key, value in env_kwargs.items():
        if isinstance(value, str) and key in hints and not _accepts_str(hints[key]):
            try:
                parsed = json.loads(value)
            except ValueError:
                parsed = value
            value = parsed if parsed is None or isinstance(parsed, (bool, int, float)) else value
        out[key] = value
    return out


def make_env(env_id: str, env_kwargs: dict | None = None) -> gymnasium.Env:
    """``gymnasium.make`` with lightspiel's errors: an unknown id names the closest registered one."""
    if env_id not in gymnasium.registry:
        ours = [k for k in gymnasium.registry if k.startswith("lightspiel/")]
        hint = did_you_mean(env_id, ours) or f"; registered: {', '.join(ours)}"
        raise ConfigError(f"unknown env id {env_id!r}{hint}")
    kwargs = _typed_options(env_id, env_kwargs or {})
    try:
        return gymnasium.make(env_id, disable_env_checker=True, **kwargs)
    except (gymnasium.error.Error, ValueError) as err:
        raise ConfigError(f"env {env_id!r}: {err}") from err


def _illegal_answers(env, slot: dict, wanted: bool) -> dict:
    """``{"extra_answers": [...]}``: the texts the env would read as an illegal move by the seat to
    move (a score-mode learner's observation with :meth:`RolloutEngine.play`'s ``answer_logps``),
    else ``{}``. An env without a board (a reasoning task) has none."""
    if not wanted:
        return {}
    from datamodules.pairs import illegal_texts

    base = env.unwrapped
    state = getattr(base, "state", None)
    if state is None or not hasattr(base, "renderer"):
        return {"extra_answers": []}
    return {"extra_answers": illegal_texts(base.renderer, state, int(slot["obs"]["seat"]))}


class RolloutEngine:
    """Steps ``num_envs`` copies of an environment and batches the players' decisions.

    Args:
        env_id: A registered Gymnasium id, e.g. ``lightspiel/TicTacToe-v0``.
        env_kwargs: Keyword arguments for ``gymnasium.make`` (opponent, illegal rule, ...).
        num_envs: Environments stepped together; each wave asks each policy player once. With
            per-game ``opponents`` (:meth:`play`), each opponent gets its share of them, in
            proportion to its games (at least one each).
    """

    def __init__(self, env_id: str, env_kwargs: dict | None = None, num_envs: int = 16) -> None:
        if num_envs < 1:
            raise ConfigError(f"num_envs must be >= 1, got {num_envs}")
        self.env_id, self.env_kwargs, self.num_envs = env_id, dict(env_kwargs or {}), num_envs
        make_env(env_id, self.env_kwargs).close()  # a bad id or option fails here, before any game
        self._envs: list[gymnasium.Env] | None = None
        self._seated_envs: list[gymnasium.Env] | None = None
        self._opponent_envs: dict[str, list[gymnasium.Env]] = {}
        self._tags: dict[int, str] = {}

    @property
    def envs(self) -> list[gymnasium.Env]:
        """The ``num_envs`` env copies as configured (made on first use)."""
        if self._envs is None:
            self._envs = [make_env(self.env_id, self.env_kwargs) for _ in range(self.num_envs)]
        return self._envs

    def _envs_of(self, opponent: str, count: int) -> list[gymnasium.Env]:
        """``count`` env copies whose built-in opponent is ``opponent`` (made once, kept)."""
        made = self._opponent_envs.setdefault(opponent, [])
        if not made and self._envs and str(self._envs[0].unwrapped.opponent) == opponent:
            made += self._envs  # the configured copies, already made, have this opponent
        kwargs = {**self.env_kwargs, "opponent": opponent}
        made += [make_env(self.env_id, kwargs) for _ in range(count - len(made))]
        return made[:count]

    def _grouped(self, opponents: Sequence[str], queue: list) -> tuple[list, list[str], dict[str, list]]:
        """The envs of a play with per-game ``opponents``: ``(envs, opponent of each env, queue of
        each opponent)``; ``num_envs`` is shared in proportion to the opponents' games."""
        queues: dict[str, list] = {}
        for order, seed in queue:
            queues.setdefault(str(opponents[order]), []).append((order, seed))
        envs_, groups = [], []
        for opponent, games in queues.items():
            count = min(len(games), max(1, round(self.num_envs * len(games) / len(queue))))
            envs_ += self._envs_of(opponent, count)
            groups += [opponent] * count
        return envs_, groups, queues

    def _envs_for(self, seated: bool) -> list[gymnasium.Env]:
        """The env copies: as configured, or (with seated players) in self-play mode."""
        if not seated:
            return self.envs
        if self._seated_envs is None:
            kwargs = {**self.env_kwargs, "opponent": "self"}
            self._seated_envs = [make_env(self.env_id, kwargs) for _ in range(self.num_envs)]
        return self._seated_envs

    def play(
        self,
        policy,
        seeds: Sequence[int],
        mode: str = "score",
        greedy: bool = False,
        out_path: str | Path | None = None,
        iteration: int = 0,
        reset_options: Callable[[int], dict] | None = None,
        progress: str | None = "rollout",
        temperature: float | None = None,
        seats: Callable[[int], Sequence[Player]] | None = None,
        tags: Sequence[str] | None = None,
        opponents: Sequence[str] | None = None,
        temperatures: Sequence[float | None] | None = None,
        answer_logps: bool = False,
    ) -> RolloutResult:
        """Play one episode per seed; append each finished episode to ``out_path`` as it ends.

        Args:
            policy: The learner (anything with ``act``); unused when ``seats`` is given.
            seeds: One game per seed; results come back in this order.
            mode: Acting mode of policy players without one of their own.
            greedy: Greedy acting (tournaments) instead of sampling.
            out_path: Episodes JSONL to append to (``None``: keep in memory only).
            iteration: Recorded on each episode.
            reset_options: ``fn(game_index) -> options`` for ``env.reset`` (e.g. the learner's seat,
                or a start ``history`` for failure replay).
            progress: Progress-bar label (``None``: no bar).
            temperature: Sampling temperature of policy players without one of their own.
            seats: ``fn(game_index) -> [player per seat]``; the envs then run in self-play mode.
            tags: Suffixes of the episode ids (default :meth:`episode_tags` of ``seeds``).
            opponents: The env opponent of each game (overrides ``env_kwargs.opponent``): games
                against different opponents are stepped together and the learner's observations
                of all of them go to one ``act`` call a wave. Each game is the one it would be
                alone: the env's opponent draws from the env's generator, seeded by the game.
            temperatures: Each game's acting setting, standing in for ``greedy`` and ``temperature``
                in that game (None: the call's; 0: greedy, as a tournament plays; t > 0: sampled at
                t). A :class:`PolicyPlayer`'s own ``greedy`` or ``temperature`` still wins. A wave's
                observations go to one ``act`` call per player and distinct setting.
            answer_logps: At each score-mode decision of a learner, also score every answer the env
                would read as an illegal move (:func:`datamodules.pairs.illegal_texts`) and record
                the log-probability of each legal and illegal answer on the turn
                (``Turn.answer_logps``), and the learner's :meth:`~modules.Policy.fingerprint` on
                each episode: the figures DPO's reference pass would compute, when the reference
                is the policy that played (``DPO.cache_reference``).
        """
        start = time.perf_counter()
        release_freed_memory()  # a training phase's freed activations, before the games add their own
        queue = list(enumerate(seeds))
        if opponents is not None:
            if seats is not None:
                raise ConfigError("play: give per-game opponents or seats, not both")
            if len(opponents) != len(queue):
                raise ConfigError(f"play: {len(opponents)} opponents for {len(queue)} games")
            envs_, groups, queues = self._grouped(opponents, queue)
        else:
            envs_ = self._envs_for(seats is not None)
            groups, queues = [None] * len(envs_), {None: queue}
        if temperatures is not None:
            if len(temperatures) != len(queue):
                raise ConfigError(f"play: {len(temperatures)} temperatures for {len(queue)} games")
            bad = [t for t in temperatures if t is not None and not (math.isfinite(t) and t >= 0)]
            if bad:
                raise ConfigError(f"play: a game's temperature must be >= 0 (0: greedy), got {bad[0]}")
        learner = None if seats is not None else PolicyPlayer(policy)
        tags = list(tags) if tags is not None else self.episode_tags(seeds)
        self._tags = dict(enumerate(tags))
        self._fingerprint = None
        if answer_logps and learner is not None and hasattr(policy, "fingerprint"):
            self._fingerprint = policy.fingerprint()
        finished: list[tuple[int, Episode]] = []
        slots: dict[int, dict] = {}  # env index -> episode in flight
        writer = EpisodeWriter(out_path) if out_path else None
        bar = tqdm(total=len(seeds), desc=progress, leave=False, disable=progress is None, dynamic_ncols=True)
        settings = {"mode": mode, "greedy": greedy, "temperature": temperature}

        def game_settings(order: int) -> dict:
            own = None if temperatures is None else temperatures[order]
            if own is None:
                return settings
            return {**settings, "greedy": own == 0, "temperature": temperature if own == 0 else own}

        try:

            def start_next(i: int) -> None:
                order, seed = queues[groups[i]].pop(0)
                opts = reset_options(order) if reset_options else None
                obs, info = envs_[i].reset(seed=int(seed), options=opts)
                players = list(seats(order)) if seats is not None else None
                if players is not None and len(players) != envs_[i].unwrapped.num_players:
                    raise ConfigError(
                        f"seats: {len(players)} players for a {envs_[i].unwrapped.num_players}-player game"
                    )
                slots[i] = {
                    "order": order,
                    "seed": int(seed),
                    "obs": obs,
                    "info": info,
                    "turns": [],
                    "players": players,
                    "settings": game_settings(order),
                    "rng": np.random.default_rng([int(seed), 7]),
                    # The policy's own draws for this game (every sampled acting mode): they depend
                    # on the game (seed, sample, iteration) only, not on its batch or its process.
                    "policy_rng": np.random.default_rng(
                        [int(seed), 11, zlib.crc32(tags[order].encode()), max(int(iteration), 0)]
                    ),
                    "start_history": list((opts or {}).get("history", [])),
                }

            def finish(i: int, done: Episode) -> None:
                finished.append((slots[i]["order"], done))
                if writer:
                    writer.write(done)
                bar.update(1)
                del slots[i]

            def fill(i: int) -> None:
                """Start the next queued game in env ``i``; a start that is already over (a replayed
                or played-on history whose remaining moves were all the opponents') ends at once,
                with no turns, and the next one takes the env."""
                while queues[groups[i]]:
                    start_next(i)
                    if "returns" not in slots[i]["info"]:
                        return
                    finish(i, self._episode(envs_[i], slots[i], slots[i]["info"], False, mode, iteration))

            for i in range(min(len(envs_), len(queue))):
                fill(i)
            while slots:
                for i, (player, act) in self._wave(envs_, slots, learner, answer_logps).items():
                    done = self._step(envs_[i], slots[i], player, act, mode, iteration)
                    if done is None:
                        continue
                    finish(i, done)
                    fill(i)
        finally:
            bar.close()
            if writer:
                writer.close()
        episodes = [e for _, e in sorted(finished, key=lambda p: p[0])]
        return RolloutResult(episodes, outcome_metrics(episodes, time.perf_counter() - start))

    @staticmethod
    def episode_tags(seeds: Sequence[int]) -> list[str]:
        """Episode-id suffixes: ``"#k"`` for the k-th game of a seed that occurs more than once (a
        group of games from one start), ``""`` otherwise, so ids stay unique."""
        counts: dict[int, int] = {}
        for seed in seeds:
            counts[int(seed)] = counts.get(int(seed), 0) + 1
        seen: dict[int, int] = {}
        tags = []
        for seed in seeds:
            k = seen.get(int(seed), 0)
            seen[int(seed)] = k + 1
            tags.append(f"#{k}" if counts[int(seed)] > 1 else "")
        return tags

    def episode_id(self, seed: int, iteration: int, tag: str = "") -> str:
        return self.episode_id_of(self.env_id, seed, iteration, tag)

    @staticmethod
    def episode_id_of(env_id: str, seed: int, iteration: int, tag: str = "") -> str:
        """The id of game ``seed`` of ``iteration`` (``tag`` tells games of one seed apart)."""
        return f"{env_id}:{iteration}:{seed}{tag}"

    @staticmethod
    def _wave(
        envs_, slots: dict[int, dict], learner: Player | None, answer_logps: bool = False
    ) -> dict[int, tuple]:
        """Every waiting seat's decision: ``{env index: (player, action)}``. The observations of one
        policy player go to one batched ``act`` call per acting setting (mode, greedy, temperature);
        agents choose from the OpenSpiel state (their action is an index into the legal actions).
        With ``answer_logps`` a score-mode learner's observations carry ``extra_answers``: the
        answers the env would read as illegal moves."""
        by_player: dict[tuple, tuple[Player, dict, list[int]]] = {}
        for i in sorted(slots):
            slot = slots[i]
            player = learner if slot["players"] is None else slot["players"][int(slot["obs"]["seat"])]
            key = (id(player), *slot["settings"].values())
            by_player.setdefault(key, (player, slot["settings"], []))[2].append(i)
        decisions: dict[int, tuple] = {}
        for player, settings, indices in by_player.values():
            if isinstance(player, AgentPlayer):
                for i in indices:
                    index = player.choose(envs_[i], int(slots[i]["obs"]["seat"]), slots[i]["rng"])
                    decisions[i] = (player, index)
                continue
            extra = answer_logps and player is learner and (player.mode or settings["mode"]) == "score"
            actions = player.act(
                [
                    {**slots[i]["obs"], "rng": slots[i]["policy_rng"], **_illegal_answers(envs_[i], slots[i], extra)}
                    for i in indices
                ],
                **settings,
            )
            decisions.update({i: (player, a) for i, a in zip(indices, actions)})
        return dict(sorted(decisions.items()))

    def _step(self, env, slot: dict, player: Player, act, mode: str, iteration: int) -> Episode | None:
        obs, info = slot["obs"], slot["info"]
        if isinstance(act, int):  # a built-in agent's choice: an index into the legal actions
            answer, text, logp = act, obs["legal_actions"][act], None
        else:
            answer = act.index if act.index is not None else act.text
            text, logp = act.text, act.logp
        new_obs, reward, terminated, truncated, step_info = env.step(answer)
        slot["turns"].append(
            Turn(
                seat=int(obs["seat"]),
                prompt=obs["prompt"],
                legal_actions=list(obs["legal_actions"]),
                completion=text,
                action=step_info.get("action"),
                action_text=step_info.get("action_text"),
                parsed=bool(step_info.get("parsed", True)),
                legal=bool(step_info.get("legal", True)),
                outcome=str(step_info.get("outcome", "ok")),
                rule=step_info.get("rule"),
                history=[int(a) for a in info.get("history", [])],
                reward=float(reward),
                logp=logp,
                player=player.name,
                learner=bool(player.learner),
                completion_ids=getattr(act, "token_ids", None),
                token_logps=getattr(act, "token_logps", None),
                value=getattr(act, "value", None),
                verdict=step_info.get("verdict"),
                answer_logps=getattr(act, "answer_logps", None),
            )
        )
        slot["obs"], slot["info"] = new_obs, step_info
        if not (terminated or truncated):
            return None
        return self._episode(env, slot, step_info, bool(truncated), mode, iteration)

    def _episode(self, env, slot: dict, info: dict, truncated: bool, mode: str, iteration: int) -> Episode:
        n = env.unwrapped.num_players
        players = slot["players"]
        if players is None:
            names, learner_seat, opponent = [], int(info.get("learner_seat", -1)), str(env.unwrapped.opponent)
        else:
            names = [p.name for p in players]
            learners = [s for s, p in enumerate(players) if p.learner]
            learner_seat = learners[0] if len(learners) == 1 else -1
            others = sorted({p.name for p in players if not p.learner})
            opponent = "+".join(others) if others else "self"
        return Episode(
            episode_id=self.episode_id(slot["seed"], iteration, self._tags.get(slot["order"], "")),
            game=str(info.get("game", "")),
            env_id=self.env_id,
            seed=slot["seed"],
            opponent=opponent,
            learner_seat=learner_seat,
            turns=slot["turns"],
            returns=[float(r) for r in info.get("returns", [0.0] * n)],
            penalties=[float(p) for p in info.get("penalties", [0.0] * n)],
            truncated=truncated,
            iteration=iteration,
            mode=mode,
            players=names,
            start_history=slot["start_history"],
            policy_fingerprint=self._fingerprint if slot["players"] is None else None,
        )
