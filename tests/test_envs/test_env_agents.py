"""Opponent agents and the action-value oracles."""

from __future__ import annotations

import numpy as np
import pyspiel
import pytest

from envs import (
    AGENT_NAMES,
    HeuristicAgent,
    MCTSAgent,
    MinimaxAgent,
    RandomAgent,
    SearchTooLargeError,
    action_values,
    clear_minimax_cache,
    make_agent,
    mcts_action_values,
)


def play(game: pyspiel.Game, agents, rng: np.random.Generator) -> list[float]:
    state = game.new_initial_state()
    while not state.is_terminal():
        state.apply_action(agents[state.current_player()].step(state, rng))
    return state.returns()


def test_minimax_never_loses_to_random(ttt_game):
    rng = np.random.default_rng(0)
    minimax, rand = MinimaxAgent(ttt_game), RandomAgent()
    for seat in (0, 1):
        agents = [minimax, rand] if seat == 0 else [rand, minimax]
        results = [play(ttt_game, agents, rng)[seat] for _ in range(50)]
        assert min(results) >= 0.0
        assert sum(r > 0 for r in results) >= 25  # and it wins most games


def test_mcts_beats_random(ttt_game):
    rng = np.random.default_rng(1)
    mcts_agent, rand = MCTSAgent(ttt_game, simulations=100), RandomAgent()
    results = []
    for game_index in range(30):
        seat = game_index % 2
        agents = [mcts_agent, rand] if seat == 0 else [rand, mcts_agent]
        results.append(play(ttt_game, agents, rng)[seat])
    wins, losses = sum(r > 0 for r in results), sum(r < 0 for r in results)
    assert wins >= 20 and losses <= 3, (wins, losses)


def test_heuristic_wins_then_blocks(make_ttt_state):
    agent, rng = HeuristicAgent(), np.random.default_rng(0)
    # X: 1, 2; O: 4, 5 -> X to move wins at 3 (action 2) rather than blocking 6.
    state = make_ttt_state([0, 3, 1, 4])
    assert {agent.step(state, rng) for _ in range(10)} == {2}
    # X: 1, 2; O: 5 -> O to move must block at 3.
    state = make_ttt_state([0, 4, 1])
    assert {agent.step(state, rng) for _ in range(10)} == {2}
    # Empty board -> centre; X in centre -> O takes a corner.
    assert agent.step(make_ttt_state([]), rng) == 4
    assert {agent.step(make_ttt_state([4]), rng) for _ in range(40)} == {0, 2, 6, 8}


def test_make_agent(ttt_game):
    assert isinstance(make_agent("random", ttt_game), RandomAgent)
    assert isinstance(make_agent("minimax", ttt_game), MinimaxAgent)
    assert isinstance(make_agent("heuristic", ttt_game), HeuristicAgent)
    agent = make_agent("mcts", ttt_game, mcts_simulations=7)
    assert isinstance(agent, MCTSAgent) and agent.simulations == 7
    with pytest.raises(ValueError, match="random, mcts, minimax, heuristic"):
        make_agent("alphazero", ttt_game)
    assert AGENT_NAMES == ("random", "mcts", "minimax", "heuristic")


def test_agents_are_reproducible(ttt_game):
    for name in AGENT_NAMES:
        agent = make_agent(name, ttt_game, mcts_simulations=30)
        a = play(ttt_game, [agent, agent], np.random.default_rng(3))
        b = play(ttt_game, [agent, agent], np.random.default_rng(3))
        assert a == b, name


def test_action_values_known_position(make_ttt_state):
    #  X | X | 3    X to move (cell n = action n-1).
    #  O | O | 6    Cell 3 wins at once: +1. Cell 6 blocks 4-5-6; O must then block 3, which
    #  7 | 8 | 9    threatens 3-5-7; X blocks at 7 and the last cells decide nothing: draw, 0.
    #               Cells 7, 8, 9 let O complete 4-5-6: -1.
    state = make_ttt_state([0, 3, 1, 4])
    values = action_values(state, 0)
    assert values == {2: 1.0, 5: 0.0, 6: -1.0, 7: -1.0, 8: -1.0}
    assert action_values(state, 1) == {a: -v for a, v in values.items()}
    # O to move facing X's threat on 1-2-3: only blocking at 3 avoids a loss.
    o_values = action_values(make_ttt_state([0, 4, 1]), 1)
    assert o_values[2] == 0.0 and all(v == -1.0 for a, v in o_values.items() if a != 2)


def test_discounted_action_values_prefer_quick_wins_and_slow_losses(make_ttt_state):
    #  X | O | O    X to move wins whatever it plays (plain minimax: +1 everywhere), but only 7
    #  X | 5 | 6    (1-4-7) wins at once; 5, 6 and 9 win at X's next turn, 8 one turn later.
    #  7 | 8 | 9
    won = make_ttt_state([0, 1, 3, 2])
    assert set(action_values(won, 0).values()) == {1.0}
    quick = action_values(won, 0, discount=0.95)
    assert quick == pytest.approx({6: 1.0, 4: 0.95**2, 5: 0.95**2, 8: 0.95**2, 7: 0.95**4})
    #  X | X | O    X to move has lost: O threatens 3-6-9, and after the block at 9 O forks at 5.
    #  4 | 5 | O    Plain minimax: -1 everywhere. Discounted, blocking loses three decisions later,
    #  7 | 8 | 9    every other move at O's next one.
    lost = make_ttt_state([0, 2, 1, 5])
    assert set(action_values(lost, 0).values()) == {-1.0}
    slow = action_values(lost, 0, discount=0.95)
    assert slow == pytest.approx({8: -(0.95**3), 3: -0.95, 4: -0.95, 6: -0.95, 7: -0.95})
    # Each discount has its own memo entries, and the other seat's values are the negation.
    assert set(action_values(lost, 0).values()) == {-1.0}
    assert action_values(lost, 1, discount=0.95) == {a: -v for a, v in slow.items()}
    #  X | O | X    O to move: 8 (2-5-8) wins at once; 4 blocks 1-4-7 and wins at O's next turn;
    #  4 | O | 6    6 and 9 let X complete 1-4-7.
    #  X | 8 | 9
    o_to_move = make_ttt_state([0, 1, 2, 4, 6])
    assert action_values(o_to_move, 1, discount=0.95) == pytest.approx(
        {7: 1.0, 3: 0.95**2, 5: -0.95, 8: -0.95}
    )
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError, match="discount must be in"):
            action_values(lost, 0, discount=bad)


def test_action_values_are_memoised(ttt_game):
    """A full solve fills the cache, so asking again needs no new node at all (max_nodes=0); after
    clear_minimax_cache the same call runs out of budget. (Timings: bench/bench_oracles.py.)"""
    clear_minimax_cache()
    assert set(action_values(ttt_game.new_initial_state(), 0).values()) == {0.0}  # a draw
    assert set(action_values(ttt_game.new_initial_state(), 1, max_nodes=0).values()) == {0.0}
    clear_minimax_cache()
    with pytest.raises(SearchTooLargeError, match="node budget"):
        action_values(ttt_game.new_initial_state(), 1, max_nodes=0)


def test_action_values_refuses_unsuitable_games():
    with pytest.raises(SearchTooLargeError, match="PERFECT_INFORMATION"):
        action_values(pyspiel.load_game("kuhn_poker").new_initial_state().child(0).child(1), 0)
    with pytest.raises(SearchTooLargeError, match="too large"):
        action_values(pyspiel.load_game("connect_four").new_initial_state(), 0, max_nodes=2_000)


def test_mcts_action_values(make_ttt_state):
    state = make_ttt_state([0, 3, 1, 4])
    rng = np.random.default_rng(0)
    values = mcts_action_values(state, 0, simulations=300, rng=rng)
    assert set(values) == set(state.legal_actions())
    assert values[2] == 1.0 and max(values, key=values.get) == 2
    # The blocking move (cell 6, a draw) ranks above the three moves that let O win.
    assert values[5] > max(values[6], values[7], values[8])
    other = mcts_action_values(state, 1, simulations=300, rng=np.random.default_rng(0))
    assert other == {a: -v for a, v in values.items()}
    c4 = pyspiel.load_game("connect_four").new_initial_state()
    assert len(mcts_action_values(c4, 0, simulations=50, rng=rng)) == 7
