"""Baseline tournaments between the non-LLM agents on every two-player registered game (the games
of :data:`envs.registry.BASELINE_GAMES`).

Plays MCTS vs random and heuristic vs random (optionally MCTS vs heuristic), the first agent taking
seat 0 in even-numbered games and seat 1 in odd-numbered ones, and prints JSON: per game and match,
the games played and the first agent's win / draw / loss rates and mean return. In the cooperative
signaling game "win" means the pair scored (both seats get the same reward)::

    .venv/bin/python -m envs.tournament_baselines --games 100
    .venv/bin/python -m envs.tournament_baselines --games 20 --only kuhn_poker --simulations 50

A match stops early (and reports the games it played) once it has used ``--max-seconds`` seconds.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence

import numpy as np
import pyspiel

from envs.agents import Agent, make_agent
from envs.core import load_game
from envs.registry import BASELINE_GAMES

__all__ = ["BASELINE_GAMES", "MATCHES", "play_game", "play_match", "main"]

#: The matches played by default: (first agent, second agent).
MATCHES: tuple[tuple[str, str], ...] = (("mcts", "random"), ("heuristic", "random"))


def play_game(game: pyspiel.Game, agents: Sequence[Agent], rng: np.random.Generator) -> list[float]:
    """Play one game (sequential or simultaneous, chance from ``rng``); return the returns."""
    state = game.new_initial_state()
    while not state.is_terminal():
        if state.is_chance_node():
            outcomes = state.chance_outcomes()
            probs = np.asarray([p for _, p in outcomes], dtype=np.float64)
            state.apply_action(outcomes[int(rng.choice(len(outcomes), p=probs / probs.sum()))][0])
        elif state.is_simultaneous_node():
            state.apply_actions([agents[p].step(state, rng, player=p) for p in range(game.num_players())])
        else:
            state.apply_action(agents[state.current_player()].step(state, rng))
    return [float(r) for r in state.returns()]


def play_match(
    game: str | pyspiel.Game,
    first: str,
    second: str,
    games: int,
    seed: int = 0,
    simulations: int = 100,
    max_seconds: float | None = None,
) -> dict[str, float]:
    """Play ``first`` against ``second``, alternating seats; results from ``first``'s seat.

    Returns:
        ``{"games", "win", "draw", "loss", "mean_return", "seconds"}`` (rates in [0, 1]).
    """
    game = load_game(game) if isinstance(game, str) else game
    rng = np.random.default_rng(seed)
    a = make_agent(first, game, mcts_simulations=simulations)
    b = make_agent(second, game, mcts_simulations=simulations)
    start = time.perf_counter()
    results = []
    for i in range(games):
        seat = i % 2
        agents = [a, b] if seat == 0 else [b, a]
        results.append(play_game(game, agents, rng)[seat])
        if max_seconds is not None and time.perf_counter() - start > max_seconds:
            break
    n = len(results)
    return {
        "games": n,
        "win": sum(r > 0 for r in results) / n,
        "draw": sum(r == 0 for r in results) / n,
        "loss": sum(r < 0 for r in results) / n,
        "mean_return": float(np.mean(results)),
        "seconds": round(time.perf_counter() - start, 2),
    }


def main(argv: Sequence[str] | None = None) -> dict:
    """Parse ``argv``, play the matches, print the JSON report and return it."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--games", type=int, default=100, help="games per match (seats alternate)")
    parser.add_argument("--simulations", type=int, default=100, help="MCTS simulations per move")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-seconds", type=float, default=30.0, help="time limit per match (0: none)")
    parser.add_argument("--only", nargs="*", default=None, help=f"games to play: {', '.join(BASELINE_GAMES)}")
    parser.add_argument("--vs-heuristic", action="store_true", help="also play MCTS vs heuristic")
    args = parser.parse_args(argv)
    if args.games < 1:
        parser.error("--games must be >= 1")
    names = args.only or list(BASELINE_GAMES)
    unknown = [n for n in names if n not in BASELINE_GAMES]
    if unknown:
        parser.error(f"unknown games {unknown}; choose from {', '.join(BASELINE_GAMES)}")
    matches = list(MATCHES) + ([("mcts", "heuristic")] if args.vs_heuristic else [])
    report: dict = {
        "settings": {"games": args.games, "simulations": args.simulations, "seed": args.seed},
        "results": {},
    }
    for name in names:
        report["results"][name] = {"game": BASELINE_GAMES[name]}
        for first, second in matches:
            report["results"][name][f"{first}_vs_{second}"] = play_match(
                BASELINE_GAMES[name],
                first,
                second,
                args.games,
                seed=args.seed,
                simulations=args.simulations,
                max_seconds=args.max_seconds or None,
            )
    json.dump(report, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return report


if __name__ == "__main__":
    main()
