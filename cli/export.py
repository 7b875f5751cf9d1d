"""``python -m cli export``: a lightspiel checkpoint -> a peft adapter folder (and a merged model).

    python -m cli export --config configs/quickstart.yaml \\
        --ckpt_path runs/quickstart/checkpoints/last.ckpt --out exports/quickstart [--merge]

writes ``<out>/adapter`` (``adapter_config.json`` + ``adapter_model.safetensors`` + the tokenizer:
``peft.PeftModel.from_pretrained(base, "<out>/adapter")`` loads it onto the base model the config
names) and, with ``--merge``, ``<out>/merged``: the base weights with the adapter merged in,
safetensors, loadable by plain ``transformers.AutoModelForCausalLM.from_pretrained``. The config
gives the model and LoRA options the checkpoint was trained with; a checkpoint of another shape is
one clear error. Each folder is written under a temporary name and renamed when complete. A frozen
DPO reference and the tournament's snapshot adapters in the checkpoint are not exported: only the trained one.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from cli.verbs import VerbParser, load_trained_module


def _parser():
    parser = VerbParser(
        prog="python -m cli export",
        description="Export a lightspiel checkpoint as a peft adapter folder (and, with --merge, a merged model).",
    )
    parser.add_argument("--config", required=True, help="the config the checkpoint was trained with")
    parser.add_argument(
        "--ckpt_path", required=True, help="a lightspiel checkpoint (e.g. runs/X/checkpoints/last.ckpt)"
    )
    parser.add_argument("--out", required=True, help="folder to write adapter/ (and merged/) into")
    parser.add_argument(
        "--merge", action="store_true", help="also write merged/: base + adapter, plain transformers"
    )
    return parser


def _write_folder(out: Path, name: str, save) -> Path:
    """Run ``save(tmp_folder)`` and rename the folder to ``out/name`` once it is complete."""
    out.mkdir(parents=True, exist_ok=True)
    target = out / name
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=out))
    try:
        save(tmp)
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def export(config: str, ckpt_path: str, out: str, merge: bool = False) -> dict[str, Path]:
    """Write the adapter (and the merged model); return the folders written."""
    module = load_trained_module(config, ckpt_path)
    policy = module.policy
    peft_model = policy.model
    peft_model.set_adapter("default")
    written = {}

    def save_adapter(folder: Path) -> None:
        peft_model.save_pretrained(folder, selected_adapters=["default"], safe_serialization=True)
        policy.tokenizer.save_pretrained(folder)

    written["adapter"] = _write_folder(Path(out), "adapter", save_adapter)
    if merge:
        for name in [n for n in peft_model.peft_config if n != "default"]:  # reference, snapshots
            peft_model.delete_adapter(name)
        peft_model.set_adapter("default")

        def save_merged(folder: Path) -> None:
            merged = peft_model.merge_and_unload()
            merged.save_pretrained(folder, safe_serialization=True)
            policy.tokenizer.save_pretrained(folder)

        written["merged"] = _write_folder(Path(out), "merged", save_merged)
    return written


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    written = export(args.config, args.ckpt_path, args.out, args.merge)
    for kind, folder in written.items():
        print(f"lightspiel export: {kind} -> {folder}", file=sys.stderr)
    return 0
