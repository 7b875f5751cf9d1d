"""Rollout throughput: the batched engine against one game at a time, same model, same seeds.

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default=None, help="hub name or folder; default: embedded SmolLM2-135M")
    parser.add_argument("--dtype", default="auto", help="auto: bfloat16 where the CPU has it natively, else float32")
    parser.add_argument("--games", type=int, default=32)
    parser.add_argument("--num-envs", type=int, default=16)
    parser.add_argument("--modes", nargs="+", default=["score", "constrained", "generate"])
    parser.add_argument("--out", default="bench/results/rollout.json")
    args = parser.parse_args()
    torch.manual_seed(0)
    policy = Policy(model=args.model, dtype=args.dtype, max_new_tokens=8)
    env_kwargs = {"opponent": "self"}
    run(policy, env_kwargs, 2, 2, "score")  # warm-up
    report = {
        "benchmark": "rollout",
        "model": args.model or "embedded SmolLM2-135M-Instruct",
        "dtype": args.dtype,
        "env": "lightspiel/TicTacToe-v0 self-play",
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "results": {},
    }
    for mode in args.modes:
        batched = run(policy, env_kwargs, args.games, args.num_envs, mode)
        single = run(policy, env_kwargs, args.games, 1, mode)
        report["results"][mode] = {
            "batched": batched,
            "one_game_at_a_time": single,
            "speedup": round(batched["games_per_s"] / single["games_per_s"], 2),
        }
    text = json.dumps(report, indent=2)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
