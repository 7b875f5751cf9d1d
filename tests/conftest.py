"""Shared fixtures: a tiny randomly initialised Llama with the embedded model's tokenizer.

The tiny model is saved to a folder and loaded through the same path a user's local model takes.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")  # as cli/__init__.py: repeatable CPU products

import pytest
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> str:
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from modules.policy import embedded_model_dir

    tokenizer = AutoTokenizer.from_pretrained(embedded_model_dir())
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    folder = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return str(folder)


@pytest.fixture
def tiny_policy(tiny_model_dir):
    from modules.policy import Policy

    torch.manual_seed(0)
    return Policy(model=tiny_model_dir, lora_r=4, lora_alpha=8)


#: Sizes a shipped config is shrunk to for tests (a key is changed only where the config has it).
TINY_SIZES = {
    "data": {"num_episodes": 6, "num_envs": 6, "batch_size": 4, "group_size": 2, "sft_examples": 8},
    "callback": {"num_games": 4, "every_n_epochs": 1, "num_problems": 4},
}


def _tiny_config(tmp_path: Path, model_dir: str, name: str = "quickstart.yaml") -> tuple[Path, Path]:
    """A shipped config with only its sizes shrunk and the tiny model swapped in. It assumes no
    particular layout beyond LightningCLI's: whatever model, datamodule and callbacks it names."""
    cfg = yaml.safe_load((ROOT / "configs" / name).read_text())
    run = tmp_path / "run"
    cfg.setdefault("trainer", {})["default_root_dir"] = str(run)
    model_args = cfg["model"].get("init_args", {})
    model_args.setdefault("policy", {}).update(model=model_dir, dtype="float32", lora_r=4, lora_alpha=8)
    data_args = cfg.get("data", {}).get("init_args", {})
    optional = ("group_size", "sft_examples")
    data_args.update({k: v for k, v in TINY_SIZES["data"].items() if k in data_args or k not in optional})
    for cb in cfg["trainer"].get("callbacks", []) or []:
        args = cb.setdefault("init_args", {})
        args.update({k: v for k, v in TINY_SIZES["callback"].items() if k in args})
        if "opponents" in args:
            args["opponents"] = args["opponents"][:1]
    path = tmp_path / name
    path.write_text(yaml.safe_dump(cfg))
    return path, run


@pytest.fixture
def tiny_config(tiny_model_dir):
    """``tiny_config(tmp_path, name="quickstart.yaml") -> (config path, run folder)``."""
    return lambda tmp_path, name="quickstart.yaml": _tiny_config(tmp_path, tiny_model_dir, name)
