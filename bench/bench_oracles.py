"""How fast the action-value oracles are (the timings the tests do not assert).

    python bench/bench_oracles.py --repeats 5

Exact minimax (``envs.action_values``) on tic-tac-toe: a full solve from an empty cache ("cold") and
the same question answered from the memo ("warm"; it used to be asserted under 10 ms); MCTS values
(``envs.mcts_action_values``) on connect four and, with determinization, Leduc poker. Prints one JSON
object with the best and median seconds over the repeats.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from envs import action_values, clear_minimax_cache, load_game, mcts_action_values  # noqa: E402


def _time(fn: Callable[[], object], repeats: int, before: Callable[[], object] | None = None) -> dict:
    seconds = []
    for _ in range(repeats):
        if before is not None:
            before()
        start = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - start)
    return {"best_s": round(min(seconds), 6), "median_s": round(statistics.median(seconds), 6)}


def main() -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--simulations", type=int, default=200, help="MCTS simulations per call")
    args = parser.parse_args()
    ttt = load_game("tic_tac_toe").new_initial_state()
    c4 = load_game("connect_four").new_initial_state()
    leduc = load_game("leduc_poker").new_initial_state()
    for action in (0, 4):  # deal the private cards
        leduc.apply_action(action)
    rng = np.random.default_rng(0)
    report = {
        "benchmark": "oracles",
        "repeats": args.repeats,
        "minimax_tic_tac_toe_cold": _time(lambda: action_values(ttt, 0), args.repeats, clear_minimax_cache),
        "minimax_tic_tac_toe_warm": _time(lambda: action_values(ttt, 1), args.repeats),
        "mcts_connect_four": _time(lambda: mcts_action_values(c4, 0, args.simulations, rng), args.repeats),
        "mcts_leduc_determinized": _time(
            lambda: mcts_action_values(leduc, 0, args.simulations, rng), args.repeats
        ),
    }
    json.dump(report, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return report


if __name__ == "__main__":
    main()
