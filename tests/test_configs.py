"""Every shipped config parses and runs end to end on a tiny model (sizes shrunk, nothing else)."""

from pathlib import Path

import pytest

from cli import cli_main

CONFIGS = sorted(p.name for p in (Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


def test_there_are_configs():
    assert "quickstart.yaml" in CONFIGS


@pytest.mark.parametrize("name", CONFIGS)
def test_config_runs_two_steps(tmp_path, tiny_config, name):
    cfg, run = tiny_config(tmp_path, name)
    cli_main(["fit", "--config", str(cfg), "--trainer.max_steps=2"])
    assert (run / "checkpoints" / "last.ckpt").exists()
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
