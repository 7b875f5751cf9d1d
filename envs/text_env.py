"""A Gymnasium text environment over OpenSpiel games, played by a language model."""

from __future__ import annotations

import difflib
import functools
import math
import string
from typing import Any, ClassVar, SupportsFloat

import gymnasium as gym
import numpy as np
import pyspiel
from gymnasium import spaces

from envs.agents import AGENT_NAMES, Agent, make_agent
from envs.renderers import INVALID_ACTION, Renderer, renderer_for

__all__ = [
    "ACTION_CHARSET",
    "CHARSET",
    "ILLEGAL_RULES",
    "MAX_ACTION_TEXT_CHARS",
    "MAX_ANSWER_CHARS",
    "MAX_PROMPT_CHARS",
    "OPPONENTS",
    "OpenSpielTextEnv",
    "load_game",
    "state_from_history",
]

#: Characters that may appear in prompts and action strings: printable ASCII plus newline.
#: Any other character coming out of a renderer is replaced (tab -> space, others -> ``?``).
CHARSET: str = "".join(chr(c) for c in range(0x20, 0x7F)) + "\n"
#: Characters of the declared action space: printable ASCII plus whitespace (``step`` accepts any
#: ``str`` regardless).
ACTION_CHARSET: str = string.printable

MAX_PROMPT_CHARS: int = 8192
MAX_ACTION_TEXT_CHARS: int = 256
#: ``step`` hands at most this many leading characters of a text answer to the renderer.
MAX_ANSWER_CHARS: int = 4096

ILLEGAL_RULES: tuple[str, ...] = ("random", "forfeit", "retry")
OPPONENTS: tuple[str, ...] = (*AGENT_NAMES, "self")

_CHARSET_SET = frozenset(CHARSET)


def _clean(text: str, limit: int) -> str:
    """Force ``text`` into :data:`CHARSET` and at most ``limit`` characters."""
    if not all(c in _CHARSET_SET for c in text):
        text = "".join(
            c if c in _CHARSET_SET else (" " if c == "\t" else "?") for c in text.replace("\r", "")
        )
    return text[:limit]


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


@functools.lru_cache(maxsize=128)
def load_game(game: str) -> pyspiel.Game:
    """Load (and cache) an OpenSpiel game from its game string, e.g. ``"connect_four"`` or
    ``"kuhn_poker(players=3)"``.

    Args:
        game: An OpenSpiel game string.

    Returns:
        The loaded game.

    Raises:
        ValueError: Unknown game name (the message suggests close registered names) or parameters
            OpenSpiel rejects.
    """
    if not isinstance(game, str):
        raise ValueError(f"game must be an OpenSpiel game string, got {game!r}")
    name = game.split("(", 1)[0].strip()
    registered = pyspiel.registered_names()
    if name not in registered:
        close = difflib.get_close_matches(name, registered, n=5, cutoff=0.5)
        hint = f"did you mean {', '.join(repr(c) for c in close)}? " if close else ""
        raise ValueError(
            f"unknown OpenSpiel game {game!r}; {hint}"
            f"(pyspiel.registered_names() lists all {len(registered)} games)"
        )
    try:
        return pyspiel.load_game(game)
    except pyspiel.SpielError as err:
        raise ValueError(f"cannot load OpenSpiel game {game!r}: {err}") from err


def state_from_history(game: str, history: list[int]) -> pyspiel.State:
    """Rebuild a state by replaying ``history`` (e.g. ``info["history"]``) from the initial state.

    Args:
        game: The OpenSpiel game string (e.g. ``info["game"]``).
        history: Action ids as returned by ``state.history()`` (sequential games).

    Returns:
        A fresh ``pyspiel.State``.

    Raises:
        ValueError: Unknown game, or an action that is not legal where it is replayed.
    """
    state = load_game(game).new_initial_state()
    for i, action in enumerate(history):
        try:
            state.apply_action(int(action))
        except pyspiel.SpielError as err:
            raise ValueError(f"cannot replay action {action!r} at position {i} of {game!r}: {err}") from err
    return state


class OpenSpielTextEnv(gym.Env[dict[str, Any], str]):
    """Play an OpenSpiel game as text, with the language model as the learner.

    ## Description
    Any OpenSpiel game (``pyspiel.load_game(game)``) rendered as text by a game-specific
    :class:`~envs.renderers.Renderer` (a generic one built from OpenSpiel's own strings for games
    without a dedicated renderer). The learner occupies one seat and a built-in opponent agent plays
    all other seats inside the environment; with ``opponent="self"`` the learner drives every seat
    (self-play). Chance nodes are sampled from ``self.np_random``.

    ## Observation
    A dict:

    - ``"prompt"`` (``str``): what the seat to move reads (at the end: the final board);
    - ``"legal_actions"`` (``tuple[str, ...]``): canonical texts of the legal actions, in
      OpenSpiel's ``legal_actions()`` order (empty at the end);
    - ``"seat"`` (``int``): the seat to move (at the end: the seat that acted last).

    Strings are restricted to :data:`CHARSET` (printable ASCII and newline).

    ## Action
    A ``str`` answer, parsed by the renderer (any string is accepted; only its first
    :data:`MAX_ANSWER_CHARS` characters are read), or an ``int`` index into the current
    observation's ``legal_actions`` (out of range counts as illegal).

    An illegal or unparsed answer costs ``illegal_penalty`` and then, by ``illegal_rule``:
    ``"random"`` plays a uniformly random legal move; ``"forfeit"`` ends the game with the acting seat
    losing (it gets ``game.min_utility()``; in two-player zero-sum games the other seat gets the
    negation, otherwise the others get 0); ``"retry"`` returns the same observation for another
    answer, and the ``max_retries + 1``-th failed answer on one decision plays a random legal move.

    ## Rewards
    For the seat that acted: the change of its OpenSpiel return during the step (its own move, the
    opponents' replies and chance until its next turn or the end), minus the penalty of this step.
    In self-play, ``info["returns"]`` at the end holds the outcome for every seat.

    ## Episode End
    Terminated when the game ends or on a forfeit. Truncated once the learner has made ``max_turns``
    decisions (retries do not count) without the game ending.

    ## Info
    Always: ``game``, ``seat`` (seat to move, -1 when terminal), ``learner_seat`` (-1 in self-play),
    ``history`` (``state.history()`` of the observed state). After ``reset`` also
    ``opponent_actions``. After ``step`` also ``acting_seat``, ``action``, ``action_text``,
    ``parsed``, ``legal``, ``outcome``, ``rule``, ``penalty``, ``retries``, ``opponent_actions``;
    and when the episode ends ``returns`` and ``penalties`` (per seat).

    ## Arguments
    See ``__init__``. ``reset(options={"learner_seat": k})`` fixes the learner's seat for one
    episode.
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
    ):
        """Create the environment.

        Args:
            game: OpenSpiel game string, e.g. ``"tic_tac_toe"`` or ``"kuhn_poker(players=3)"``.
            opponent: Who plays the other seats: ``"random"``, ``"mcts"``, ``"minimax"``,
                ``"heuristic"`` (tic-tac-toe only) or ``"self"`` (the learner plays every seat).
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

        Raises:
            ValueError: An unknown game or an invalid option value.
        """
        self.game_name = game
        self.game = load_game(game)
        self.num_players = self.game.num_players()
        if opponent not in OPPONENTS:
            raise ValueError(f"opponent must be one of {', '.join(OPPONENTS)}; got {opponent!r}")
        self.opponent = opponent
        self.self_play = opponent == "self"
        self.learner_seat = self._check_seat(learner_seat, "learner_seat")
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
        if not _is_int(mcts_simulations) or mcts_simulations < 1:
            raise ValueError(f"mcts_simulations must be an int >= 1; got {mcts_simulations!r}")
        self.mcts_simulations = int(mcts_simulations)
        if max_turns is not None and (not _is_int(max_turns) or max_turns < 1):
            raise ValueError(f"max_turns must be None or an int >= 1; got {max_turns!r}")
        self.max_turns = None if max_turns is None else int(max_turns)
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"render_mode must be None or one of {', '.join(self.metadata['render_modes'])}; "
                f"got {render_mode!r}"
            )
        self.render_mode = render_mode

        self.renderer: Renderer = renderer_for(self.game)
        self.opponent_agent: Agent | None = (
            None
            if self.self_play
            else make_agent(opponent, self.game, mcts_simulations=self.mcts_simulations)
        )

        self.observation_space = spaces.Dict(
            {
                "prompt": spaces.Text(max_length=MAX_PROMPT_CHARS, min_length=0, charset=CHARSET),
                "legal_actions": spaces.Sequence(
                    spaces.Text(max_length=MAX_ACTION_TEXT_CHARS, min_length=1, charset=CHARSET), stack=False
                ),
                "seat": spaces.Discrete(self.num_players),
            }
        )
        self.action_space = spaces.Text(max_length=4096, min_length=0, charset=ACTION_CHARSET)

        self._state: pyspiel.State | None = None
        self._learner = -1
        self._legal: list[int] = []
        self._legal_texts: tuple[str, ...] = ()
        self._penalties = [0.0] * self.num_players
        self._turns = 0
        self._retries = 0
        self._done = False
        self._forfeit_returns: list[float] | None = None
        self._last_seat = 0

    # ------------------------------------------------------------------ validation helpers

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

    # ------------------------------------------------------------------ public API

    @property
    def state(self) -> pyspiel.State | None:
        """A clone of the current OpenSpiel state (``None`` before the first reset)."""
        return None if self._state is None else self._state.clone()

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Start a new game; opponents and chance move until it is the learner's turn.

        Args:
            seed: Reseeds ``self.np_random`` (all randomness of the episode comes from it).
            options: ``{"learner_seat": int | None}`` overrides the learner's seat for this episode.

        Returns:
            The first observation and the info dict.
        """
        super().reset(seed=seed)
        options = dict(options or {})
        seat = self._check_seat(options.pop("learner_seat", self.learner_seat), "options['learner_seat']")
        if options:
            raise ValueError(f"unknown reset options {sorted(options)}; the only option is 'learner_seat'")
        if self.self_play:
            self._learner = -1
        elif seat is None:
            self._learner = int(self.np_random.integers(self.num_players))
        else:
            self._learner = seat
        self._state = self.game.new_initial_state()
        self._penalties = [0.0] * self.num_players
        self._turns = 0
        self._retries = 0
        self._forfeit_returns = None
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
        state = self._state
        acting = state.current_player()
        before = float(state.returns()[acting])

        chosen, parsed = self._interpret(action, acting)
        legal = chosen is not None and chosen in self._legal
        outcome = "ok" if legal else ("illegal" if parsed else "unparsed")
        penalty, rule, applied = 0.0, None, None
        if legal:
            applied = chosen
        else:
            penalty = self.illegal_penalty
            self._penalties[acting] += penalty
            self._retries += 1
            if self.illegal_rule == "forfeit":
                rule = "forfeit"
                self._forfeit_returns = self._forfeit(acting)
            elif self.illegal_rule == "retry" and self._retries <= self.max_retries:
                rule = "retry"
            else:
                rule = "random"
                applied = self._legal[int(self.np_random.integers(len(self._legal)))]
        retries = self._retries

        action_text = None
        opponent_actions: list[list[Any]] = []
        if applied is not None:
            action_text = self._legal_texts[self._legal.index(applied)]
            state.apply_action(applied)
            self._turns += 1
            self._retries = 0
            opponent_actions = self._advance()

        terminated = self._forfeit_returns is not None or state.is_terminal()
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
        """With ``render_mode="ansi"``: the current board as text."""
        if self.render_mode != "ansi" or self._state is None:
            return None
        return _clean(self.renderer.board(self._state), MAX_PROMPT_CHARS)

    # ------------------------------------------------------------------ game progression

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

    def _advance(self) -> list[list[Any]]:
        """Apply chance outcomes and opponent moves until the learner must act or the game ends."""
        state = self._state
        moves: list[list[Any]] = []
        while not state.is_terminal():
            if state.is_chance_node():
                self._play_chance(state)
            elif state.is_simultaneous_node():
                self._play_simultaneous(state)
            elif state.current_player() < 0:
                raise NotImplementedError(
                    f"{self.game_name!r}: nodes with current_player={state.current_player()} "
                    "are not supported"
                )
            elif self.self_play or state.current_player() == self._learner:
                break
            else:
                moves.append(self._play_opponent(state))
        return moves

    def _play_chance(self, state: pyspiel.State) -> None:
        outcomes = state.chance_outcomes()
        probs = np.asarray([p for _, p in outcomes], dtype=np.float64)
        index = int(self.np_random.choice(len(outcomes), p=probs / probs.sum()))
        state.apply_action(outcomes[index][0])

    def _play_simultaneous(self, state: pyspiel.State) -> None:
        raise NotImplementedError(
            f"{self.game_name!r} has simultaneous-move nodes, which OpenSpielTextEnv does not support yet; "
            "load it turn-based instead, e.g. 'turn_based_simultaneous_game(game=...)'"
        )

    def _play_opponent(self, state: pyspiel.State) -> list[Any]:
        player = state.current_player()
        action = int(self.opponent_agent.step(state, self.np_random))
        text = _clean(self.renderer.action_text(state, player, action), MAX_ACTION_TEXT_CHARS)
        state.apply_action(action)
        return [player, action, text]

    def _forfeit(self, seat: int) -> list[float]:
        loss = float(self.game.min_utility())
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

    def _observation(self) -> dict[str, Any]:
        state = self._state
        if self._forfeit_returns is not None or state.is_terminal():
            self._legal, self._legal_texts = [], ()
            prompt = self.renderer.board(state)
            seat = self._last_seat
        else:
            seat = state.current_player()
            self._legal = [int(a) for a in state.legal_actions(seat)]
            texts = []
            for a in self._legal:
                text = _clean(self.renderer.action_text(state, seat, a), MAX_ACTION_TEXT_CHARS)
                texts.append(text or str(a))
            self._legal_texts = tuple(texts)
            prompt = self.renderer.prompt(state, seat)
        return {
            "prompt": _clean(prompt, MAX_PROMPT_CHARS),
            "legal_actions": self._legal_texts,
            "seat": int(seat),
        }

    def _info(self) -> dict[str, Any]:
        state = self._state
        over = self._forfeit_returns is not None or state.is_terminal()
        return {
            "game": self.game_name,
            "seat": -1 if over else int(state.current_player()),
            "learner_seat": self._learner,
            "history": [int(a) for a in state.history()],
        }

    def _final_info(self) -> dict[str, Any]:
        return {"returns": self._returns(), "penalties": list(self._penalties)}
