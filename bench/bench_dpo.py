"""DPO training throughput (pairs/s): lightspiel's DPO module against TRL's DPOTrainer, same pairs.

    python bench/bench_dpo.py --pairs 16 --batch-size 4 --dtype float32 [--no-trl] [--peft-layers] [--lora-fp32]

The pairs are real: self-play tic-tac-toe states labelled by the minimax oracle. Two workloads:
- ``shared``: the oracle's pairs as they come, several per state (a state's best move against each
  worse one): lightspiel runs each distinct prompt once per batch;
- ``distinct``: one pair per state, every prompt different (~150-token chat prompts): no prompt
  sharing, only the shared chat prefix.
Both sides run on equal terms: the same base model, dtype, LoRA (rank, alpha, dropout, all linear
layers), chat-formatted prompts, batch size and learning rate, gradient checkpointing off, and the
first (warm-up) step left out of the timing. lightspiel's figure is given with the reference
log-probabilities computed in the step (``cold``, as TRL does by default), computed for the
epoch's pairs in a no-grad pre-pass of ``act_batch_size`` states timed with the steps
(``pre_pass``, what a fit does: ``DPO.cache_reference``) and cached from an earlier epoch
(``cached``). TRL runs twice, so each of lightspiel's figures has its equal: with the reference
computed in every step (its default; against ``cold``) and with ``precompute_ref_log_probs=True``
(one no-grad pass over the pairs when the trainer is built: its steps alone against ``cached``, its
steps plus that pass against ``pre_pass``; the pass is timed and scaled to the timed pairs). The
quickstart's loss has no reference (``reference_free: true``): a step then costs what a ``cached``
step costs. ``--peft-layers`` also times lightspiel with peft's own LoRA layers in place of
its fused ones (modules/lora.py), on the same pairs (``lightspiel_over_peft_layers``: on a bf16
base this includes the arithmetic's dtype); ``--lora-fp32`` with the adapter's arithmetic in
fp32 (``lora_compute: float32``, peft's arithmetic without autocast) instead of the base's dtype
(the default; TRL's ``bf16=True`` runs the adapter in bf16 under autocast too). Prints one JSON object (and writes bench/results/dpo_<dtype>.json).
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
from modules.lora import unfuse_lora_layers  # noqa: E402
from modules.policy import Policy  # noqa: E402

LORA = {"lora_r": 16, "lora_alpha": 32}


def make_pairs(policy: Policy, n: int, workload: str) -> list:
    engine = RolloutEngine("lightspiel/TicTacToe-v0", {"opponent": "self"}, num_envs=16)
    games = 32 if workload == "shared" else max(32, n)
    episodes = engine.play(policy, seeds=list(range(games)), mode="score", progress=None).episodes
    pairs = oracle_pairs(episodes, margin=0.5, max_pairs_per_state=8)
    if workload == "distinct":
        first: dict[str, object] = {}
        for pair in pairs:
            first.setdefault(pair.prompt, pair)
        pairs = list(first.values())
    if len(pairs) < n:
        raise SystemExit(f"only {len(pairs)} {workload} pairs; ask for fewer (--pairs)")
    return pairs[:n]


def bench_lightspiel(policy: Policy, pairs: list, batch_size: int) -> dict:
    import logging

    logging.getLogger("lightning").setLevel(logging.ERROR)
    module = DPO(policy, beta=0.1, lr=3e-4)
    opt = module.configure_optimizers()
    out = {}
    for epoch in ("cold_reference", "pre_pass_reference", "cached_reference"):
        batches = list(StateBatchSampler(pairs, batch_size, shuffle=False))
        timed_pairs, seconds = 0, 0.0
        if epoch == "pre_pass_reference":  # a fit's path: the epoch's reference in one wide pass first
            module.reference_changed()
            start = time.perf_counter()
            module.cache_reference([pairs[j] for batch_idx in batches[1:] for j in batch_idx])
            seconds += time.perf_counter() - start
        for i, batch_idx in enumerate(batches):
            start = time.perf_counter()
            opt.zero_grad()
            module._step([pairs[j] for j in batch_idx], "train").backward()
            opt.step()
            if i:  # the first step warms up
                seconds += time.perf_counter() - start
                timed_pairs += len(batch_idx)
        out[epoch] = {
            "pairs": timed_pairs,
            "steps": len(batches) - 1,
            "seconds": round(seconds, 2),
            "pairs_per_s": round(timed_pairs / seconds, 3),
        }
    return out


def bench_trl(
    model_dir: str,
    pairs: list,
    system_prompt: str,
    dtype: str,
    batch_size: int,
    precompute: bool = False,
) -> dict:
    """TRL's ``DPOTrainer`` on ``pairs``: steps after the first timed; with ``precompute`` the
    reference log-probs come from TRL's own pre-pass (``precompute_ref_log_probs``, at its default
    width, the step's batch: 16 pairs a pass ran slower here), timed apart."""
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import DPOConfig, DPOTrainer

    class StepClock(TrainerCallback):
        """Times every optimizer step after the first (warm-up)."""

        def __init__(self) -> None:
            self.started, self.seconds = None, 0.0

        def on_step_begin(self, args, state, control, **kwargs):
            self.started = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step > 1:
                self.seconds += time.perf_counter() - self.started

    steps = len(pairs) // batch_size

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
            per_device_train_batch_size=batch_size,
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
            precompute_ref_log_probs=precompute,
        )
        lora = LoraConfig(
            r=LORA["lora_r"],
            lora_alpha=LORA["lora_alpha"],
            target_modules="all-linear",
            task_type="CAUSAL_LM",
        )
        pre_pass = {"seconds": 0.0}

        class Trainer(DPOTrainer):
            def _precompute_ref_logps(self, dataset, name, batch_size):  # runs while the trainer is built
                start = time.perf_counter()
                out = super()._precompute_ref_logps(dataset, name, batch_size)
                pre_pass["seconds"] += time.perf_counter() - start
                return out

        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=Dataset.from_list(rows),
            processing_class=tok,
            peft_config=lora,
            callbacks=[clock := StepClock()],
        )
        trainer.train()
    timed = batch_size * (steps - 1)
    out = {
        "pairs": timed,
        "steps": steps - 1,
        "seconds": round(clock.seconds, 2),
        "pairs_per_s": round(timed / clock.seconds, 3),
    }
    if precompute:
        if not pre_pass["seconds"]:
            raise SystemExit("TRL did not run its reference pre-pass (precompute_ref_log_probs)")
        share = pre_pass["seconds"] * timed / len(rows)  # the pass over the timed pairs' share
        out["pre_pass_seconds"] = round(share, 2)
        out["pairs_per_s_with_pre_pass"] = round(timed / (clock.seconds + share), 3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--pairs", type=int, default=16, help="timed pairs per workload (plus one warm-up batch)")
    parser.add_argument("--batch-size", type=int, default=4, help="pairs per optimizer step, both sides")
    parser.add_argument("--workloads", nargs="+", default=["shared", "distinct"], choices=["shared", "distinct"])
    parser.add_argument("--no-trl", action="store_true")
    parser.add_argument(
        "--peft-layers",
        action="store_true",
        help="also time lightspiel with peft's own LoRA layers (modules/lora.py's fused layer off)",
    )
    parser.add_argument(
        "--lora-fp32",
        action="store_true",
        help="also time lightspiel with the adapter's arithmetic in fp32 (lora_compute: float32)",
    )
    parser.add_argument("--out", default=None, help="JSON report path (default bench/results/dpo_<dtype>.json)")
    args = parser.parse_args()
    torch.manual_seed(0)
    report = {
        "benchmark": "dpo",
        "model": args.model or "embedded SmolLM2-135M-Instruct",
        "dtype": args.dtype,
        "threads": torch.get_num_threads(),
        "batch_size": args.batch_size,
        "lora": {**LORA, "lora_dropout": 0.0, "target_modules": "all-linear", "lora_compute": "base"},
        "gradient_checkpointing": False,
        # from stop 35 on; earlier reports set every figure against TRL's default (reference in the step)
        "ratios": "cold vs TRL default; pre_pass vs TRL precomputed incl. its pass; cached vs TRL precomputed",
        "workloads": {},
    }
    for workload in args.workloads:
        policy = Policy(model=args.model, dtype=args.dtype, **LORA)
        pairs = make_pairs(policy, args.pairs + args.batch_size, workload)  # one warm-up batch more than timed
        row = {
            "pairs_distinct_prompts": len({p.prompt for p in pairs}),
            "mean_prompt_tokens": round(sum(len(policy.prompt_ids(p.prompt)) for p in pairs) / len(pairs), 1),
            "lightspiel": bench_lightspiel(policy, pairs, args.batch_size),
        }
        if args.peft_layers:
            plain = Policy(model=args.model, dtype=args.dtype, **LORA)
            unfuse_lora_layers(plain.model)
            row["lightspiel_peft_layers"] = bench_lightspiel(plain, pairs, args.batch_size)
            # lightspiel's layers as shipped (on bf16: the base-dtype arithmetic) against peft's own
            # (fp32 arithmetic without autocast); --lora-fp32 separates the arithmetic's share
            row["lightspiel_over_peft_layers"] = {
                epoch: round(figure["pairs_per_s"] / row["lightspiel_peft_layers"][epoch]["pairs_per_s"], 2)
                for epoch, figure in row["lightspiel"].items()
            }
            del plain
        if args.lora_fp32:
            fp32 = Policy(model=args.model, dtype=args.dtype, lora_compute="float32", **LORA)
            row["lightspiel_lora_fp32"] = bench_lightspiel(fp32, pairs, args.batch_size)
            row["base_dtype_over_lora_fp32"] = {
                epoch: round(figure["pairs_per_s"] / row["lightspiel_lora_fp32"][epoch]["pairs_per_s"], 2)
                for epoch, figure in row["lightspiel"].items()
            }
            del fp32
        if not args.no_trl:
            from modules.policy import resolve_model

            trl_args = (resolve_model(args.model), pairs, policy.system_message, args.dtype, args.batch_size)
            row["trl"] = bench_trl(*trl_args)
            row["trl_precomputed_reference"] = bench_trl(*trl_args, precompute=True)
            ours, pre = row["lightspiel"], row["trl_precomputed_reference"]
            # each of lightspiel's figures against TRL doing the same work (the reference in the step,
            # in a pre-pass counted with the steps, or already known)
            row["speedup_vs_trl_cold_reference"] = round(
                ours["cold_reference"]["pairs_per_s"] / row["trl"]["pairs_per_s"], 2
            )
            row["speedup_vs_trl_pre_pass_reference"] = round(
                ours["pre_pass_reference"]["pairs_per_s"] / pre["pairs_per_s_with_pre_pass"], 2
            )
            row["speedup_vs_trl_cached_reference"] = round(
                ours["cached_reference"]["pairs_per_s"] / pre["pairs_per_s"], 2
            )
            # what stops up to 34 reported as "cached": against TRL computing its reference in the step
            row["speedup_cached_vs_trl_default"] = round(
                ours["cached_reference"]["pairs_per_s"] / row["trl"]["pairs_per_s"], 2
            )
        report["workloads"][workload] = row
        print(json.dumps({workload: row}), flush=True)
        del policy
    write_json_atomic(args.out or f"bench/results/dpo_{args.dtype}.json", report)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
