"""The env contract: what every lightspiel env keeps, and what the rest of lightspiel relies on.

:class:`~envs.text_env.OpenSpielTextEnv` keeps it for every OpenSpiel game; a new env (e.g. a
single-player math or logic env with free-text answers) keeps it too, and then the rollout engine,
the pair builders, the tournaments and the callbacks work with it unchanged. :class:`LightspielEnv`
states it; :func:`check_env_contract` plays a few games and raises naming the first broken rule; the
tests run it on every registered id.

Who relies on what:

- the rollout engine (``datamodules.rollout``): the observation keys, ``reset(seed=, options=)`` with
  ``learner_seat`` and ``history`` (failure replay starts games from saved histories), every
  :data:`STEP_INFO_KEYS` key it records on a turn, :data:`FINAL_INFO_KEYS` when the episode ends,
  ``game`` and ``learner_seat`` for the episode record, and ``num_players`` and ``opponent`` on the
  unwrapped env;
- the pair builders (``datamodules.pairs``): ``history`` and ``game`` (a turn's state is rebuilt with
  :func:`envs.core.state_from_history`), ``legal_actions``, ``outcome``, ``returns`` and
  ``penalties``;
- the built-in players of seated rollouts: the unwrapped env's ``state``, ``game`` and ``game_name``
  (OpenSpiel envs only);
- callbacks (tournaments, curricula): ``returns`` and ``penalties`` at the end, ``learner_seat``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, Protocol, SupportsFloat, runtime_checkable

import numpy as np

__all__ = [
    "FINAL_INFO_KEYS",
    "INFO_KEYS",
    "OBSERVATION_KEYS",
    "OUTCOMES",
    "RESET_INFO_KEYS",
    "RESET_OPTIONS",
    "STEP_INFO_KEYS",
    "LightspielEnv",
    "check_env_contract",
]

#: Keys of every observation.
OBSERVATION_KEYS: tuple[str, ...] = ("prompt", "legal_actions", "seat")
#: ``info`` keys after ``reset`` and after every ``step``.
INFO_KEYS: tuple[str, ...] = ("game", "seat", "learner_seat", "history", "simultaneous")
#: ``info`` keys after ``reset``.
RESET_INFO_KEYS: tuple[str, ...] = (*INFO_KEYS, "opponent_actions")
#: ``info`` keys after every ``step``.
STEP_INFO_KEYS: tuple[str, ...] = (
    *INFO_KEYS,
    "acting_seat",
    "action",
    "action_text",
    "parsed",
    "legal",
    "outcome",
    "rule",
    "penalty",
    "retries",
    "opponent_actions",
)
#: Extra ``info`` keys when the episode has ended (terminated or truncated), after ``reset`` or ``step``.
FINAL_INFO_KEYS: tuple[str, ...] = ("returns", "penalties")
#: Options ``reset`` accepts.
RESET_OPTIONS: tuple[str, ...] = ("learner_seat", "history")
#: Values of ``info["outcome"]``.
OUTCOMES: tuple[str, ...] = ("ok", "illegal", "unparsed")


@runtime_checkable
class LightspielEnv(Protocol):
    """A Gymnasium env a language model plays by writing answers (what ``env.unwrapped`` is).

    Observation: a dict with the keys :data:`OBSERVATION_KEYS`:

    - ``prompt`` (``str``): what the seat to move reads; at the end, the final view of the seat that
      acted last. It never shows a seat what is hidden from it.
    - ``legal_actions`` (``tuple[str, ...]``): canonical texts of the legal answers, in a fixed
      order (an ``int`` action indexes it). Empty at the end. An env without a fixed list of legal
      answers (a free-form answer: a number, a proof) returns an empty tuple while it waits for an
      answer; then only ``str`` actions are meaningful.
    - ``seat`` (``int``): the seat to move (``0`` for single-player envs); at the end, the seat that
      acted last.

    ``info`` after ``reset``: :data:`RESET_INFO_KEYS`; after each ``step``: :data:`STEP_INFO_KEYS`;
    plus :data:`FINAL_INFO_KEYS` once the episode has ended. Their meaning:

    - ``game`` (``str``): the game string (``state_from_history(info["game"], info["history"])``
      rebuilds the observed state of an OpenSpiel env).
    - ``seat``: the seat to move, ``-1`` once the episode is over. ``learner_seat``: the learner's
      seat, ``-1`` when the learner plays every seat (self-play).
    - ``history`` (``list[int]``): the OpenSpiel action history of the observed state (an env
      without one: the ids of the answers so far, or ``[]``). ``simultaneous`` (``bool``): the
      decision is at a simultaneous-move node.
    - ``acting_seat``: the seat that answered. ``action``: the action id played for it (``None``
      when none was: a retry or a forfeit). ``action_text``: its canonical text (``None`` likewise).
      ``parsed``: the answer named a move. ``legal``: that move was legal (``outcome == "ok"``).
      ``outcome``: one of :data:`OUTCOMES`. ``rule``: ``None`` when legal, else what followed
      (``"random"``, ``"forfeit"``, ``"retry"``). ``penalty``: what the answer cost (taken from the
      reward). ``retries``: failed answers spent on this decision.
    - ``opponent_actions``: ``[seat, action id, action text]`` for every opponent move applied since
      the learner's last observation (``[]`` in self-play and single-player envs).
    - ``returns`` and ``penalties``: per seat, the game's outcome and the penalties charged.

    ``reset(seed=..., options=...)`` options (:data:`RESET_OPTIONS`): ``learner_seat`` fixes the
    learner's seat for the episode (``None``: drawn); ``history`` starts the episode from the state
    that saved action history leads to (an earlier ``info["history"]``; failure replay uses it),
    after which opponents and chance move as usual. Anything else, or a value that is not valid, is
    a ``ValueError`` naming the option.

    Rewards: the acting seat's reward for a step is the change of its return during the step minus
    the step's penalty, so a learner's rewards over an episode sum to its return minus its
    penalties.

    Attributes:
        opponent: Who plays the other seats (``"self"``: the learner plays every seat; a
            single-player env says ``"self"``).
        num_players: Seats of the game.
    """

    opponent: str
    num_players: int

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Start an episode; return the first observation and ``info``."""
        ...

    def step(self, action: str | int) -> tuple[dict[str, Any], SupportsFloat, bool, bool, dict[str, Any]]:
        """Play the answer of the seat to move; return ``(obs, reward, terminated, truncated, info)``."""
        ...


# --------------------------------------------------------------------------------------------------
# The check
# --------------------------------------------------------------------------------------------------


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(f"env contract: {message}")


def _check_keys(mapping: Any, keys: Iterable[str], where: str) -> None:
    _require(isinstance(mapping, dict), f"{where} must be a dict, got {type(mapping).__name__}")
    missing = [k for k in keys if k not in mapping]
    _require(not missing, f"{where} lacks the key(s) {', '.join(missing)}")


def _check_observation(obs: Any, over: bool, where: str) -> None:
    _check_keys(obs, OBSERVATION_KEYS, f"the observation {where}")
    _require(isinstance(obs["prompt"], str) and obs["prompt"], f"'prompt' {where} must be a non-empty str")
    legal = obs["legal_actions"]
    _require(
        isinstance(legal, tuple) and all(isinstance(t, str) and t for t in legal),
        f"'legal_actions' {where} must be a tuple of non-empty str",
    )
    _require(len(set(legal)) == len(legal), f"'legal_actions' {where} repeats an action text: {legal}")
    _require(not (over and legal), f"'legal_actions' must be empty once the episode is over, got {legal}")
    _require(isinstance(obs["seat"], int) and obs["seat"] >= 0, f"'seat' {where} must be an int >= 0")


def _check_info(info: dict, keys: tuple[str, ...], over: bool, where: str) -> None:
    _check_keys(info, keys + (FINAL_INFO_KEYS if over else ()), f"info {where}")
    _require(isinstance(info["game"], str) and info["game"], f"info['game'] {where} must be a non-empty str")
    history = info["history"]
    _require(
        isinstance(history, list) and all(isinstance(a, int) for a in history),
        f"info['history'] {where} must be a list of int",
    )
    _require(
        (info["seat"] == -1) == over, f"info['seat'] {where} must be -1 exactly when the episode is over"
    )
    _require(isinstance(info["opponent_actions"], list), f"info['opponent_actions'] {where} must be a list")
    if not over:
        _require(not any(k in info for k in FINAL_INFO_KEYS), f"info {where} has final keys before the end")


def _check_step(obs: dict, reward: Any, info: dict, acted: dict, where: str) -> None:
    """Rules of one step's info, given the observation ``acted`` the answer was for."""
    _require(
        info["acting_seat"] == acted["seat"], f"info['acting_seat'] {where} is not the seat that answered"
    )
    _require(info["outcome"] in OUTCOMES, f"info['outcome'] {where} must be one of {OUTCOMES}")
    _require(info["legal"] == (info["outcome"] == "ok"), f"info['legal'] {where} must mean outcome 'ok'")
    _require(info["parsed"] or info["outcome"] == "unparsed", f"info['parsed'] {where} contradicts 'outcome'")
    _require((info["rule"] is None) == info["legal"], f"info['rule'] {where} must be None exactly when legal")
    if info["action"] is not None and acted["legal_actions"]:
        _require(
            info["action_text"] in acted["legal_actions"],
            f"info['action_text'] {where} is not a legal action",
        )
    _require(
        isinstance(reward, float) and math.isfinite(reward), f"the reward {where} must be a finite float"
    )


def _check_final(info: dict, rewards: list[float], num_players: int, self_play: bool, where: str) -> None:
    returns, penalties = info["returns"], info["penalties"]
    _require(
        len(returns) == num_players and len(penalties) == num_players,
        f"info['returns'] and info['penalties'] {where} must have one entry per seat",
    )
    if not self_play and info["learner_seat"] >= 0:
        seat = info["learner_seat"]
        expected = returns[seat] - penalties[seat]
        _require(
            math.isclose(sum(rewards), expected, abs_tol=1e-9),
            f"the learner's rewards sum to {sum(rewards)} {where}, not returns - penalties = {expected}",
        )


def _answer(obs: dict, rng: np.random.Generator) -> str | int:
    """A random answer: an index or a legal text, sometimes junk; free-form envs get a number."""
    legal = obs["legal_actions"]
    if not legal:
        return str(int(rng.integers(100)))
    roll = rng.random()
    if roll < 0.1:
        return "?"
    if roll < 0.5:
        return int(rng.integers(len(legal)))
    return legal[int(rng.integers(len(legal)))]


def _check_replay(env: Any, seed: int, point: tuple[dict, dict], self_play: bool) -> None:
    """``reset(options={"history": ...})`` from a saved decision point shows the same observation."""
    obs, info = point
    options: dict[str, Any] = {"history": list(info["history"])}
    if not self_play:
        options["learner_seat"] = info["learner_seat"]
    replayed, replay_info = env.reset(seed=seed, options=options)
    _require(
        replayed == obs,
        f"reset(options={{'history': ...}}) (seed {seed}) does not show the observation of that history",
    )
    _require(replay_info["history"] == info["history"], "reset(options={'history': ...}) changed the history")


def _play(env: Any, seed: int, max_steps: int) -> None:
    """Play one random episode from ``reset(seed=seed)``, checking every rule on the way."""
    rng = np.random.default_rng(seed)
    base = getattr(env, "unwrapped", env)
    self_play = base.opponent == "self"
    obs, info = env.reset(seed=seed)
    over = FINAL_INFO_KEYS[0] in info
    _check_observation(obs, over, f"after reset(seed={seed})")
    _check_info(info, RESET_INFO_KEYS, over, f"after reset(seed={seed})")
    points, rewards = [(obs, info)] if not over else [], []
    for step in range(max_steps):
        if over:
            break
        where = f"at step {step} (seed {seed})"
        acted = obs
        obs, reward, terminated, truncated, info = env.step(_answer(obs, rng))
        over = bool(terminated or truncated)
        _check_observation(obs, over, where)
        _check_info(info, STEP_INFO_KEYS, over, where)
        _check_step(obs, reward, info, acted, where)
        rewards.append(float(reward))
        if not over and info["history"] != points[-1][1]["history"]:
            points.append((obs, info))
    _require(over, f"the episode of seed {seed} did not end within {max_steps} steps")
    _check_final(info, rewards, base.num_players, self_play, f"at the end (seed {seed})")
    if points:
        _check_replay(env, seed, points[len(points) // 2], self_play)


def check_env_contract(env: Any, seeds: Iterable[int] = (0, 1, 2), max_steps: int = 500) -> None:
    """Play one random episode per seed and check every rule of :class:`LightspielEnv` on the way.

    Answers are random: indices into ``legal_actions``, legal texts and, now and then, an answer
    that names no move. For every episode it also checks that the learner's rewards add up to its
    return minus its penalties and that ``reset(options={"history": ...})`` from a decision point
    of the episode shows the same observation again. Reset options are validated too.

    Args:
        env: The env as the rollout engine gets it (``gymnasium.make(...)``: ``reset`` and ``step``
            are called on it, the attributes are read from ``env.unwrapped``) or the env itself.
        seeds: One episode per seed.
        max_steps: Steps an episode may take before it counts as never ending.

    Raises:
        AssertionError: A broken rule (the message names the key or the rule).
        ValueError: The env is missing an attribute of the contract.
    """
    base = getattr(env, "unwrapped", env)
    for name in ("opponent", "num_players", "reset", "step"):
        if not hasattr(base, name):
            raise ValueError(f"env contract: the env has no {name!r} (see envs.contract.LightspielEnv)")
    _require(isinstance(base.opponent, str), "the env's 'opponent' must be a str")
    for seed in seeds:
        _play(env, int(seed), max_steps)
    for bad, name in (({"no_such_option": 1}, "no_such_option"), ({"history": "x"}, "history")):
        try:
            env.reset(seed=0, options=bad)
        except ValueError as err:
            _require(name in str(err), f"reset's ValueError for option {name!r} does not name it: {err}")
        else:
            raise AssertionError(f"env contract: reset(options={bad!r}) must raise ValueError")
