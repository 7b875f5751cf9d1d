"""Each user mistake is one line on stderr, before any model loads or anything is written."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

import cli
from cli import cli_main


@pytest.fixture(autouse=True)
def _plain_argv(monkeypatch):
    """As from a shell: pytest's own arguments would make LightningCLI warn (a line on stderr)."""
    monkeypatch.setattr(sys, "argv", ["lightspiel"])


def _edit(cfg: Path, change) -> None:
    config = yaml.safe_load(cfg.read_text())
    change(config)
    cfg.write_text(yaml.safe_dump(config))


def _rename_num_episodes(config: dict) -> None:
    data = config["data"]["init_args"]
    data["num_episode"] = data.pop("num_episodes")


def _num_episodes_lots(config: dict) -> None:
    config["data"]["init_args"]["num_episodes"] = "lots"


def _rename_max_epochs(config: dict) -> None:
    config["trainer"]["max_epoch"] = config["trainer"].pop("max_epochs")


def _callback_typo(config: dict) -> None:
    (regen,) = [c for c in config["trainer"]["callbacks"] if c["class_path"].endswith("IterativeRegeneration")]
    regen["init_args"]["every_n_epoch"] = regen["init_args"].pop("every_n_epochs")


def _own_checkpoint_dir(config: dict) -> None:
    folder = str(Path(config["trainer"]["default_root_dir"]).parent / "ckpts")
    config["trainer"]["callbacks"].append(
        {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint", "init_args": {"dirpath": folder}}
    )


# (edit of the tiny config, or raw text replacing it; extra arguments; the message, formatted
# with {cfg} (the config path) and {run} (the run folder))
CASES = {
    "unknown option in the YAML": (
        _rename_num_episodes,
        [],
        "data.init_args.num_episode: unknown option; did you mean num_episodes?",
    ),
    "unknown option on the command line": (
        None,
        ["--data.init_args.num_episode", "3"],
        "data.init_args.num_episode: unknown option; did you mean num_episodes?",
    ),
    "unknown option in a nested class": (
        None,
        ["--model.init_args.policy.lora_rr=3"],
        "model.init_args.policy.lora_rr: unknown option; did you mean lora_r?",
    ),
    "unknown trainer option": (
        _rename_max_epochs,
        [],
        "trainer.max_epoch: unknown option; did you mean max_epochs?",
    ),
    "unknown callback option": (
        _callback_typo,
        [],
        "trainer.callbacks[IterativeRegeneration].init_args.every_n_epoch: unknown option; "
        "did you mean every_n_epochs?",
    ),
    "unknown top-level argument": (None, ["--ckpt_pth=last"], "ckpt_pth: unknown option; did you mean ckpt_path?"),
    "unknown class": (
        None,
        ["--data=datamodules.PreferenceDataModul"],
        "data: unknown class datamodules.PreferenceDataModul; did you mean datamodules.PreferenceDataModule?",
    ),
    "wrong type in the YAML": (
        _num_episodes_lots,
        [],
        "data.init_args.num_episodes: expected int, got 'lots'",
    ),
    "wrong type on the command line": (
        None,
        ["--trainer.max_epochs=x"],
        "trainer.max_epochs: expected int or None, got 'x'",
    ),
    "unknown env id": (
        None,
        ["--data.init_args.env=lightspiel/TicTacToe-v9"],
        "data.init_args.env: unknown env id 'lightspiel/TicTacToe-v9' (registered: lightspiel/TicTacToe-v0, ",
    ),
    "unknown game": (
        None,
        ["--data.init_args.env=lightspiel/OpenSpiel-v0", "--data.init_args.env_kwargs={{game: chesss}}"],
        "data.init_args.env_kwargs for lightspiel/OpenSpiel-v0: unknown OpenSpiel game 'chesss'",
    ),
    "misspelt opponent in a temperature map": (
        None,
        ["--data.init_args.opponent_temperature={{randon: 0}}"],
        "--data.opponent_temperature key (an opponent the games meet) must be one of self, random, mcts; "
        "got 'randon'; did you mean 'random'?",
    ),
    "datamodule option out of range": (
        None,
        ["--data.init_args.temperature=-1"],
        "--data.temperature must be > 0, got -1.0",
    ),
    "YAML syntax error": (
        "trainer:\n  max_epochs: [3\n  accelerator: cpu\n",
        [],
        "{cfg}:3:14: YAML syntax error: expected ',' or ']'",
    ),
    "empty config": ("# nothing here\n", [], "{cfg} is empty"),
    "config not a mapping": ("- fit\n", [], "{cfg}: expected a mapping of options"),
    "missing config": (None, ["--config={cfg}.missing.yaml"], "--config: no such file {cfg}.missing.yaml"),
    "nothing to resume": (
        None,
        ["--ckpt_path=last"],
        "--ckpt_path last: no last checkpoint in {run}/checkpoints to resume from",
    ),
    "nothing to resume in a configured checkpoint folder": (
        _own_checkpoint_dir,
        ["--ckpt_path=last"],
        "--ckpt_path last: no last checkpoint in {run}/../ckpts to resume from",
    ),
}


@pytest.mark.parametrize("change, extra, message", CASES.values(), ids=CASES.keys())
def test_each_mistake_is_one_line_and_writes_nothing(tmp_path, tiny_config, capsys, change, extra, message):
    cfg, run = tiny_config(tmp_path)
    if isinstance(change, str):
        cfg.write_text(change)
    elif change is not None:
        _edit(cfg, change)
    extra = [a.format(cfg=cfg, run=run) for a in extra]
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["fit", "--config", str(cfg), *extra])
    assert exit_info.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("lightspiel: error: "), lines[0]
    expected = message.format(cfg=cfg, run=run).replace(f"{run}/../", f"{run.parent}/")
    assert expected in lines[0]
    assert not run.exists()


class _Stop(Exception):
    """Stops the CLI once the configuration is final, before anything is instantiated."""


@pytest.mark.parametrize(
    "ckpt_path, has_checkpoint, resolved",
    [("last-if-any", False, None), ("last-if-any", True, "last"), ("last", True, "last")],
)
def test_resume_if_any(tmp_path, tiny_config, monkeypatch, ckpt_path, has_checkpoint, resolved):
    cfg, run = tiny_config(tmp_path)
    if has_checkpoint:
        (run / "checkpoints").mkdir(parents=True)
        (run / "checkpoints" / "last.ckpt").write_bytes(b"")
    seen = {}

    def stop(self):
        seen["ckpt_path"] = self.config.fit.ckpt_path
        raise _Stop

    monkeypatch.setattr(cli.LightspielCLI, "instantiate_classes", stop)
    with pytest.raises(_Stop):
        cli_main(["fit", "--config", str(cfg), f"--ckpt_path={ckpt_path}"])
    assert seen["ckpt_path"] == resolved
    assert run.exists() == has_checkpoint  # nothing written


def test_help_stays_lightnings(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["fit", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr()
    assert out.out.startswith("usage:") and "--trainer.max_epochs" in out.out and "--ckpt_path" in out.out
    assert not out.err.strip()
