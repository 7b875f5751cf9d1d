"""DPO training throughput (pairs/s): lightspiel's DPO module against TRL's DPOTrainer, same pairs.

    python bench/bench_dpo.py --pairs 32 --dtype float32 [--no-trl]

The pairs are real: self-play tic-tac-toe states labelled by the minimax oracle. Both sides train a
LoRA (same rank, alpha and target modules) on the same base model and the same chat-formatted
prompts. Prints one JSON object (and writes bench/results/dpo_<dtype>.json).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datamodules import RolloutEngine, oracle_pairs  # noqa: E402
from datamodules.preference import StateBatchSampler  # noqa: E402
from datamodules.records import write_json_atomic  # noqa: E402
from modules.dpo import DPO  # noqa: E402
from modules.policy import Policy  # noqa: E402

LORA = {"lora_r": 16, "lora_alpha": 32}


def make_pairs(policy: Policy, n: int) -> list:
    engine = RolloutEngine("lightspiel/TicTacToe-v0", {"opponent": "self"}, num_envs=16)
    episodes = engine.play(policy, seeds=list(range(32)), mode="score", progress=None).episodes
    pairs = oracle_pairs(episodes, margin=0.5, max_pairs_per_state=8)
    return pairs[:n]


def bench_lightspiel(policy: Policy, pairs: list, batch_size: int) -> dict:
    import logging

    logging.getLogger("lightning").setLevel(logging.ERROR)
    module = DPO(policy, beta=0.1, lr=3e-4)
    opt = module.configure_optimizers()
    out = {}
    for epoch in ("cold_reference", "cached_reference"):
        start = time.perf_counter()
        steps = 0
        for batch_idx in StateBatchSampler(pairs, batch_size, shuffle=False):
            opt.zero_grad()
            module._step([pairs[i] for i in batch_idx], "train").backward()
            opt.step()
            steps += 1
        seconds = time.perf_counter() - start
        out[epoch] = {
            "pairs": len(pairs),
            "steps": steps,
            "seconds": round(seconds, 2),
            "pairs_per_s": round(len(pairs) / seconds, 3),
        }
    return out


def bench_trl(model_dir: str, pairs: list, system_prompt: str, dtype: str, steps: int) -> dict:
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=getattr(torch, dtype))
    rows = [
        {
            "prompt": [{"role": "system", "content": system_prompt}, {"role": "user", "content": p.prompt}],
            "chosen": [{"role": "assistant", "content": p.chosen}],
            "rejected": [{"role": "assistant", "content": p.rejected}],
        }
        for p in pairs
    ]
    with tempfile.TemporaryDirectory() as tmp:
        args = DPOConfig(
            output_dir=tmp,
            per_device_train_batch_size=4,
            max_steps=steps,
            learning_rate=3e-4,
            beta=0.1,
            logging_steps=1,
            report_to=[],
            save_strategy="no",
            use_cpu=True,
            bf16=dtype == "bfloat16",
            dataloader_num_workers=0,
            gradient_checkpointing=False,  # TRL's DPO default is on; lightspiel does not checkpoint
        )
        lora = LoraConfig(
            r=LORA["lora_r"],
            lora_alpha=LORA["lora_alpha"],
            target_modules="all-linear",
            task_type="CAUSAL_LM",
        )
        trainer = DPOTrainer(
            model=model,
            args=args,
            train_dataset=Dataset.from_list(rows),
            processing_class=tok,
            peft_config=lora,
        )
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
    return {
        "pairs": 4 * steps,
        "steps": steps,
        "seconds": round(seconds, 2),
        "seconds_per_4_pair_step": round(seconds / steps, 2),
        "pairs_per_s": round(4 * steps / seconds, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default=None)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--pairs", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--trl-steps", type=int, default=4)
    parser.add_argument("--no-trl", action="store_true")
    args = parser.parse_args()
    torch.manual_seed(0)
    policy = Policy(model=args.model, dtype=args.dtype, **LORA)
    pairs = make_pairs(policy, args.pairs)
    report = {
        "benchmark": "dpo",
        "model": args.model or "embedded SmolLM2-135M-Instruct",
        "dtype": args.dtype,
        "threads": torch.get_num_threads(),
        "pairs_distinct_prompts": len({p.prompt for p in pairs}),
        "lightspiel": bench_lightspiel(policy, pairs, args.batch_size),
    }
    if not args.no_trl:
        from modules.policy import resolve_model

        report["trl"] = bench_trl(
            resolve_model(args.model), pairs, policy.system_message, args.dtype, args.trl_steps
        )
        ours = report["lightspiel"]["cached_reference"]["pairs_per_s"]
        report["speedup_vs_trl"] = round(ours / report["trl"]["pairs_per_s"], 2)
        report["speedup_vs_trl_cold_reference"] = round(
            report["lightspiel"]["cold_reference"]["pairs_per_s"] / report["trl"]["pairs_per_s"], 2
        )
    write_json_atomic(f"bench/results/dpo_{args.dtype}.json", report)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
