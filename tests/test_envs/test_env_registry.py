"""One registry (envs.registry.GAMES) drives the Gymnasium ids, the renderers and heuristics, the
tournament baselines and docs/games.md's list of ids (the golden transcripts: test_env_golden.py)."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import gymnasium
import pytest

from envs import GAME_IDS, HEURISTIC_GAMES, REGISTERED_IDS, RENDERERS, GenericRenderer, load_game, make_agent
from envs import renderer_for as env_renderer_for
from envs.registry import GAMES, _check_unique, env_kwargs, spec_for
from envs.tournament_baselines import BASELINE_GAMES

DOCS = Path(__file__).resolve().parents[2] / "docs" / "games.md"


def _docs_table() -> dict[str, str]:
    """docs/games.md's table of registered ids: id -> its "game string (default)" cell."""
    rows = re.findall(r"^\| `(lightspiel/[A-Za-z]+-v\d+)` \| ([^|]+) \|", DOCS.read_text(), flags=re.M)
    assert len(rows) == len({env_id for env_id, _ in rows}), "an id is listed twice"
    return dict(rows)


def test_docs_list_every_registered_id_with_its_default_game():
    table = _docs_table()
    assert sorted(table) == sorted(REGISTERED_IDS)
    for spec in GAMES:
        cell = table[spec.env_id]
        if spec.game is not None:
            assert f"`{spec.game}`" in cell, (spec.env_id, cell)
        for key, value in spec.defaults.items():
            assert f'`{key}="{value}"`' in cell, (spec.env_id, cell)


def test_gymnasium_ids_come_from_the_registry():
    assert [spec.env_id for spec in GAMES] == REGISTERED_IDS
    for spec in GAMES:
        assert gymnasium.registry[spec.env_id].kwargs == spec.env_kwargs == env_kwargs(spec.env_id)
        assert spec_for(spec.env_id) is spec
        env = gymnasium.make(spec.env_id, disable_env_checker=True).unwrapped
        assert env.game_name == spec.env_kwargs.get("game", "tic_tac_toe")
        assert env.opponent == spec.env_kwargs.get("opponent", "random")
    assert {spec.env_id: spec.game for spec in GAMES if spec.game is not None} == GAME_IDS


def test_each_game_gets_its_renderer_and_heuristic():
    for spec in GAMES:
        if spec.game is None:
            assert spec.renderer is GenericRenderer and isinstance(
                env_renderer_for("goofspiel"), GenericRenderer
            )
            continue
        assert RENDERERS[spec.short_name] is spec.renderer
        assert type(env_renderer_for(spec.game)) is spec.renderer
        if spec.heuristic is not None:
            assert spec.short_name in HEURISTIC_GAMES
            agent = make_agent("heuristic", load_game(spec.game))
            assert agent._choose is spec.heuristic
    assert set(HEURISTIC_GAMES) == {s.short_name for s in GAMES if s.heuristic is not None}


def test_baselines_are_the_two_player_registered_games():
    two_player = {
        spec.label: spec.game for spec in GAMES if spec.game and load_game(spec.game).num_players() == 2
    }
    assert two_player == BASELINE_GAMES
    assert list(BASELINE_GAMES) == [spec.label for spec in GAMES if spec.label in BASELINE_GAMES]


@pytest.mark.parametrize("field", ["env_id", "label", "game", "golden"])
def test_registry_refuses_two_games_with_one_name(field):
    first = spec_for("lightspiel/KuhnPoker-v0")
    twin = replace(
        spec_for("lightspiel/LeducPoker-v0"),
        **{field: getattr(first, field)} if field != "game" else {"game": "kuhn_poker(players=3)"},
    )
    with pytest.raises(ValueError, match="two games share"):
        _check_unique((first, twin))
