"""A Gymnasium text environment over OpenSpiel games, played by a language model."""

from __future__ import annotations

import math
from typing import Any, ClassVar, SupportsFloat

import gymnasium as gym
import numpy as np
import pyspiel
from gymnasium import spaces

from envs.agents import AGENT_NAMES, Agent, make_agent
from envs.contract import RESET_OPTIONS
from envs.core import (
    ACTION_CHARSET,
    CHARSET,
    MAX_ACTION_TEXT_CHARS,
    MAX_ANSWER_CHARS,
    MAX_PROMPT_CHARS,
    clean,
    load_game,
    observe,
    renderer_for,
    state_from_history,
)
from envs.games.base import INVALID_ACTION, Renderer

__all__ = [
    "COOPERATIVE_GAMES",
    "ILLEGAL_RULES",
    "OPPONENTS",
    "OpenSpielTextEnv",
]

ILLEGAL_RULES: tuple[str, ...] = ("random", "forfeit", "retry")
OPPONENTS: tuple[str, ...] = (*AGENT_NAMES, "self")

#: Games whose seats always share one reward (besides those OpenSpiel marks ``IDENTICAL``).
COOPERATIVE_GAMES: tuple[str, ...] = ("lewis_signaling", "trade_comm")


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


class OpenSpielTextEnv(gym.Env[dict[str, Any], str]):
    """Play an OpenSpiel game as text, with the language model as the learner.

    ## Description
    Any OpenSpiel game (``pyspiel.load_game(game)``; lightspiel's own games in :mod:`envs.games`
    too) rendered as text by a game-specific :class:`~envs.games.base.Renderer` (a generic one built
    from OpenSpiel's own observation / information-state and action strings for games without a
    dedicated renderer). Sequential and simultaneous-move games, chance nodes and any number of
    players are supported. The learner occupies one seat and a built-in opponent agent plays all
    other seats inside the environment; with ``opponent="self"`` the learner drives every seat
    (self-play). Chance nodes are sampled from ``self.np_random``.

    Simultaneous-move nodes: the learner's seats (its one seat, or every seat in self-play) answer
    one at a time, lowest seat first, each seeing the same (not yet changed) state; a chosen action
    is held back until every learner seat at the node has answered; then the opponents pick theirs
    (without seeing the learner's) and the joint action is applied. Each answer is one step (and one
    decision for ``max_turns``); the steps before the joint action is applied have no game reward.

    ## Observation
    A dict:

    - ``"prompt"`` (``str``): what the seat to move reads (at the end: the final view of the seat
      that acted last; for imperfect-information games it still hides what that seat cannot see);
    - ``"legal_actions"`` (``tuple[str, ...]``): canonical texts of the legal actions, in
      OpenSpiel's ``legal_actions()`` order (empty at the end);
    - ``"seat"`` (``int``): the seat to move (at the end: the seat that acted last).

    Strings are restricted to :data:`CHARSET` (printable ASCII and newline). A seat's prompt never
    contains information hidden from that seat.

    ## Action
    A ``str`` answer, parsed by the renderer (any string is accepted; only its first
    :data:`MAX_ANSWER_CHARS` characters are read; ``bytes`` are decoded as UTF-8), or an ``int``
    index into the current observation's ``legal_actions`` (out of range counts as illegal).

    An illegal or unparsed answer costs ``illegal_penalty`` and then, by ``illegal_rule``:
    ``"random"`` plays a uniformly random legal move; ``"forfeit"`` ends the game with the acting seat
    losing (it gets ``game.min_utility()``; in two-player zero-sum games the other seat gets the
    negation, in cooperative games (:data:`COOPERATIVE_GAMES`, or OpenSpiel's ``IDENTICAL`` utility)
    every seat gets ``min_utility()``, otherwise the others get 0); ``"retry"`` returns the same
    observation for another answer, and the ``max_retries + 1``-th failed answer on one decision
    plays a random legal move.

    ## Rewards
    For the seat that acted: the change of its OpenSpiel return during the step (its own move, the
    opponents' replies and chance until its next turn or the end), minus the penalty of this step.
    In self-play, ``info["returns"]`` at the end holds the outcome for every seat (in cooperative
    games every seat's return is the same shared reward).

    ## Episode End
    Terminated when the game ends or on a forfeit. Truncated once the learner has made ``max_turns``
    decisions (retries do not count) without the game ending.

    ## Info
    Always: ``game``, ``seat`` (seat to move, -1 when over), ``learner_seat`` (-1 in self-play),
    ``history`` (``state.history()`` of the observed state), ``simultaneous`` (the decision is at a
    simultaneous-move node), plus game-specific public facts from the renderer (repeated poker:
    ``bankrolls`` per seat and ``round``, the hand number). After ``reset`` also
    ``opponent_actions``. After ``step`` also ``acting_seat``, ``action``, ``action_text``,
    ``parsed``, ``legal``, ``outcome``, ``rule``, ``penalty``, ``retries``, ``opponent_actions``
    (``[seat, action id, action text]`` for every opponent move applied); and when the episode ends
    ``returns`` and ``penalties`` (per seat).

    ## Arguments
    See ``__init__``. ``reset(options={"learner_seat": k})`` fixes the learner's seat for one
    episode; ``reset(options={"history": [...]})`` starts from a saved OpenSpiel action history
    (e.g. an earlier ``info["history"]``) instead of the initial state.

    The keys and options above are the env contract every lightspiel env keeps: see
    :mod:`envs.contract`.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(
        self,
        game: str = "tic_tac_toe",
        opponent: str = "random",
        learner_seat: int | None = None,
        illegal_rule: str = "random",
        illegal_penalty: float = 1.0,
        max_retries: int = 2,
        mcts_simulations: int = 100,
        max_turns: int | None = None,
        render_mode: str | None = None,
        mcts_determinizations: int = 4,
    ):
        """Create the environment.

        Args:
            game: OpenSpiel game string, e.g. ``"tic_tac_toe"``, ``"kuhn_poker(players=3)"`` or
                ``"breakthrough(rows=6,columns=6)"``.
            opponent: Who plays the other seats: ``"random"``, ``"mcts"``, ``"minimax"``,
                ``"heuristic"`` (games in :data:`~envs.registry.HEURISTIC_GAMES`) or ``"self"`` (the
                learner plays every seat).
            learner_seat: The learner's seat; ``None`` draws it uniformly at each reset. Must be
                ``None`` in self-play.
            illegal_rule: What an illegal or unparsed answer leads to: ``"random"``, ``"forfeit"``
                or ``"retry"``.
            illegal_penalty: Subtracted from the step reward for every illegal or unparsed answer.
            max_retries: With ``"retry"``: failed answers allowed on one decision before a random
                legal move is played.
            mcts_simulations: Simulations per move of the ``"mcts"`` opponent.
            max_turns: Truncate after this many learner decisions (``None``: never).
            render_mode: ``None`` or ``"ansi"``.
            mcts_determinizations: Imperfect-information games: states the ``"mcts"`` opponent
                resamples and searches per move (see :class:`~envs.agents.MCTSAgent`).

        Raises:
            ValueError: An unknown game, an opponent that cannot play the game, or an invalid
                option value.
        """
        self.game_name = game
        self.game = load_game(game)
        self.num_players = self.game.num_players()
        if opponent not in OPPONENTS:
            raise ValueError(f"opponent must be one of {', '.join(OPPONENTS)}; got {opponent!r}")
        self.opponent = opponent
        self.self_play = opponent == "self"
        self.learner_seat = self._check_seat(learner_seat, "learner_seat")
        self._set_rules(illegal_rule, illegal_penalty, max_retries)
        self._set_limits(mcts_simulations, mcts_determinizations, max_turns, render_mode)
        self.cooperative = self._check_game()
        self.renderer: Renderer = renderer_for(self.game)
        self.opponent_agent: Agent | None = None if self.self_play else self._make_opponent()
        self.observation_space, self.action_space = self._spaces()
        self._state: pyspiel.State | None = None
        self._learner, self._last_seat, self._done = -1, 0, False
        self._legal: list[int] = []
        self._legal_texts: tuple[str, ...] = ()
        self._clear_episode()

    # ------------------------------------------------------------------ validation helpers

    def _set_rules(self, illegal_rule: Any, illegal_penalty: Any, max_retries: Any) -> None:
        """Validate and store the illegal-answer rule, its penalty and the retries allowed."""
        if illegal_rule not in ILLEGAL_RULES:
            raise ValueError(f"illegal_rule must be one of {', '.join(ILLEGAL_RULES)}; got {illegal_rule!r}")
        self.illegal_rule = illegal_rule
        if isinstance(illegal_penalty, bool) or not isinstance(illegal_penalty, (int, float, np.number)):
            raise ValueError(f"illegal_penalty must be a finite number; got {illegal_penalty!r}")
        if not math.isfinite(float(illegal_penalty)):
            raise ValueError(f"illegal_penalty must be a finite number; got {illegal_penalty!r}")
        self.illegal_penalty = float(illegal_penalty)
        if not _is_int(max_retries) or max_retries < 0:
            raise ValueError(f"max_retries must be an int >= 0; got {max_retries!r}")
        self.max_retries = int(max_retries)

    def _set_limits(
        self, mcts_simulations: Any, mcts_determinizations: Any, max_turns: Any, render_mode: Any
    ) -> None:
        """Validate and store the MCTS opponent's settings, ``max_turns`` and ``render_mode``."""
        if not _is_int(mcts_simulations) or mcts_simulations < 1:
            raise ValueError(f"mcts_simulations must be an int >= 1; got {mcts_simulations!r}")
        self.mcts_simulations = int(mcts_simulations)
        if not _is_int(mcts_determinizations) or mcts_determinizations < 1:
            raise ValueError(f"mcts_determinizations must be an int >= 1; got {mcts_determinizations!r}")
        self.mcts_determinizations = int(mcts_determinizations)
        if max_turns is not None and (not _is_int(max_turns) or max_turns < 1):
            raise ValueError(f"max_turns must be None or an int >= 1; got {max_turns!r}")
        self.max_turns = None if max_turns is None else int(max_turns)
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"render_mode must be None or one of {', '.join(self.metadata['render_modes'])}; "
                f"got {render_mode!r}"
            )
        self.render_mode = render_mode

    def _check_game(self) -> bool:
        """Raise ``ValueError`` for a game that cannot be played as text; return whether it is
        cooperative (every seat shares one reward)."""
        game_type = self.game.get_type()
        if game_type.dynamics not in (
            pyspiel.GameType.Dynamics.SEQUENTIAL,
            pyspiel.GameType.Dynamics.SIMULTANEOUS,
        ):
            raise ValueError(
                f"{self.game_name!r} is a {game_type.dynamics.name} game; only sequential and "
                "simultaneous-move games can be played as text"
            )
        probe = self.game.new_initial_state()
        if not (probe.is_terminal() or probe.is_chance_node() or probe.is_simultaneous_node()):
            try:
                probe.legal_actions()
            except pyspiel.SpielError as err:
                raise ValueError(f"{self.game_name!r} cannot be played as text: {err}") from err
        return (
            game_type.utility == pyspiel.GameType.Utility.IDENTICAL
            or game_type.short_name in COOPERATIVE_GAMES
        )

    def _make_opponent(self) -> Agent:
        """The agent that plays the seats the learner does not."""
        return make_agent(
            self.opponent,
            self.game,
            mcts_simulations=self.mcts_simulations,
            determinizations=self.mcts_determinizations,
        )

    def _spaces(self) -> tuple[spaces.Dict, spaces.Text]:
        """The observation and action spaces."""
        observation_space = spaces.Dict(
            {
                "prompt": spaces.Text(max_length=MAX_PROMPT_CHARS, min_length=0, charset=CHARSET),
                "legal_actions": spaces.Sequence(
                    spaces.Text(max_length=MAX_ACTION_TEXT_CHARS, min_length=1, charset=CHARSET), stack=False
                ),
                "seat": spaces.Discrete(self.num_players),
            }
        )
        return observation_space, spaces.Text(max_length=4096, min_length=0, charset=ACTION_CHARSET)

    def _check_seat(self, seat: Any, name: str) -> int | None:
        if seat is None:
            return None
        if self.self_play:
            raise ValueError(f"{name} must be None with opponent='self' (the learner plays every seat)")
        if not _is_int(seat) or not 0 <= seat < self.num_players:
            raise ValueError(
                f"{name} must be None or an int in [0, {self.num_players - 1}] for {self.game_name!r}; "
                f"got {seat!r}"
            )
        return int(seat)

    def _reset_options(self, options: dict[str, Any] | None) -> tuple[int | None, list[int] | None]:
        """The learner seat and start history of ``reset(options=...)``, validated."""
        options = dict(options or {})
        seat = self._check_seat(options.pop("learner_seat", self.learner_seat), "options['learner_seat']")
        history = options.pop("history", None)
        if options:
            raise ValueError(
                f"unknown reset options {sorted(options)}; valid options: "
                + ", ".join(repr(o) for o in RESET_OPTIONS)
            )
        if history is None:
            return seat, None
        if not isinstance(history, (list, tuple)) or not all(_is_int(a) for a in history):
            raise ValueError(
                f"options['history'] must be a list of OpenSpiel action ids (ints) such as an earlier "
                f"info['history']; got {history!r}"
            )
        return seat, [int(a) for a in history]

    def _start_state(self, history: list[int] | None) -> pyspiel.State:
        """The initial state, or the state ``history`` leads to."""
        if history is None:
            return self.game.new_initial_state()
        try:
            return state_from_history(self.game_name, history)
        except ValueError as err:
            raise ValueError(f"options['history'] cannot be replayed: {err}") from err

    def _clear_episode(self) -> None:
        """Forget the last episode's held-back answers, penalties, counters and forfeit."""
        self._pending: dict[int, int] = {}
        self._penalties = [0.0] * self.num_players
        self._turns = 0
        self._retries = 0
        self._forfeit_returns: list[float] | None = None

    # ------------------------------------------------------------------ public API

    @property
    def state(self) -> pyspiel.State | None:
        """A clone of the current OpenSpiel state (``None`` before the first reset). At a
        simultaneous-move node the learner's answers held back so far are not applied yet."""
        return None if self._state is None else self._state.clone()

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Start a new game; opponents and chance move until it is the learner's turn.

        Args:
            seed: Reseeds ``self.np_random`` (all randomness of the episode comes from it).
            options: ``{"learner_seat": int | None}`` overrides the learner's seat for this episode;
                ``{"history": list[int]}`` starts from the state that OpenSpiel action history leads
                to (an earlier ``info["history"]``, replayed as by :func:`~envs.core.state_from_history`)
                instead of the initial state; then opponents and chance move as usual.

        Returns:
            The first observation and the info dict.

        Raises:
            ValueError: An unknown option, or a value that is not valid for it (the message names
                the option).
        """
        super().reset(seed=seed)
        seat, history = self._reset_options(options)
        if self.self_play:
            self._learner = -1
        elif seat is None:
            self._learner = int(self.np_random.integers(self.num_players))
        else:
            self._learner = seat
        self._state = self._start_state(history)
        self._clear_episode()
        self._last_seat = max(self._learner, 0)
        opponent_actions = self._advance()
        self._done = self._state.is_terminal()
        observation = self._observation()
        info = self._info()
        info["opponent_actions"] = opponent_actions
        if self._done:
            info.update(self._final_info())
        return observation, info

    def step(self, action: str | int) -> tuple[dict[str, Any], SupportsFloat, bool, bool, dict[str, Any]]:
        """Play the learner's answer for the seat to move.

        Args:
            action: The answer text, or an index into the observation's ``legal_actions``.

        Returns:
            ``(observation, reward, terminated, truncated, info)``.
        """
        if self._state is None:
            raise RuntimeError("call reset() before step()")
        if self._done:
            raise RuntimeError("the episode is over; call reset() before step()")
        acting = self._to_move()
        before = float(self._returns()[acting])

        chosen, parsed = self._interpret(action, acting)
        legal = chosen is not None and chosen in self._legal
        outcome = "ok" if legal else ("illegal" if parsed else "unparsed")
        applied, penalty, rule = (chosen, 0.0, None) if legal else self._fail(acting)
        retries = self._retries
        action_text, opponent_actions = self._apply(acting, applied)

        terminated = self._forfeit_returns is not None or self._state.is_terminal()
        truncated = not terminated and self.max_turns is not None and self._turns >= self.max_turns
        self._done = terminated or truncated
        self._last_seat = acting
        reward = self._returns()[acting] - before - penalty

        observation = self._observation()
        info = self._info()
        info.update(
            acting_seat=acting,
            action=applied,
            action_text=action_text,
            parsed=parsed,
            legal=legal,
            outcome=outcome,
            rule=rule,
            penalty=penalty,
            retries=retries,
            opponent_actions=opponent_actions,
        )
        if self._done:
            info.update(self._final_info())
        return observation, float(reward), bool(terminated), bool(truncated), info

    def render(self) -> str | None:
        """With ``render_mode="ansi"``: the current board as text (for a human watcher: it may
        show hidden information)."""
        if self.render_mode != "ansi" or self._state is None:
            return None
        return clean(self.renderer.board(self._state), MAX_PROMPT_CHARS)

    # ------------------------------------------------------------------ game progression

    def _is_learner(self, seat: int) -> bool:
        return self.self_play or seat == self._learner

    def _waiting_learner_seats(self, state: pyspiel.State) -> list[int]:
        """Learner seats that still owe an answer at a simultaneous-move node."""
        return [
            seat
            for seat in range(self.num_players)
            if self._is_learner(seat) and seat not in self._pending and state.legal_actions(seat)
        ]

    def _to_move(self) -> int:
        """The seat the learner answers for now."""
        state = self._state
        if state.is_simultaneous_node():
            return self._waiting_learner_seats(state)[0]
        return state.current_player()

    def _interpret(self, action: Any, acting: int) -> tuple[int | None, bool]:
        """Map the learner's action to ``(action id or None, parsed)``."""
        if isinstance(action, (bytes, bytearray)):
            action = bytes(action[: 4 * MAX_ANSWER_CHARS]).decode("utf-8", errors="replace")
        if isinstance(action, str):
            chosen = self.renderer.parse(action[:MAX_ANSWER_CHARS], self._state, acting)
            return (None, False) if chosen is None else (int(chosen), True)
        if _is_int(action):
            index = int(action)
            if 0 <= index < len(self._legal):
                return self._legal[index], True
            return INVALID_ACTION, True
        raise TypeError(
            f"action must be a str answer or an int index into legal_actions, got {type(action).__name__}"
        )

    def _fail(self, acting: int) -> tuple[int | None, float, str]:
        """Charge the penalty for a failed answer and apply ``illegal_rule``: ``(action to play or
        None, penalty, rule)``."""
        penalty = self.illegal_penalty
        self._penalties[acting] += penalty
        self._retries += 1
        if self.illegal_rule == "forfeit":
            self._forfeit_returns = self._forfeit(acting)
            return None, penalty, "forfeit"
        if self.illegal_rule == "retry" and self._retries <= self.max_retries:
            return None, penalty, "retry"
        return self._legal[int(self.np_random.integers(len(self._legal)))], penalty, "random"

    def _apply(self, acting: int, applied: int | None) -> tuple[str | None, list[list[Any]]]:
        """Play ``applied`` for ``acting`` (held back at a simultaneous-move node), then the
        opponents and chance: ``(its action text, the opponents' moves)``."""
        if applied is None:
            return None, []
        action_text = self._legal_texts[self._legal.index(applied)]
        if self._state.is_simultaneous_node():
            self._pending[acting] = applied  # applied with the others' once all have chosen
        else:
            self._state.apply_action(applied)
        self._turns += 1
        self._retries = 0
        return action_text, self._advance()

    def _advance(self) -> list[list[Any]]:
        """Apply chance outcomes and opponent moves until the learner must act or the game ends."""
        state = self._state
        moves: list[list[Any]] = []
        while not state.is_terminal():
            if state.is_chance_node():
                self._play_chance(state)
            elif state.is_simultaneous_node():
                if self._waiting_learner_seats(state):
                    break
                moves += self._play_simultaneous(state)
            elif state.current_player() < 0:
                raise NotImplementedError(
                    f"{self.game_name!r}: nodes with current_player={state.current_player()} "
                    "are not supported"
                )
            elif self._is_learner(state.current_player()):
                break
            else:
                moves.append(self._play_opponent(state))
        return moves

    def _play_chance(self, state: pyspiel.State) -> None:
        outcomes = state.chance_outcomes()
        probs = np.asarray([p for _, p in outcomes], dtype=np.float64)
        index = int(self.np_random.choice(len(outcomes), p=probs / probs.sum()))
        state.apply_action(outcomes[index][0])

    def _play_simultaneous(self, state: pyspiel.State) -> list[list[Any]]:
        """Opponents choose for their seats; the joint action (with the learner's held-back
        choices) is applied."""
        joint, moves = [], []
        for seat in range(self.num_players):
            if seat in self._pending:
                joint.append(self._pending[seat])
                continue
            legal = state.legal_actions(seat)
            if not legal:
                joint.append(pyspiel.INVALID_ACTION)
                continue
            if self._is_learner(seat):  # cannot happen: learner seats with moves are asked first
                raise RuntimeError(f"learner seat {seat} has not chosen at a simultaneous node")
            action = int(self.opponent_agent.step(state, self.np_random, player=seat))
            text = clean(self.renderer.action_text(state, seat, action), MAX_ACTION_TEXT_CHARS)
            joint.append(action)
            moves.append([seat, action, text])
        self._pending = {}
        state.apply_actions(joint)
        return moves

    def _play_opponent(self, state: pyspiel.State) -> list[Any]:
        player = state.current_player()
        action = int(self.opponent_agent.step(state, self.np_random))
        text = clean(self.renderer.action_text(state, player, action), MAX_ACTION_TEXT_CHARS)
        state.apply_action(action)
        return [player, action, text]

    def _forfeit(self, seat: int) -> list[float]:
        loss = float(self.game.min_utility())
        if self.cooperative:
            return [loss] * self.num_players
        returns = [0.0] * self.num_players
        returns[seat] = loss
        zero_sum = self.game.get_type().utility == pyspiel.GameType.Utility.ZERO_SUM
        if self.num_players == 2 and zero_sum:
            returns[1 - seat] = -loss
        return returns

    def _returns(self) -> list[float]:
        if self._forfeit_returns is not None:
            return list(self._forfeit_returns)
        return [float(r) for r in self._state.returns()]

    # ------------------------------------------------------------------ observation / info

    def _over(self) -> bool:
        return self._forfeit_returns is not None or self._state.is_terminal()

    def _observation(self) -> dict[str, Any]:
        state = self._state
        if self._over():
            self._legal, self._legal_texts = [], ()
            seat = self._last_seat
            prompt = clean(self.renderer.final(state, seat), MAX_PROMPT_CHARS)
        else:
            seat = self._to_move()
            prompt, self._legal, self._legal_texts = observe(state, seat, self.renderer)
        return {"prompt": prompt, "legal_actions": self._legal_texts, "seat": int(seat)}

    def _info(self) -> dict[str, Any]:
        state = self._state
        over = self._over()
        info = {
            "game": self.game_name,
            "seat": -1 if over else int(self._to_move()),
            "learner_seat": self._learner,
            "history": [int(a) for a in state.history()],
            "simultaneous": bool(not over and state.is_simultaneous_node()),
        }
        info.update(self.renderer.info(state))
        return info

    def _final_info(self) -> dict[str, Any]:
        return {"returns": self._returns(), "penalties": list(self._penalties)}
