"""Every shipped config parses (litgpt's config-hub style); each algorithm keeps one tiny smoke fit."""

import json
from pathlib import Path

import pytest
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from cli import cli_main
from envs import GAME_IDS

CONFIGS = sorted(p.name for p in (Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("name", CONFIGS)
def test_config_parses_and_instantiates(tmp_path, tiny_config, tiny_model_dir, name):
    """The config's classes and options are all valid: the model, datamodule and callbacks are built."""
    cfg, _ = tiny_config(tmp_path, name)
    cli = cli_main(["--config", str(cfg)], run=False)  # run=False: no subcommand
    assert cli.model.policy.model_name == tiny_model_dir
    shipped = yaml.safe_load((Path(__file__).resolve().parents[1] / "configs" / name).read_text())
    assert type(cli.model).__name__ == shipped["model"]["class_path"].rsplit(".", 1)[-1]
    assert type(cli.datamodule).__name__ == shipped["data"]["class_path"].rsplit(".", 1)[-1]


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
    episodes = [json.loads(line) for line in (run / "iter_000" / "episodes.jsonl").read_text().splitlines()]
    # The folder keeps the tic-tac-toe games, and the new run added its own six.
    assert sum(e["env_id"] == env_id for e in episodes) == 6
    pairs = [json.loads(line) for line in (run / "iter_000" / "pairs_train.jsonl").read_text().splitlines()]
    # MCTS values (exact search only where a position is small enough), and taken cells or full
    # columns as rejected answers (the quickstart's illegal_negatives) in connect four.
    strategies = {p["strategy"].removesuffix(":illegal-move") for p in pairs}
    assert pairs and "oracle:mcts" in strategies and strategies <= {"oracle:mcts", "oracle:minimax"}
    assert {p["game"] for p in pairs} == {GAME_IDS[env_id]}  # pairs come from the new game only
    if "Kuhn" in env_id:
        report = json.loads((run / "reports" / "tournament_start.json").read_text())
        exploit = report["exploitability"]
        assert exploit["information_states"] == 12
        # What the report says is what TensorBoard shows, and a random tiny model is not a Nash policy.
        acc = EventAccumulator(str(run / "tensorboard"))
        acc.Reload()
        logged = [s.value for s in acc.Scalars("eval/exploitability")]
        assert logged[0] == pytest.approx(exploit["exploitability"], rel=1e-5)
        assert exploit["exploitability"] > 0.05
