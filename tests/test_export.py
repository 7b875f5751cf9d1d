"""``python -m cli export``: a trained checkpoint loads with plain peft and plain transformers and gives
lightspiel's own log-probabilities."""

from __future__ import annotations

import pytest
import torch

from cli import cli_main
from cli.export import load_trained_module


def _perturb_adapter(ckpt_path) -> None:
    """Give the checkpoint's LoRA weights a clearly non-zero update (a fresh adapter is the identity,
    which would make any load look right)."""
    ckpt = torch.load(ckpt_path, weights_only=False)
    gen = torch.Generator().manual_seed(0)
    for key, value in ckpt["state_dict"].items():
        if ".lora_B." in key and ".default." in key:
            ckpt["state_dict"][key] = value + 0.05 * torch.randn(value.shape, generator=gen)
    torch.save(ckpt, ckpt_path)


def _logps(model, tokenizer_ids: list[int], completion: list[int]) -> torch.Tensor:
    ids = torch.tensor([tokenizer_ids + completion])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, len(tokenizer_ids) - 1 : -1].float()
    return logits.log_softmax(-1).gather(-1, torch.tensor(completion)[:, None]).squeeze(-1)


def test_export_loads_with_plain_peft_and_transformers_with_the_same_logps(
    tmp_path, tiny_config, tiny_model_dir
):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    cfg, run = tiny_config(tmp_path)
    cli_main(["fit", "--config", str(cfg), "--trainer.max_steps=1", "--trainer.limit_val_batches=0"])
    ckpt = run / "checkpoints" / "last.ckpt"
    _perturb_adapter(ckpt)
    out = tmp_path / "export"
    cli_main(["export", "--config", str(cfg), "--ckpt_path", str(ckpt), "--out", str(out), "--merge"])

    ours = load_trained_module(str(cfg), str(ckpt)).policy
    prompt, completion = ours.prompt_ids("Tic-tac-toe. Your move?"), ours.completion_ids("5")
    with torch.no_grad(), ours.evaluating():
        expected = ours.completion_logps([prompt], [[completion]])[0, 0]
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    plain_base = _logps(base, prompt, completion).sum()
    assert abs(float(plain_base - expected)) > 1e-3  # the adapter matters
    peft_model = PeftModel.from_pretrained(base, out / "adapter").eval()
    assert float(_logps(peft_model, prompt, completion).sum()) == pytest.approx(float(expected), abs=1e-5)
    merged = AutoModelForCausalLM.from_pretrained(out / "merged").eval()
    assert float(_logps(merged, prompt, completion).sum()) == pytest.approx(float(expected), abs=1e-5)
    assert sorted(p.name for p in (out / "adapter").iterdir() if p.suffix == ".safetensors") == [
        "adapter_model.safetensors"
    ]
    # The config fit saved in the run folder (every override, and a ckpt_path key) works as well.
    (saved,) = run.rglob("config.yaml")
    again = load_trained_module(str(saved), str(ckpt)).policy
    with torch.no_grad(), again.evaluating():
        assert float(again.completion_logps([prompt], [[completion]])[0, 0]) == pytest.approx(
            float(expected), abs=1e-6
        )


def test_export_bad_inputs_are_one_line(tmp_path, tiny_config, capsys):
    cfg, _ = tiny_config(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        cli_main(
            [
                "export",
                "--config",
                str(cfg),
                "--ckpt_path",
                str(tmp_path / "nope.ckpt"),
                "--out",
                str(tmp_path / "o"),
            ]
        )
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"lightspiel: error: --ckpt_path: no such file {str(tmp_path / 'nope.ckpt')!r} (expected a lightspiel .ckpt)"
    ]
    assert not (tmp_path / "o").exists()
