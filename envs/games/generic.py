"""The fallback for any OpenSpiel game: a renderer built from OpenSpiel's own strings, registered as
``lightspiel/OpenSpiel-v0`` (the caller passes ``game=...``)."""

from __future__ import annotations

import re

import pyspiel

from envs.games.base import (
    MAX_PARSE_CHARS,
    TOKEN_END,
    TOKEN_START,
    GameSpec,
    Golden,
    Renderer,
    perfect_information,
    private_view,
)

__all__ = ["SPEC", "GenericRenderer"]


class GenericRenderer(Renderer):
    """Fallback renderer for any OpenSpiel game, built from OpenSpiel's own strings.

    The prompt shows the game's long name, the seat, ``state.observation_string(player)`` (or
    ``information_state_string(player)`` for games without observation strings; ``str(state)`` only
    for perfect-information games with neither), a line saying so at simultaneous-move nodes, and
    the legal moves as given by ``state.action_to_string``.

    Accepted answers: a legal move string on its own (case-insensitive, surrounding whitespace
    ignored); otherwise the legal move string that appears earliest in the answer as a whole token
    (not glued to letters, digits or ``_``; the longest one wins a tie). Anything else is unparsed.
    """

    @classmethod
    def check_game(cls, game: pyspiel.Game) -> None:
        """Raise ``ValueError`` for a game this renderer cannot show without leaking hidden
        information (an imperfect-information game with neither observation nor
        information-state strings)."""
        game_type = game.get_type()
        if perfect_information(game):
            return
        if not (game_type.provides_observation_string or game_type.provides_information_state_string):
            raise ValueError(
                f"{game} is an imperfect-information game without observation or information-state "
                "strings; the generic renderer cannot show it without revealing hidden information"
            )

    def _view(self, state: pyspiel.State, player: int) -> str:
        view = private_view(state, player)
        if not view and perfect_information(state.get_game()):
            view = str(state)
        return view

    def prompt(self, state: pyspiel.State, player: int) -> str:
        game = state.get_game()
        moves = [self.action_text(state, player, a) for a in state.legal_actions(player)]
        sep = " | " if any("," in m for m in moves) else ", "
        view = self._view(state, player).rstrip("\n")
        lines = [f"{game.get_type().long_name}. You are player {player}."]
        if view:
            lines.append(view)
        if state.is_simultaneous_node():
            lines.append("All players choose at the same time.")
        lines += [f"Legal moves: {sep.join(moves)}", "Reply with one legal move exactly as written."]
        return "\n".join(lines)

    def action_text(self, state: pyspiel.State, player: int, action: int) -> str:
        return state.action_to_string(player, action)

    def parse(self, text: str, state: pyspiel.State, player: int) -> int | None:
        text = text[:MAX_PARSE_CHARS]
        legal = state.legal_actions(player)
        names = [(self.action_text(state, player, a).strip().lower(), a) for a in legal]
        answer = text.strip().lower()
        for name, action in names:
            if name and name == answer:
                return action
        best: tuple[int, int, int] | None = None  # (position, -length, action)
        for name, action in names:
            if not name:
                continue
            match = re.search(TOKEN_START + re.escape(name) + TOKEN_END, answer)
            if match is not None:
                key = (match.start(), -len(name), action)
                if best is None or key < best:
                    best = key
        return None if best is None else best[2]


SPEC = GameSpec(
    label="generic",
    env_id="lightspiel/OpenSpiel-v0",
    game=None,
    renderer=GenericRenderer,
    baseline=False,
    golden=Golden("generic_goofspiel", seed=8, kwargs={"game": "goofspiel(num_cards=3)"}),
)
