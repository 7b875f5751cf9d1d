"""Every shipped config parses and runs end to end on a tiny model (sizes shrunk, nothing else)."""

import json
from pathlib import Path

import pytest
import yaml

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


@pytest.mark.parametrize("env_id", ["lightspiel/ConnectFour-v0", "lightspiel/KuhnPoker-v0"])
def test_quickstart_switches_game_with_one_line(tmp_path, tiny_config, env_id):
    cfg, run = tiny_config(tmp_path)
    # The same run folder played tic-tac-toe before: the switch must not reuse those games.
    cli_main(["fit", "--config", str(cfg), "--trainer.max_steps=1"])
    if "Kuhn" in env_id:  # and the tournament can report exploitability on Kuhn
        config = yaml.safe_load(cfg.read_text())
        (tour,) = [
            c for c in config["trainer"]["callbacks"] if c["class_path"].endswith("TournamentCallback")
        ]
        tour["init_args"]["exploitability"] = True
        cfg.write_text(yaml.safe_dump(config))
    cli_main(["fit", "--config", str(cfg), f"--data.init_args.env={env_id}", "--trainer.max_steps=2"])
    episodes = (run / "iter_000" / "episodes.jsonl").read_text()
    assert env_id in episodes
    assert (run / "checkpoints" / "last.ckpt").exists()
    pairs = (run / "iter_000" / "pairs_train.jsonl").read_text().splitlines()
    assert pairs and all('"strategy": "oracle:mcts"' in line for line in pairs)
    report = json.loads((run / "reports" / "tournament_start.json").read_text())
    if "Kuhn" in env_id:
        assert 0.0 <= report["exploitability"]["exploitability"] <= 3.0
        assert report["exploitability"]["information_states"] == 12
