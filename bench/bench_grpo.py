"""GRPO step time: lightspiel's GRPO module against TRL's GRPOTrainer, same prompts and settings.

    python bench/bench_grpo.py --prompts 4 --group-size 4 --steps 3 --dtype float32 [--no-trl]

One step = sample ``group_size`` free-text answers for each of ``prompts`` tic-tac-toe prompts
(real positions from self-play), reward each answer (1 if the env's parser reads a legal move from
it, else 0), compute group-normalised advantages and take one optimizer step on the clipped objective
with a k3 KL to the adapter-disabled reference (``beta``). Both sides use the same base model, dtype,
LoRA (rank, alpha, all linear layers), chat template with the same system prompt, completion length,
temperature and group size, gradient checkpointing off on both (TRL's GRPO turns it on by default).
TRL's step is its ``GRPOTrainer.train()`` wall time divided by its steps
(it includes TRL's generation, reward call, reference pass and backward); lightspiel's is
``Policy.act`` (generate, per-token log-probs recorded while sampling) + ``group_advantages`` +
``GRPO.training_step`` + backward + optimizer step, the same work the on-policy datamodule and the
Trainer do per batch. The first step of each side is a warm-up and is not timed.

Prints one JSON object and writes bench/results/grpo_<dtype>.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import envs  # noqa: E402,F401  (registers the ids)
from datamodules.records import write_json_atomic  # noqa: E402
from modules.grpo import GRPO  # noqa: E402
from modules.losses import group_advantages  # noqa: E402
from modules.policy import Policy, resolve_model  # noqa: E402

ENV_ID = "lightspiel/TicTacToe-v0"
LORA = {"lora_r": 16, "lora_alpha": 32}


def make_states(n: int) -> list[tuple[list[int], str, list[str]]]:
    """``n`` distinct tic-tac-toe positions: (history, prompt, legal action texts)."""
    rng = np.random.default_rng(0)
    env = gym.make(ENV_ID, opponent="self").unwrapped
    out, seen = [], set()
    while len(out) < n:
        obs, _ = env.reset(seed=int(rng.integers(1 << 30)))
        for _ in range(int(rng.integers(0, 5))):
            obs, _, done, _, _ = env.step(int(rng.integers(len(obs["legal_actions"]))))
            if done:
                break
        else:
            if obs["prompt"] not in seen:
                seen.add(obs["prompt"])
                out.append((list(env.state.history()), obs["prompt"], list(obs["legal_actions"])))
    return out


def legal_reward(history: list[int], answer: str) -> float:
    """1.0 if the env reads a legal move from ``answer`` at the position ``history``."""
    env = gym.make(ENV_ID, opponent="self").unwrapped
    env.reset(seed=0, options={"history": history})
    _, _, _, _, info = env.step(answer)
    return 1.0 if info["legal"] else 0.0


def bench_lightspiel(policy: Policy, states: list, group_size: int, steps: int, beta: float) -> dict:
    import logging

    logging.getLogger("lightning").setLevel(logging.ERROR)
    module = GRPO(policy, beta=beta, lr=1e-5, loss_aggregation="sequence_mean")
    module.log = module.log_dict = lambda *a, **k: None  # no Trainer attached
    opt = module.configure_optimizers()
    if isinstance(opt, dict):
        opt = opt["optimizer"]
    times, rewards = [], []
    for step in range(steps + 1):
        start = time.perf_counter()
        observations = [{"prompt": p, "legal_actions": legal} for _, p, legal in states for _ in range(group_size)]
        actions = policy.act(observations, mode="generate")
        histories = [h for h, _, _ in states for _ in range(group_size)]
        reward = torch.tensor([legal_reward(h, a.text) for h, a in zip(histories, actions)])
        groups = [i // group_size for i in range(len(actions))]
        adv = group_advantages(reward, groups)
        rows = [
            {"prompt": o["prompt"], "completion_ids": a.token_ids, "old_logps": a.token_logps, "advantage": float(v)}
            for o, a, v in zip(observations, actions, adv)
        ]
        opt.zero_grad()
        module.training_step(rows, 0).backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
        opt.step()
        if step:
            times.append(time.perf_counter() - start)
            rewards.append(float(reward.mean()))
    return {
        "steps": steps,
        "completions_per_step": len(states) * group_size,
        "seconds_per_step": round(sum(times) / len(times), 2),
        "mean_reward": round(sum(rewards) / len(rewards), 3),
    }


def bench_trl(model_dir: str, states: list, system_prompt: str, args) -> dict:
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    by_prompt = {p: h for h, p, _ in states}

    def reward(prompts, completions, **_):
        return [
            legal_reward(by_prompt[p[-1]["content"]], c[0]["content"]) for p, c in zip(prompts, completions)
        ]

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=getattr(torch, args.dtype))
    rows = [
        {"prompt": [{"role": "system", "content": system_prompt}, {"role": "user", "content": p}]}
        for _, p, _ in states
    ]
    batch = len(states) * args.group_size
    with tempfile.TemporaryDirectory() as tmp:
        config = GRPOConfig(
            output_dir=tmp,
            per_device_train_batch_size=batch,
            num_generations=args.group_size,
            max_completion_length=args.max_new_tokens,
            temperature=args.temperature,
            beta=args.beta,
            learning_rate=1e-5,
            max_steps=args.steps + 1,
            logging_steps=1,
            report_to=[],
            save_strategy="no",
            use_cpu=True,
            bf16=args.dtype == "bfloat16",
            dataloader_num_workers=0,
            shuffle_dataset=False,
            gradient_checkpointing=False,  # TRL's GRPO default is on; lightspiel does not checkpoint
        )
        lora = LoraConfig(
            r=LORA["lora_r"], lora_alpha=LORA["lora_alpha"], target_modules="all-linear", task_type="CAUSAL_LM"
        )
        trainer = GRPOTrainer(
            model=model,
            reward_funcs=reward,
            args=config,
            train_dataset=Dataset.from_list(rows * (args.steps + 1)),
            processing_class=tok,
            peft_config=lora,
        )
        stamps: list[float] = []

        from transformers import TrainerCallback

        class Stamp(TrainerCallback):
            def on_step_end(self, *_, **__):
                stamps.append(time.perf_counter())

        trainer.add_callback(Stamp())
        start = time.perf_counter()
        trainer.train()
        rewards = [h["reward"] for h in trainer.state.log_history if "reward" in h]
    times = np.diff([start, *stamps])[1:]  # the first step is a warm-up
    return {
        "steps": len(times),
        "completions_per_step": batch,
        "seconds_per_step": round(float(np.mean(times)), 2),
        "mean_reward": round(float(np.mean(rewards[1:])) if len(rewards) > 1 else float("nan"), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--group-size", type=int, default=4)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--beta", type=float, default=0.04)
    parser.add_argument("--no-trl", action="store_true")
    args = parser.parse_args()
    torch.manual_seed(0)
    policy = Policy(
        model=args.model,
        dtype=args.dtype,
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        act_batch_size=args.prompts * args.group_size,
        **LORA,
    )
    states = make_states(args.prompts)
    report = {
        "benchmark": "grpo",
        "model": args.model or "embedded SmolLM2-135M-Instruct",
        "dtype": args.dtype,
        "threads": torch.get_num_threads(),
        "prompts": args.prompts,
        "group_size": args.group_size,
        "max_new_tokens": args.max_new_tokens,
        "beta": args.beta,
        "lightspiel": bench_lightspiel(policy, states, args.group_size, args.steps, args.beta),
    }
    if not args.no_trl:
        report["trl"] = bench_trl(resolve_model(args.model), states, policy.system_message, args)
        report["speedup_vs_trl"] = round(
            report["trl"]["seconds_per_step"] / report["lightspiel"]["seconds_per_step"], 2
        )
    write_json_atomic(f"bench/results/grpo_{args.dtype}.json", report)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
