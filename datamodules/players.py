"""Who sits in a seat: the players the rollout engine asks for moves.

The engine gives each seat of a game a player. Two kinds exist:

- :class:`PolicyPlayer`: anything with ``act(observations, mode=, greedy=, temperature=) -> [Action]``
  (``modules.Policy``, a frozen snapshot, another model): it reads the text observation. Observations
  of all seats held by one policy player in one wave go to one batched ``act`` call.
- :class:`AgentPlayer`: a built-in agent of :mod:`envs` (``random``, ``heuristic``, ``mcts``,
  ``minimax``): it reads the OpenSpiel state, not the text.

Only turns of players with ``learner=True`` are training data; every turn is recorded with its
player's name. Opponents inside the env (``env_kwargs.opponent``) remain a convenience over this: the
engine seats the policy in the learner's seat and lets the env play the others.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from modules.errors import ConfigError, check_choice
from modules.modes import check_mode

__all__ = ["Actor", "AdapterActor", "AgentPlayer", "Player", "PolicyPlayer", "seats_for"]


@runtime_checkable
class Actor(Protocol):
    """What a policy player needs: one batched call from text observations to actions."""

    def act(
        self, observations: list[dict], mode: str = ..., greedy: bool = ..., temperature: float | None = ...
    ) -> list[Any]: ...


class AdapterActor:
    """The policy acting with one of its frozen adapters (a past snapshot of the trained one): the
    same network, the adapter switched for the call, no copy of the weights.

    Args:
        policy: A ``modules.Policy`` holding the adapter (``Policy.snapshot_adapter``).
        adapter: The adapter's name.
    """

    def __init__(self, policy, adapter: str) -> None:
        if adapter not in policy.model.peft_config:
            raise ConfigError(
                f"no adapter {adapter!r} in the policy; have {sorted(policy.model.peft_config)}"
            )
        self.policy, self.adapter = policy, adapter

    def act(
        self, observations: list[dict], mode: str = "score", greedy: bool = False, temperature=None
    ) -> list:
        with self.policy.using_adapter(self.adapter):
            return self.policy.act(observations, mode=mode, greedy=greedy, temperature=temperature)


class Player:
    """Base of the two kinds of player. ``name`` is recorded with every turn; ``learner`` marks turns
    that are training data."""

    name: str = "player"
    learner: bool = False


class PolicyPlayer(Player):
    """A language-model policy in a seat.

    Args:
        policy: An :class:`Actor` (e.g. ``modules.Policy``).
        name: Recorded with its turns (``"learner"`` for the policy being trained).
        learner: Whether its turns are training data.
        mode: Acting mode for this player; ``None`` uses the mode given to ``RolloutEngine.play``.
        greedy: Greedy acting; ``None`` uses ``play``'s.
        temperature: Sampling temperature; ``None`` uses ``play``'s.
    """

    def __init__(
        self,
        policy: Actor,
        name: str = "learner",
        learner: bool = True,
        mode: str | None = None,
        greedy: bool | None = None,
        temperature: float | None = None,
    ) -> None:
        if not isinstance(policy, Actor):
            raise ConfigError(f"player {name!r}: the policy must have an act(observations, ...) method")
        self.policy, self.name, self.learner = policy, name, learner
        self.mode = None if mode is None else check_mode(mode, f"player {name!r} mode")
        self.greedy, self.temperature = greedy, temperature

    def act(self, observations: list[dict], mode: str, greedy: bool, temperature: float | None) -> list:
        return self.policy.act(
            observations,
            mode=self.mode or mode,
            greedy=greedy if self.greedy is None else self.greedy,
            temperature=temperature if self.temperature is None else self.temperature,
        )


class AgentPlayer(Player):
    """A built-in agent of :mod:`envs` in a seat (it reads the OpenSpiel state).

    Args:
        agent: ``random``, ``heuristic``, ``mcts`` or ``minimax``.
        mcts_simulations: Simulations per move of ``mcts``.
        name: Recorded with its turns (default: the agent's name).
    """

    learner = False

    def __init__(self, agent: str, mcts_simulations: int = 100, name: str | None = None) -> None:
        from envs import AGENT_NAMES

        self.agent = check_choice(agent, AGENT_NAMES, "player agent")
        self.mcts_simulations = mcts_simulations
        self.name = name or agent
        self._made: dict[str, Any] = {}

    def choose(self, env, seat: int, rng: np.random.Generator) -> int:
        """The index into ``seat``'s legal actions that the agent plays in ``env``'s current state."""
        from envs import make_agent

        base = env.unwrapped
        state = base.state
        key = base.game_name
        if key not in self._made:
            self._made[key] = make_agent(self.agent, base.game, mcts_simulations=self.mcts_simulations)
        action = int(self._made[key].step(state, rng, player=seat))
        return [int(a) for a in state.legal_actions(seat)].index(action)


def seats_for(players: Sequence[Player], game_index: int, rotate: bool = True) -> list[Player]:
    """The players of game ``game_index``: in the given order, rotated by one seat per game when
    ``rotate`` (so each player takes every seat in turn over consecutive games)."""
    players = list(players)
    if not rotate:
        return players
    shift = game_index % len(players)
    return players[-shift:] + players[:-shift] if shift else players
