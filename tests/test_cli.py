"""The CLI end to end on a tiny model: artefacts, resume, and user errors."""

import json
from pathlib import Path

import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from cli import cli_main
from datamodules.records import Episode, PreferencePair, read_complete_episodes, read_jsonl


def _callback_state(ckpt: dict, name: str) -> dict:
    (state,) = [v for k, v in ckpt["callbacks"].items() if name in k]
    return state


def _scalars(run: Path) -> dict[str, list]:
    acc = EventAccumulator(str(run / "tensorboard"))
    acc.Reload()
    return {tag: acc.Scalars(tag) for tag in acc.Tags()["scalars"]}


def test_two_step_fit_writes_checkpoint_events_and_data(tmp_path, tiny_config):
    cfg, run = tiny_config(tmp_path)
    cli_main(["fit", "--config", str(cfg), "--trainer.max_steps=2", "--trainer.log_every_n_steps=1"])
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["global_step"] == 2
    keys = list(ckpt["state_dict"])
    assert keys and all(".lora_" in k for k in keys)  # trainable weights only, no frozen base
    assert ckpt["optimizer_states"]
    scalars = _scalars(run)
    assert (
        "train/loss" in scalars
        and "eval/score/random/non_loss_rate" in scalars
        and "rollout/games_per_s" in scalars
    )
    folder = run / "iter_000"
    assert len(read_jsonl(folder / "episodes.jsonl", Episode)) == 6
    train = read_jsonl(folder / "pairs_train.jsonl", PreferencePair)
    held_out = read_jsonl(folder / "pairs_eval.jsonl", PreferencePair)  # may be empty with 6 games
    assert train and not {p.state_key for p in train} & {p.state_key for p in held_out}
    assert (run / "reports" / "tournament_start.json").exists()
    # Games a person can read in TensorBoard's text tab: the tournament's and the iteration's.
    acc = EventAccumulator(str(run / "tensorboard"), size_guidance={"tensors": 0})
    acc.Reload()
    texts = {t: acc.Tensors(t) for t in acc.Tags()["tensors"] if t.endswith("games/text_summary")}
    assert {"eval/score/random/games/text_summary", "rollout/games/text_summary"} <= set(texts)
    game = texts["eval/score/random/games/text_summary"][0].tensor_proto.string_val[0].decode()
    assert "lightspiel/TicTacToe-v0" in game and "reads:" in game and "Result: seat 0:" in game


def test_resume_continues_at_the_saved_iteration_with_the_saved_callback_state(tmp_path, tiny_config):
    cfg, run = tiny_config(tmp_path)
    common = ["fit", "--config", str(cfg), "--trainer.limit_train_batches=2"]
    cli_main([*common, "--trainer.max_epochs=2"])
    first = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    assert _callback_state(first, "IterativeRegeneration")["iteration"] == 2
    history = _callback_state(first, "TournamentCallback")["history"]
    assert [h["label"] for h in history] == ["start", "epoch000", "epoch001"]
    iter0 = (run / "iter_000" / "episodes.jsonl").read_bytes()

    cli_main([*common, "--trainer.max_epochs=3", "--ckpt_path=last"])
    second = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    assert second["epoch"] == 2 and second["global_step"] == first["global_step"] + 2
    assert _callback_state(second, "IterativeRegeneration")["iteration"] == 3
    resumed = _callback_state(second, "TournamentCallback")["history"]
    assert resumed[:3] == history and [h["label"] for h in resumed[3:]] == ["epoch002"]  # no second "start"
    assert (run / "iter_000" / "episodes.jsonl").read_bytes() == iter0  # earlier iterations untouched
    assert len((run / "iter_002" / "episodes.jsonl").read_text().splitlines()) == 6
    # Training went on after the resume: the saved adapter weights changed again.
    a = first["state_dict"]
    b = second["state_dict"]
    assert a.keys() == b.keys() and any(not torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(
    "override, message",
    [
        ("--model.init_args.beta=-1", "--model.beta must be > 0"),
        ("--model.init_args.policy.model=./no/such/model", "does not exist"),
        ("--data.init_args.strategy=magic", "--data.strategy"),
    ],
)
def test_user_mistakes_get_one_clear_message(tmp_path, tiny_config, capsys, override, message):
    cfg, _ = tiny_config(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["fit", "--config", str(cfg), override])
    assert exit_info.value.code != 0
    assert message in capsys.readouterr().err


def test_missing_config_file_is_reported(capsys):
    with pytest.raises(SystemExit):
        cli_main(["fit", "--config", "configs/does_not_exist.yaml"])
    assert "does_not_exist.yaml" in capsys.readouterr().err


def test_bad_episodes_file_is_named_with_its_line_and_field(tmp_path, tiny_config, capsys):
    cfg, run = tiny_config(tmp_path)
    bad = tmp_path / "episodes.jsonl"
    bad.write_text('{"episode_id": "a", "game": "tic_tac_toe"}\n')
    with pytest.raises(SystemExit):
        cli_main(
            ["fit", "--config", str(cfg), f"--data.init_args.episodes_path={bad}", "--trainer.max_steps=1"]
        )
    err = capsys.readouterr().err
    assert f"{bad}:1: field 'env_id': missing" in err
    assert not (run / "iter_000" / "pairs_train.jsonl").exists()  # nothing written half


def test_iterative_dpo_moves_the_reference_and_keeps_it_across_resume(tmp_path, tiny_config):
    cfg, run = tiny_config(tmp_path)
    config = yaml.safe_load(cfg.read_text())
    (regen,) = [
        c for c in config["trainer"]["callbacks"] if c["class_path"].endswith("IterativeRegeneration")
    ]
    regen["init_args"]["update_reference"] = True
    config["model"]["init_args"]["reference_free"] = False  # a moving reference needs a reference
    cfg.write_text(yaml.safe_dump(config))
    common = ["fit", "--config", str(cfg), "--trainer.limit_train_batches=1"]
    for epochs in (1, 2):
        ckpt_args = ["--ckpt_path=last"] if epochs > 1 else []
        cli_main([*common, f"--trainer.max_epochs={epochs}", *ckpt_args])
        state = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
        refs = {k: v for k, v in state.items() if ".reference." in k}
        assert refs, "the reference adapter is part of the checkpoint"
        # The snapshot at the end of each iteration equals the adapter as trained so far.
        assert all(torch.equal(v, state[k.replace(".reference.", ".default.")]) for k, v in refs.items())


def test_resuming_with_other_lora_options_is_a_clear_error(tmp_path, tiny_config, capsys):
    cfg, _ = tiny_config(tmp_path)
    cli_main(["fit", "--config", str(cfg), "--trainer.max_steps=1"])
    with pytest.raises(SystemExit):
        cli_main(
            [
                "fit",
                "--config",
                str(cfg),
                "--trainer.max_steps=2",
                "--ckpt_path=last",
                "--model.init_args.policy.lora_r=8",
            ]
        )
    assert "lora_r" in capsys.readouterr().err


def test_tournament_always_evaluates_after_the_last_epoch(tmp_path, tiny_config):
    cfg, run = tiny_config(tmp_path)
    config = yaml.safe_load(cfg.read_text())
    (tour,) = [c for c in config["trainer"]["callbacks"] if c["class_path"].endswith("TournamentCallback")]
    tour["init_args"]["every_n_epochs"] = 5
    cfg.write_text(yaml.safe_dump(config))
    cli_main(["fit", "--config", str(cfg), "--trainer.max_epochs=2", "--trainer.limit_train_batches=1"])
    history = json.loads((run / "reports" / "tournament_history.json").read_text())
    assert [h["label"] for h in history] == ["start", "epoch001"]


def test_a_run_stopped_by_its_time_budget_still_ends_with_an_evaluation(tmp_path, tiny_config):
    """``--trainer.max_time`` stops the run long before ``max_epochs``: the epoch it stopped in is
    still evaluated, so the run still has its before/after comparison."""
    cfg, run = tiny_config(tmp_path)
    config = yaml.safe_load(cfg.read_text())
    (tour,) = [c for c in config["trainer"]["callbacks"] if c["class_path"].endswith("TournamentCallback")]
    tour["init_args"]["every_n_epochs"] = 50
    cfg.write_text(yaml.safe_dump(config))
    cli_main(["fit", "--config", str(cfg), "--trainer.max_epochs=50", "--trainer.max_time=00:00:00:01"])
    last = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)["epoch"]
    history = json.loads((run / "reports" / "tournament_history.json").read_text())
    assert last < 49 and [h["label"] for h in history] == ["start", f"epoch{last:03d}"]
    assert (run / "reports" / "tournament_comparison.json").exists()


def test_two_tournaments_sit_in_one_trainer_with_their_own_state_and_reports(tmp_path, tiny_config):
    """Two stateful tournaments (another game each) keep separate checkpoint state, metrics and files."""
    cfg, run = tiny_config(tmp_path)
    config = yaml.safe_load(cfg.read_text())
    (tour,) = [c for c in config["trainer"]["callbacks"] if c["class_path"].endswith("TournamentCallback")]
    kuhn = {"class_path": tour["class_path"], "init_args": {**tour["init_args"], "name": "kuhn",
            "env": "lightspiel/KuhnPoker-v0", "env_kwargs": {}}}  # fmt: skip
    tour["init_args"]["name"] = "ttt"
    config["trainer"]["callbacks"].append(kuhn)
    cfg.write_text(yaml.safe_dump(config))
    cli_main(["fit", "--config", str(cfg), "--trainer.max_steps=1"])
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    states = {k: v for k, v in ckpt["callbacks"].items() if k.startswith("TournamentCallback")}
    assert len(states) == 2 and all(len(v["history"]) == 2 for v in states.values())  # start + end
    ttt = json.loads((run / "reports" / "tournament_ttt_start.json").read_text())
    kuhn_report = json.loads((run / "reports" / "tournament_kuhn_start.json").read_text())
    assert {g for g in ttt["games"]["score"]["random"]} == {
        g for g in kuhn_report["games"]["score"]["random"]
    }
    scalars = _scalars(run)
    assert "eval_ttt/score/random/win_rate" in scalars and "eval_kuhn/score/random/win_rate" in scalars
    # Kuhn's returns are chip counts (+-1 or +-2), tic-tac-toe's only +-1 or 0.
    kuhn_returns = {abs(g["return"]) for g in kuhn_report["games"]["score"]["random"].values()}
    assert kuhn_returns <= {1.0, 2.0} and 0.0 not in kuhn_returns


def _loss_series(run: Path) -> list[tuple[int, float]]:
    return [(e.step, e.value) for e in _scalars(run)["train/loss"]]


def _fit_in_legs(cfg, legs: list[int], *options: str) -> None:
    """Fit to each leg's epoch count in turn, deterministically, every leg after the first resuming
    from the run's last checkpoint (``[4]``: straight; ``[2, 4]``: stopped after 2, then resumed)."""
    for k, epochs in enumerate(legs):
        resume = ["--ckpt_path=last"] if k else []
        cli_main(
            [
                "fit",
                "--config",
                str(cfg),
                f"--trainer.max_epochs={epochs}",
                "--trainer.deterministic=true",
                *options,
                *resume,
            ]
        )


@pytest.mark.parametrize("reference_free", [True, False], ids=["no-reference", "dpo-reference"])
def test_a_resumed_run_is_the_uninterrupted_run(tmp_path, tiny_config, reference_free):
    """4 epochs straight == 2 epochs, then ``--ckpt_path last`` to 4: the same games, the same number
    of optimizer steps, the same logged losses and bitwise the same final adapter weights; with the
    quickstart's loss (no reference) and with DPO's reference (its passes over later iterations'
    states, and the cache of their log-probabilities that the checkpoint carries, take part).

    ``trainer.deterministic`` makes torch pick its deterministic CPU kernels: without it, two threads
    give results that differ in the last bits from run to run (even two identical runs in one process
    do), which no checkpoint can capture."""
    results = {}
    for name, legs in {"straight": [4], "resumed": [2, 4]}.items():
        (tmp_path / name).mkdir()
        cfg, run = tiny_config(tmp_path / name)
        _fit_in_legs(
            cfg,
            legs,
            "--trainer.log_every_n_steps=1",
            "--model.init_args.policy.lora_dropout=0.1",  # training draws random masks
            f"--model.init_args.reference_free={str(reference_free).lower()}",
        )
        ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
        games = [(run / f"iter_{i:03d}" / "episodes.jsonl").read_text() for i in range(4)]
        results[name] = (ckpt, _loss_series(run), games)
    (a, losses_a, games_a), (b, losses_b, games_b) = results["straight"], results["resumed"]
    assert games_a == games_b  # every iteration played the same games (ids, moves, returns)
    assert a["global_step"] == b["global_step"] > 4
    assert losses_a == losses_b and len(losses_a) == a["global_step"]
    assert a["state_dict"].keys() == b["state_dict"].keys()
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])


def test_failure_replay_in_the_preference_loop_replays_last_iterations_lost_states(tmp_path, tiny_config):
    """The quickstart with ``FailureReplay``: the games the learner lost in one iteration come back,
    from the learner's last decision, as the first games of the next; the buffer and the starts it
    handed out travel in the checkpoint, so a resumed run replays the uninterrupted run's games."""
    results = {}
    for name, legs in {"straight": [3], "resumed": [1, 3]}.items():
        (tmp_path / name).mkdir()
        cfg, run = tiny_config(tmp_path / name)
        config = yaml.safe_load(cfg.read_text())
        config["trainer"]["callbacks"] = [
            {"class_path": "callbacks.FailureReplay", "init_args": {"share": 0.5}},
            *(
                c
                for c in config["trainer"]["callbacks"]
                if not c["class_path"].endswith("TournamentCallback")
            ),
        ]
        config["data"]["init_args"]["opponents"] = ["random"]
        cfg.write_text(yaml.safe_dump(config))
        _fit_in_legs(cfg, legs)
        results[name] = [(run / f"iter_{i:03d}" / "episodes.jsonl").read_text() for i in range(3)]
        state = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)["callbacks"]
        (replay,) = [v for k, v in state.items() if k.startswith("FailureReplay")]
        assert replay["entries"] and all(s["env"] == "lightspiel/TicTacToe-v0" for s in replay["entries"])
        assert replay["handed"] and all(s["opponent"] == "random" for s in replay["handed"])
    assert results["straight"] == results["resumed"]  # the same games, replays included, none twice
    run = tmp_path / "straight" / "run"
    first = read_complete_episodes(run / "iter_000" / "episodes.jsonl")
    second = read_complete_episodes(run / "iter_001" / "episodes.jsonl")
    lost = {
        (e.seed, tuple([t for t in e.turns if t.learner][-1].history))
        for e in first
        if e.returns[e.learner_seat] < 0
    }
    replayed = [e for e in second if e.start_history]
    assert lost and len(replayed) == min(len(lost), 3)  # half of 6 games, at most the failures found
    assert {(e.seed, tuple(e.start_history)) for e in replayed} <= lost
    assert all(e.opponent == "random" and e.turns[0].history == e.start_history for e in replayed)
