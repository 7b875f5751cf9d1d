"""PPO throughput: lightspiel's on-policy rollout and PPO update on real tic-tac-toe games.

    python bench/bench_ppo.py --games 16 --batch-size 16 --dtype float32

One iteration = what one epoch of ``configs/openspiel_ppo_curriculum.yaml`` does: the policy (LoRA +
value head) plays ``games`` games against a random opponent in generate mode (``RolloutEngine``, all
games stepped together; every learner turn records its sampled tokens, their log-probabilities and
the value), the oracle judges each legal move, GAE fills the advantages (``OnPolicyDataModule.build``)
and ``PPO.training_step`` + backward + clipping + an optimizer step runs over the turns in batches of
``batch_size`` (KL to the adapter-disabled reference and the value loss included). The first
iteration is a warm-up and is not timed.

TRL comparison: TRL's ``PPOTrainer`` is looked up at run time; the trl this project installs (1.16)
ships none (neither at the top level nor under ``trl.experimental``), and its closest trainer, ``GRPOTrainer`` (no value
model), is measured against lightspiel's GRPO on the same kind of prompts by ``bench/bench_grpo.py``.
The report says which was found.

Prints one JSON object and writes bench/results/ppo_<dtype>.json.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import envs  # noqa: E402,F401  (registers the ids)
from datamodules.onpolicy import OnPolicyDataModule  # noqa: E402
from datamodules.records import write_json_atomic  # noqa: E402
from modules.policy import Policy  # noqa: E402
from modules.ppo import PPO  # noqa: E402


def trl_ppo() -> dict:
    """Where (if anywhere) the installed TRL has a PPO trainer."""
    import trl

    found = None
    for module in ("trl", "trl.experimental.ppo", "trl.trainer.ppo_trainer"):
        try:
            if hasattr(importlib.import_module(module), "PPOTrainer"):
                found = f"{module}.PPOTrainer"
                break
        except ImportError:
            continue
    return {
        "version": trl.__version__,
        "ppo_trainer": found,
        "closest": None if found else "GRPOTrainer (no value model): bench/bench_grpo.py",
    }


def iteration(module: PPO, data: OnPolicyDataModule, opt, epoch: int) -> dict:
    data.set_iteration(epoch)
    start = time.perf_counter()
    data.build(module.policy, module)
    rollout = time.perf_counter() - start
    rows, steps = data.rows, 0
    start = time.perf_counter()
    for first in range(0, len(rows), data.batch_size):
        opt.zero_grad()
        module.training_step(rows[first : first + data.batch_size], steps).backward()
        torch.nn.utils.clip_grad_norm_(module.policy.parameters(), 1.0)
        opt.step()
        steps += 1
    return {"turns": len(rows), "rollout_s": rollout, "train_s": time.perf_counter() - start, "steps": steps}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default=None)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--games", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--iterations", type=int, default=2)
    parser.add_argument("--max-new-tokens", type=int, default=8)
    args = parser.parse_args()
    logging.getLogger("lightning").setLevel(logging.ERROR)
    torch.manual_seed(0)
    policy = Policy(
        model=args.model, dtype=args.dtype, max_new_tokens=args.max_new_tokens, lora_r=16, lora_alpha=32
    )
    module = PPO(policy, lr=5e-4, kl_coef=0.05, target_kl=0.1)
    module.log = module.log_dict = lambda *a, **k: None  # no Trainer attached
    opt = module.configure_optimizers()
    opt = opt["optimizer"] if isinstance(opt, dict) else opt
    with tempfile.TemporaryDirectory() as tmp:
        data = OnPolicyDataModule(
            env="lightspiel/TicTacToe-v0",
            env_kwargs={"illegal_rule": "random", "illegal_penalty": 1.0},
            opponents=["random"],
            num_episodes=args.games,
            num_envs=args.games,
            mode="generate",
            oracle_reward=1.0,
            batch_size=args.batch_size,
            run_dir=tmp,
        )
        runs = [iteration(module, data, opt, k) for k in range(args.iterations + 1)][1:]  # the first: warm-up
    turns = sum(r["turns"] for r in runs)
    rollout_s, train_s = sum(r["rollout_s"] for r in runs), sum(r["train_s"] for r in runs)
    steps = sum(r["steps"] for r in runs)
    report = {
        "benchmark": "ppo",
        "model": args.model or "embedded SmolLM2-135M-Instruct",
        "dtype": args.dtype,
        "threads": torch.get_num_threads(),
        "games_per_iteration": args.games,
        "batch_size": args.batch_size,
        "iterations_timed": len(runs),
        "lightspiel": {
            "turns": turns,
            "rollout_turns_per_s": round(turns / rollout_s, 2),
            "train_turns_per_s": round(turns / train_s, 2),
            "ppo_steps_per_s": round(steps / train_s, 3),
            "seconds_per_ppo_step": round(train_s / steps, 2),
            "turns_per_s_end_to_end": round(turns / (rollout_s + train_s), 2),
        },
        "trl": trl_ppo(),
    }
    write_json_atomic(f"bench/results/ppo_{args.dtype}.json", report)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
