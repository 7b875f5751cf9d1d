"""Rollout throughput: the batched engine against one game at a time, same model, same seeds; and
games against several opponents stepped together against one opponent's games after another.

    python bench/bench_rollout.py --games 32 --num-envs 16 --modes score constrained generate

Prints one JSON object (and writes it to bench/results/rollout.json).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datamodules import RolloutEngine  # noqa: E402
from modules.policy import Policy  # noqa: E402


def run(policy, env_kwargs, games: int, num_envs: int, mode: str) -> dict:
    engine = RolloutEngine("lightspiel/TicTacToe-v0", env_kwargs, num_envs=num_envs)
    start = time.perf_counter()
    result = engine.play(policy, seeds=list(range(games)), mode=mode, progress=None)
    seconds = time.perf_counter() - start
    decisions = sum(len(e.turns) for e in result.episodes)
    return {
        "games": games,
        "num_envs": num_envs,
        "seconds": round(seconds, 2),
        "games_per_s": round(games / seconds, 3),
        "decisions_per_s": round(decisions / seconds, 3),
        "parse_rate": round(result.metrics["parse_rate"], 3),
    }


def mixed(
    policy, games: int, num_envs: int, mode: str, opponents: list[str], reps: int = 2, greedy: bool = False
) -> dict:
    """``games`` games dealt round-robin among ``opponents`` (as the preference datamodule deals
    them): one play stepping them all together against one play per opponent (each with every one
    of its games at once, the engine's behaviour before per-game opponents)."""
    seeds = list(range(games))
    dealt = [opponents[i % len(opponents)] for i in seeds]

    def together() -> list:
        engine = RolloutEngine("lightspiel/TicTacToe-v0", {}, num_envs=num_envs)
        return engine.play(policy, seeds, mode=mode, greedy=greedy, opponents=dealt, progress=None).episodes

    def apart() -> list:
        played = []
        for opponent in opponents:
            mine = [s for s, o in zip(seeds, dealt) if o == opponent]
            engine = RolloutEngine("lightspiel/TicTacToe-v0", {"opponent": opponent}, num_envs=num_envs)
            played += engine.play(policy, mine, mode=mode, greedy=greedy, progress=None).episodes
        return played

    times: dict = {"together": [], "apart": []}
    for _ in range(reps):  # interleaved, best of each
        for name, play in (("together", together), ("apart", apart)):
            start = time.perf_counter()
            episodes = play()
            times[name].append(time.perf_counter() - start)
    shared, separate = min(times["together"]), min(times["apart"])
    decisions = sum(len(e.turns) for e in episodes)
    return {
        "games": games,
        "opponents": opponents,
        "reps": reps,
        "greedy": greedy,
        "together_seconds": round(shared, 2),
        "one_opponent_after_another_seconds": round(separate, 2),
        "together_decisions_per_s": round(decisions / shared, 3),
        "every_rep_seconds": {name: [round(t, 2) for t in ts] for name, ts in times.items()},
        "speedup": round(separate / shared, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default=None, help="hub name or folder; default: embedded SmolLM2-135M")
    parser.add_argument("--dtype", default="auto", help="auto: bfloat16 where the CPU has it natively, else float32")
    parser.add_argument("--games", type=int, default=32)
    parser.add_argument("--num-envs", type=int, default=16)
    parser.add_argument("--modes", nargs="+", default=["score", "constrained", "generate"])
    parser.add_argument(
        "--opponents", nargs="*", default=["self", "random", "mcts"],
        help="also time games dealt among these opponents, together against one after another (none: skip)",
    )
    parser.add_argument("--act-batch-size", type=int, default=64, help="positions a forward pass (the quickstart's)")
    parser.add_argument("--reps", type=int, default=3, help="interleaved repeats of the opponents comparison (best of)")
    parser.add_argument("--skip-single", action="store_true", help="skip the one-game-at-a-time comparison")
    parser.add_argument("--out", default="bench/results/rollout.json")
    args = parser.parse_args()
    torch.manual_seed(0)
    policy = Policy(model=args.model, dtype=args.dtype, max_new_tokens=8, act_batch_size=args.act_batch_size)
    env_kwargs = {"opponent": "self"}
    run(policy, env_kwargs, 2, 2, "score")  # warm-up
    report = {
        "benchmark": "rollout",
        "model": args.model or "embedded SmolLM2-135M-Instruct",
        "dtype": args.dtype,
        "env": "lightspiel/TicTacToe-v0 self-play",
        "threads": torch.get_num_threads(),
        "act_batch_size": args.act_batch_size,
        "machine": platform.machine(),
        "results": {},
    }
    for mode in args.modes:
        report["results"][mode] = {}
        if not args.skip_single:
            batched = run(policy, env_kwargs, args.games, args.num_envs, mode)
            single = run(policy, env_kwargs, args.games, 1, mode)
            report["results"][mode] = {
                "batched": batched,
                "one_game_at_a_time": single,
                "speedup": round(batched["games_per_s"] / single["games_per_s"], 2),
            }
        if len(args.opponents) > 1:
            report["results"][mode]["opponents_together"] = mixed(
                policy, args.games, args.num_envs, mode, args.opponents
            )
    text = json.dumps(report, indent=2)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
