"""The GPU config of seed 000 parses; without CUDA its 4-bit path stops with one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cli import cli_main

GPU_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "gpu" / "repeated_poker_dpo_qlora.yaml"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message a machine without CUDA gives")
def test_gpu_qlora_config_parses_and_says_cuda_is_needed(capsys, tmp_path):
    with pytest.raises(SystemExit) as info:
        cli_main(["fit", "--config", str(GPU_CONFIG), f"--trainer.default_root_dir={tmp_path / 'run'}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert info.value.code == 2 and err == [
        "lightspiel: error: --model.policy.load_in_4bit needs a CUDA device (bitsandbytes 4-bit); none found"
    ]
    assert not (tmp_path / "run").exists()  # nothing written
