"""Where the time goes: a CPU profile of acting in each mode, one DPO step and one PPO step.

    python bench/profile_paths.py --prompts 16 --dtype float32

For each path: wall seconds and the top operators by self CPU time (share of the path's total), from
torch.profiler. Also times score-mode acting with the LoRA adapter merged into the base weights (the
option docs/performance.md weighs). Prints one JSON object and writes bench/results/profile_<dtype>.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_acting import positions  # noqa: E402
from datamodules import RolloutEngine, oracle_pairs  # noqa: E402
from datamodules.preference import StateBatchSampler  # noqa: E402
from modules.dpo import DPO  # noqa: E402
from modules.policy import Policy  # noqa: E402


def profiled(fn, top: int) -> dict:
    fn()  # warm-up
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        fn()
        seconds = time.perf_counter() - start
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    ranked = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:top]
    return {
        "seconds": round(seconds, 3),
        "top_ops": [
            {"op": e.key, "share": round(e.self_cpu_time_total / total, 3), "calls": e.count} for e in ranked
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--top", type=int, default=6)
    args = parser.parse_args()
    torch.manual_seed(0)
    policy = Policy(model=args.model, dtype=args.dtype, max_new_tokens=8, act_batch_size=args.prompts)
    obs = positions(args.prompts)
    report: dict = {"benchmark": "profile", "dtype": args.dtype, "prompts": len(obs), "paths": {}}
    for mode in ("score", "constrained", "generate"):
        report["paths"][f"act_{mode}"] = profiled(lambda mode=mode: policy.act(obs, mode=mode, greedy=True), args.top)

    # Score-mode acting with the adapter merged into the base weights, then unmerged.
    def act_merged() -> None:
        policy.model.merge_adapter()
        try:
            policy.act(obs, mode="score", greedy=True)
        finally:
            policy.model.unmerge_adapter()

    report["paths"]["act_score_merged_adapter"] = profiled(act_merged, args.top)

    engine = RolloutEngine("lightspiel/TicTacToe-v0", {"opponent": "self"}, num_envs=16)
    episodes = engine.play(policy, seeds=list(range(8)), mode="score", progress=None).episodes
    pairs = oracle_pairs(episodes, margin=0.5, max_pairs_per_state=8)
    batch = [pairs[i] for i in next(iter(StateBatchSampler(pairs, 8, shuffle=False)))]
    module = DPO(policy, beta=0.1, lr=1e-4)
    opt = module.configure_optimizers()

    def dpo_step() -> None:
        module.reference_changed()  # the reference pass in every timed step, as in a first epoch
        opt.zero_grad()
        module._step(batch, "train").backward()
        opt.step()

    report["paths"]["dpo_step_8_pairs"] = profiled(dpo_step, args.top)
    report["paths"]["dpo_step_8_pairs"]["distinct_prompts"] = len({p.prompt for p in batch})
    text = json.dumps(report, indent=2)
    out = Path(f"bench/results/profile_{args.dtype}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
