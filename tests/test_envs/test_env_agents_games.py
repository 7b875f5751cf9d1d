"""Agents on the registered games: heuristics, MCTS (with determinization on imperfect-information
games) and the baseline tournaments."""

from __future__ import annotations

import numpy as np
import pytest

from envs import (
    HEURISTIC_GAMES,
    HeuristicAgent,
    MCTSAgent,
    OpenSpielTextEnv,
    RandomAgent,
    load_game,
    make_agent,
    mcts_action_values,
    sample_determinization,
    state_from_history,
)
from envs.tournament_baselines import BASELINE_GAMES, main, play_game, play_match


def choices(agent, state, n=20, seed=0) -> set[int]:
    rng = np.random.default_rng(seed)
    return {agent.step(state, rng) for _ in range(n)}


# ------------------------------------------------------------------ heuristics


def test_heuristic_for_every_registered_game():
    for game in ("tic_tac_toe", "connect_four", "kuhn_poker", "leduc_poker", "liars_dice", "lewis_signaling"):
        assert isinstance(make_agent("heuristic", load_game(game)), HeuristicAgent)
    assert "lightspiel_repeated_poker" in HEURISTIC_GAMES and "breakthrough" in HEURISTIC_GAMES
    with pytest.raises(
        ValueError, match="no heuristic agent for 'hex'; games with one: tic_tac_toe, connect_four"
    ):
        make_agent("heuristic", load_game("hex"))
    with pytest.raises(ValueError, match="games with one"):
        OpenSpielTextEnv(game="chess", opponent="heuristic")


def test_connect_four_heuristic_wins_then_blocks():
    agent = make_agent("heuristic", load_game("connect_four"))
    # X (seat 0) has three in column 1 (action 0); O has two in column 2. X to move wins in column 1.
    assert choices(agent, state_from_history("connect_four", [0, 1, 0, 1, 0, 6])) == {0}
    # O to move must block X's column 1.
    assert choices(agent, state_from_history("connect_four", [0, 1, 0, 1, 0])) == {0}
    # Horizontal: X on columns 2, 3, 4 -> O blocks at 1 or 5.
    assert choices(agent, state_from_history("connect_four", [1, 1, 2, 2, 3]), n=40) <= {0, 4}


def test_connect_four_heuristic_avoids_giving_a_win():
    agent = make_agent("heuristic", load_game("connect_four"))
    #  . o o o . . x     O holds columns 2-4 of the second row; X must not play column 1 or 5
    #  . x o x . . x     (O would complete the row on top of that disc).
    state = state_from_history("connect_four", [1, 2, 3, 1, 6, 2, 6, 3])
    assert choices(agent, state, n=60) <= {1, 2, 3, 5, 6}


def test_poker_heuristics_bet_with_strength():
    kuhn = make_agent("heuristic", load_game("kuhn_poker"))
    assert choices(kuhn, state_from_history("kuhn_poker", [2, 0])) == {1}  # K bets
    assert choices(kuhn, state_from_history("kuhn_poker", [0, 2])) == {0}  # J checks
    assert choices(kuhn, state_from_history("kuhn_poker", [2, 0, 1])) == {0}  # J facing a bet folds
    assert choices(kuhn, state_from_history("kuhn_poker", [0, 1, 1])) == {1}  # Q facing a bet calls
    leduc = make_agent("heuristic", load_game("leduc_poker"))
    assert choices(leduc, state_from_history("leduc_poker", [4, 0])) == {2}  # K bets
    assert choices(leduc, state_from_history("leduc_poker", [4, 0, 2])) == {0}  # J facing a bet folds
    pair = state_from_history("leduc_poker", [0, 4, 1, 1, 1])  # J for player 1, public J: a pair
    assert choices(leduc, pair) == {2}
    repeated = make_agent("heuristic", load_game("lightspiel_repeated_poker"))
    assert choices(repeated, state_from_history("lightspiel_repeated_poker", [2, 0])) == {1}


def test_liars_dice_heuristic_challenges_implausible_bids():
    agent = make_agent("heuristic", load_game("liars_dice"))
    liar = 12
    assert choices(agent, state_from_history("liars_dice", [0, 1, 8])) == {
        liar
    }  # I hold a 2; "2x3" needs both dice
    assert liar not in choices(
        agent, state_from_history("liars_dice", [0, 2, 2])
    )  # I hold a 3: "1x3" is true
    assert choices(agent, state_from_history("liars_dice", [3, 1])) == {3}  # opening with a 4: bid 1x4


def test_lewis_heuristic_convention_always_scores():
    game = load_game("lewis_signaling")
    agent = make_agent("heuristic", game)
    rng = np.random.default_rng(0)
    assert all(play_game(game, [agent, agent], rng) == [1.0, 1.0] for _ in range(20))


def test_breakthrough_heuristic_takes_a_win():
    game = load_game("breakthrough(rows=4,columns=3)")
    agent = make_agent("heuristic", game)
    rng = np.random.default_rng(1)
    state = game.new_initial_state()
    while not state.is_terminal():  # heuristic vs heuristic: a winning move is played at once
        for action in state.legal_actions():
            if state.child(action).is_terminal():
                assert state.child(agent.step(state, rng)).is_terminal()
                break
        state.apply_action(agent.step(state, rng))


# ------------------------------------------------------------------ determinization and MCTS


def test_determinization_resamples_only_hidden_cards():
    state = state_from_history("kuhn_poker", [1, 2, 0])  # player 1: Q, player 2: K; player 1 checked
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(60):
        world = sample_determinization(state, 1, rng)
        assert world.information_state_string(1) == state.information_state_string(1)
        assert world.history()[1] == 2 and world.history()[2] == 0
        seen.add(world.history()[0])
    assert seen == {0, 1}  # player 1's card: J or Q, never the K player 2 holds
    leduc = state_from_history("leduc_poker", [0, 5, 1, 1, 3])
    worlds = [sample_determinization(leduc, 0, rng) for _ in range(60)]
    assert {w.history()[0] for w in worlds} == {0} and {w.history()[4] for w in worlds} == {3}
    assert {w.history()[1] for w in worlds} == {1, 2, 4, 5}


@pytest.mark.parametrize("game_name", ["kuhn_poker", "leduc_poker", "liars_dice"])
def test_mcts_never_looks_at_hidden_information(game_name):
    """Same information state + same seed -> same move, whatever the hidden cards or dice."""
    game = load_game(game_name)
    agent = MCTSAgent(game, simulations=40)
    rng = np.random.default_rng(0)
    compared = 0
    for _ in range(25):
        state = game.new_initial_state()
        while state.is_chance_node():
            outcomes = state.chance_outcomes()
            state.apply_action(outcomes[int(rng.integers(len(outcomes)))][0])
        seat = state.current_player()
        twin = sample_determinization(state, seat, rng)
        if twin.history() == state.history():
            continue
        assert agent.step(state, np.random.default_rng(7)) == agent.step(twin, np.random.default_rng(7))
        values = mcts_action_values(state, seat, 40, np.random.default_rng(3))
        assert values == mcts_action_values(twin, seat, 40, np.random.default_rng(3))
        compared += 1
    assert compared >= 10


def test_mcts_refuses_what_it_cannot_search():
    with pytest.raises(ValueError, match="sequential"):
        MCTSAgent(load_game("matrix_rps"))
    with pytest.raises(ValueError, match="determinizations"):
        MCTSAgent(load_game("kuhn_poker"), determinizations=0)


def test_random_agent_at_simultaneous_nodes():
    state = load_game("matrix_rps").new_initial_state()
    rng = np.random.default_rng(0)
    assert {RandomAgent().step(state, rng, player=1) for _ in range(30)} == {0, 1, 2}


# ------------------------------------------------------------------ tournaments

#: game label -> (games, MCTS simulations, minimum mean return of MCTS vs random)
MCTS_MARGINS = {
    "connect_four": (12, 60, 0.7),
    "breakthrough": (12, 40, 0.7),
    "kuhn_poker": (300, 40, 0.1),
    "leduc_poker": (200, 60, 0.4),
    "liars_dice": (100, 60, 0.3),
    "repeated_poker": (24, 24, 0.5),
}


@pytest.mark.parametrize("label", list(MCTS_MARGINS))
def test_mcts_beats_random(label):
    games, simulations, margin = MCTS_MARGINS[label]
    result = play_match(BASELINE_GAMES[label], "mcts", "random", games, seed=3, simulations=simulations)
    assert result["games"] == games
    assert result["mean_return"] >= margin, result


@pytest.mark.parametrize("label", [k for k in BASELINE_GAMES if k != "lewis_signaling"])
def test_heuristic_beats_random(label):
    # Poker heuristics fold often (many small losses) but win more chips: judge by mean return.
    result = play_match(BASELINE_GAMES[label], "heuristic", "random", 200, seed=4)
    assert result["mean_return"] > 0.1, result


def test_tournament_script_prints_json(capsys):
    import json

    report = main(["--games", "4", "--simulations", "5", "--only", "kuhn_poker", "lewis_signaling"])
    printed = json.loads(capsys.readouterr().out)
    assert printed == report and list(printed["results"]) == ["kuhn_poker", "lewis_signaling"]
    assert printed["settings"] == {"games": 4, "simulations": 5, "seed": 0}
    # Each reported match is what play_match gives for the same settings (timing aside).
    for label, results in printed["results"].items():
        assert results["game"] == BASELINE_GAMES[label]
        assert set(results) == {"game", "mcts_vs_random", "heuristic_vs_random"}
        for first, second in (("mcts", "random"), ("heuristic", "random")):
            again = play_match(BASELINE_GAMES[label], first, second, 4, seed=0, simulations=5)
            reported = dict(results[f"{first}_vs_{second}"])
            reported.pop("seconds"), again.pop("seconds")
            assert reported == again, (label, first)
    with pytest.raises(SystemExit):
        main(["--only", "chess"])
