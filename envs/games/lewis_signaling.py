"""The Lewis signaling game (``lightspiel/LewisSignaling-v0``, cooperative, self-play by default):
renderer, heuristic and registration."""

from __future__ import annotations

import re

import numpy as np
import pyspiel

from envs.games.base import INVALID_ACTION, GameSpec, Golden, Renderer, first_word, number_choice, pick

__all__ = ["SIGNALS", "SPEC", "LewisSignalingRenderer", "heuristic", "what_seat_knows"]

#: Names of the signals of the signaling game (beyond these: "signal13", ...).
SIGNALS: tuple[str, ...] = (
    "red",
    "green",
    "blue",
    "yellow",
    "white",
    "black",
    "pink",
    "brown",
    "orange",
    "purple",
    "grey",
    "gold",
)


def _sizes(game: pyspiel.Game) -> tuple[int, int]:
    """``(num_states, num_messages)``."""
    params = game.get_parameters()
    return int(params.get("num_states", 3)), int(params.get("num_messages", 3))


def what_seat_knows(state: pyspiel.State, player: int) -> int | None:
    """The sender's (seat 0) secret, or the receiver's (seat 1) message, read from the seat's
    information state; ``None`` while there is none yet."""
    pattern = r"State: (\d+)" if player == 0 else r"Message: (\d+)"
    match = re.search(pattern, state.information_state_string(player))
    return None if match is None else int(match.group(1))


class LewisSignalingRenderer(Renderer):
    """Lewis signaling game: the sender (seat 0) sees a secret number and sends a signal; the
    receiver (seat 1) sees only the signal and guesses the number. Both seats get the same reward.

    Example prompts::

        Signaling game: you and your partner share the reward. You are the sender: you see a secret
        number from 1 to 3 and send a signal; your partner sees only the signal and guesses the number.
        A correct guess scores 1 for both of you.
        Secret: 2.
        Legal moves: red green blue
        Reply with one signal.

        Signaling game: you and your partner share the reward. You are the receiver: your partner
        saw a secret number from 1 to 3 and sent you a signal; guess the number.
        A correct guess scores 1 for both of you.
        Signal: green.
        Legal moves: 1 2 3
        Reply with one number.

    Action texts: the sender's are signal names (``red``, ``green``, ``blue``, ...; message ``m`` is
    the ``m``-th name), the receiver's the numbers ``1..num_states`` (action ``n - 1``). Accepted
    answers: the sender's first signal name in the answer (whole word, any case); the receiver's
    first standalone number (outside ``1..num_states``: parsed but illegal).
    """

    @staticmethod
    def signal_name(message: int) -> str:
        return SIGNALS[message] if message < len(SIGNALS) else f"signal{message + 1}"

    @staticmethod
    def _payoff_line(game: pyspiel.Game) -> str:
        states, _ = _sizes(game)
        raw = str(game.get_parameters().get("payoffs", ""))
        try:
            payoffs = [float(x) for x in raw.split(",")]
        except ValueError:
            payoffs = []
        identity = [1.0 if i == j else 0.0 for i in range(states) for j in range(states)]
        if payoffs == identity:
            return "A correct guess scores 1 for both of you."
        if len(payoffs) == states * states:
            rows = "; ".join(
                f"secret {i + 1}: " + " ".join(f"{payoffs[i * states + j]:g}" for j in range(states))
                for i in range(states)
            )
            return f"Score for both of you by secret and guess 1-{states}: {rows}."
        return "Both of you get the same score."

    def action_text(self, state: pyspiel.State, player: int, action: int) -> str:
        return self.signal_name(action) if player == 0 else str(action + 1)

    def parse(self, text: str, state: pyspiel.State, player: int) -> int | None:
        states, messages = _sizes(state.get_game())
        if player == 1:
            return number_choice(text, states)
        names = [self.signal_name(m) for m in range(messages)]
        found = first_word(text, names)
        if found is None:
            found = first_word(text, [s for s in SIGNALS if s not in names])
            return None if found is None else INVALID_ACTION
        return names.index(found)

    def _fact(self, state: pyspiel.State, player: int) -> str:
        known = what_seat_knows(state, player)
        if player == 0:
            return f"Secret: {known + 1}." if known is not None else "Secret: not drawn yet."
        return f"Signal: {self.signal_name(known)}." if known is not None else "Signal: none yet."

    def prompt(self, state: pyspiel.State, player: int) -> str:
        game = state.get_game()
        states, _ = _sizes(game)
        if player == 0:
            role = (
                f"You are the sender: you see a secret number from 1 to {states} and send a signal; "
                "your partner sees only the signal and guesses the number."
            )
            reply = "Reply with one signal."
        else:
            role = (
                f"You are the receiver: your partner saw a secret number from 1 to {states} and sent you "
                "a signal; guess the number."
            )
            reply = "Reply with one number."
        return "\n".join(
            [
                f"Signaling game: you and your partner share the reward. {role}",
                self._payoff_line(game),
                self._fact(state, player),
                self.moves_line(state, player),
                reply,
            ]
        )

    def final(self, state: pyspiel.State, player: int) -> str:
        return "Game over.\n" + self._fact(state, player)


def heuristic(state: pyspiel.State, player: int, rng: np.random.Generator) -> int:
    """A fixed convention: the sender sends signal ``k mod num_messages`` for secret ``k``; the
    receiver guesses the first secret that would send the signal it got."""
    legal = [int(a) for a in state.legal_actions(player)]
    _, messages = _sizes(state.get_game())
    known = what_seat_knows(state, player)
    if known is None:
        wanted = legal[0]
    else:
        wanted = known % messages if player == 0 else known
    return wanted if wanted in legal else pick(legal, rng)


SPEC = GameSpec(
    label="lewis_signaling",
    env_id="lightspiel/LewisSignaling-v0",
    game="lewis_signaling",
    renderer=LewisSignalingRenderer,
    heuristic=heuristic,
    defaults={"opponent": "self"},
    golden=Golden("lewis_signaling", seed=5),
)
