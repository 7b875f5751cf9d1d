"""How much one DPO training pass teaches the score-mode policy: at the states it trained on, and at
states it never saw.

    python bench/epoch_fit.py --train runs/quickstart/iter_000/pairs_train.jsonl \
        --heldout runs/other/iter_002/pairs_train.jsonl

Trains a fresh adapter on the embedded model (or ``--model``) with the DPO module on the ``--train``
pairs for ``--epochs`` epochs (no tournament, no rollouts; the defaults are DPO at beta 0.1, and
``--reference-free --beta 1.0`` is the shipped quickstart's loss), then asks the score-mode policy, at
every state of the pairs, which legal move it ranks first: the pair's chosen move (the oracle's
best), a move some pair rejects (known worse), or another. Held-out states are those of the
``--heldout`` pairs that are not among the training states. The same measure before training is
the baseline. Noise: a state is one count, so with ~140 training states a difference under ~0.08 in
a share is within what two seeds of the same settings give.

Prints one JSON object (and writes it to ``--out``).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import lightning as L  # noqa: E402
import torch  # noqa: E402

from datamodules import PreferenceDataModule  # noqa: E402
from modules import DPO, Policy  # noqa: E402
from modules.errors import ConfigError  # noqa: E402
from modules.losses import DPO_LOSS_TYPES  # noqa: E402

_LEGAL = re.compile(r"Legal moves: ([^\n]*)")


def states_of(paths: list[str], keep=lambda pair: True) -> dict[str, dict]:
    """``{user prompt: {best, worse (legal rejected moves), legal}}`` over the pairs of ``paths``."""
    states: dict[str, dict] = {}
    for path in paths:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                pair = json.loads(line)
                if not keep(pair):
                    continue
                text = pair["prompt"][-1]["content"] if isinstance(pair["prompt"], list) else pair["prompt"]
                legal = _LEGAL.search(text)
                if legal is None:
                    raise ConfigError(
                        f"{path}: a prompt without a 'Legal moves:' line (expected a game's pairs)"
                    )
                state = states.setdefault(text, {"best": _answer(pair["chosen"]), "worse": set()})
                state["legal"] = legal.group(1).split()
                if _answer(pair["rejected"]) in state["legal"]:
                    state["worse"].add(_answer(pair["rejected"]))
    return states


def _answer(completion) -> str:
    return completion[-1]["content"] if isinstance(completion, list) else completion


@torch.no_grad()
def choices(policy: Policy, states: dict[str, dict]) -> dict:
    """Where the policy's top-ranked legal move falls, as shares of the states."""
    keys = sorted(states)
    best = worse = 0
    p_best = 0.0
    for start in range(0, len(keys), 64):
        chunk = keys[start : start + 64]
        probs = policy.action_probabilities(chunk, [states[k]["legal"] for k in chunk], temperature=1.0)
        for key, p in zip(chunk, probs):
            state = states[key]
            top = state["legal"][max(range(len(p)), key=p.__getitem__)]
            best += top == state["best"]
            worse += top in state["worse"]
            p_best += p[state["legal"].index(state["best"])]
    n = len(keys)
    return {
        "states": n,
        "top_is_chosen": round(best / n, 3),
        "top_is_rejected": round(worse / n, 3),
        "p_chosen": round(p_best / n, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--train", nargs="+", required=True, help="pairs JSONL to train on")
    parser.add_argument(
        "--heldout", nargs="+", required=True, help="pairs JSONL whose other states are measured"
    )
    parser.add_argument("--model", default=None, help="hub name or folder (default: the embedded model)")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--lora-compute", default="base", choices=["base", "float32"])
    parser.add_argument("--beta", type=float, default=0.1)
    parser.add_argument("--rpo-alpha", type=float, default=0.5)
    parser.add_argument("--loss-type", default="sigmoid", choices=DPO_LOSS_TYPES, help="DPO's loss and its variants")
    parser.add_argument(
        "--reference-free", action="store_true", help="no reference: pairs ranked by the policy alone (CPO)"
    )
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument(
        "--batch-size", type=int, default=32, help="pairs a step (a state's pairs stay together)"
    )
    parser.add_argument("--half", action="store_true", help="train on half of the states (by state key)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="bench/results/epoch_fit.json")
    args = parser.parse_args()
    for path in args.train + args.heldout:
        if not Path(path).is_file():
            raise ConfigError(f"--train/--heldout: no such file {path!r} (expected pairs JSONL)")

    def keep(pair: dict) -> bool:
        return not args.half or int(pair["state_key"], 16) % 2 == 0

    run = Path(tempfile.mkdtemp(prefix="epoch_fit-"))  # the kept pairs and the datamodule's folder
    train_file = run / "pairs_train.jsonl"
    with open(train_file, "w", encoding="utf-8") as out:
        for path in args.train:
            with open(path, encoding="utf-8") as fh:
                out.writelines(line for line in fh if keep(json.loads(line)))
    trained = states_of([str(train_file)])
    heldout = {k: v for k, v in states_of(args.heldout).items() if k not in trained}

    torch.manual_seed(args.seed)
    policy = Policy(
        model=args.model, dtype=args.dtype, lora_compute=args.lora_compute, lora_r=16, lora_alpha=32
    )
    policy.eval()
    before = {"trained": choices(policy, trained), "heldout": choices(policy, heldout)}
    module = DPO(
        policy,
        beta=args.beta,
        loss_type=args.loss_type,
        rpo_alpha=args.rpo_alpha,
        lr=args.lr,
        reference_free=args.reference_free,
    )
    data = PreferenceDataModule(
        pairs_path=str(train_file), batch_size=args.batch_size, run_dir=str(run), seed=args.seed
    )
    start = time.perf_counter()
    L.Trainer(
        max_epochs=args.epochs,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
    ).fit(module, data)
    seconds = time.perf_counter() - start
    shutil.rmtree(run, ignore_errors=True)
    policy.eval()
    after = {"trained": choices(policy, trained), "heldout": choices(policy, heldout)}
    settings = {k: v for k, v in vars(args).items() if k not in ("train", "heldout", "out")}
    report = {
        "benchmark": "epoch_fit",
        "train": args.train,
        "heldout": args.heldout,
        "settings": settings,
        "train_pairs": len(data.train_pairs),
        "fit_seconds": round(seconds, 1),
        "before": before,
        "after": after,
    }
    text = json.dumps(report, indent=2)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
