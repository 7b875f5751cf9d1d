"""Tournament ratings through openskill, the illegal-answer gate, and the quickstart's plot."""

from __future__ import annotations

import json

import pytest
from openskill.models import PlackettLuce
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from callbacks.ratings import IllegalGate, RatingTable
from cli import cli_main


def _games(results: list[str]) -> dict:
    return {str(seed): {"result": r} for seed, r in enumerate(results)}


def test_ratings_follow_openskill_game_by_game_on_a_hand_made_table():
    table = RatingTable()
    ordinals = table.update(
        "start", {"generate": {"random": _games(["win", "win", "loss"]), "mcts": _games(["loss", "loss"])}}
    )
    # The same games, rated one at a time by openskill itself, in the table's order (random's, then mcts').
    model = PlackettLuce()
    me, rnd, mcts = model.rating(), model.rating(), model.rating()
    for opponent, result in (
        ("random", "win"),
        ("random", "win"),
        ("random", "loss"),
        ("mcts", "loss"),
        ("mcts", "loss"),
    ):
        them = rnd if opponent == "random" else mcts
        ranks = {"win": [0, 1], "loss": [1, 0]}[result]
        [[me], [them]] = model.rate([[me], [them]], ranks=ranks)
        rnd, mcts = (them, mcts) if opponent == "random" else (rnd, them)
    assert ordinals["generate@start"] == pytest.approx(me.ordinal())
    assert ordinals["random"] == pytest.approx(rnd.ordinal()) and ordinals["mcts"] == pytest.approx(
        mcts.ordinal()
    )
    assert ordinals["mcts"] > max(ordinals["generate@start"], ordinals["random"])  # MCTS won all its games
    # The next evaluation's player starts from this one's rating, and a draw against itself rates nothing.
    again = table.update("epoch000", {"generate": {"self": _games(["draw"])}})
    assert again == {"generate@epoch000": pytest.approx(me.ordinal())}
    restored = RatingTable(table.state_dict())
    assert restored.ratings == table.ratings and restored.latest == {"generate": "generate@epoch000"}


def test_gate_never_prefers_an_evaluation_whose_illegal_rate_rose():
    gate = IllegalGate(max_increase=0.05)
    assert gate.score(success=0.50, illegal=0.10) == 0.50  # the first is the best so far
    assert gate.score(success=0.70, illegal=0.30) == -1.0  # better play, but 0.20 more illegal answers
    assert gate.best_score == 0.50
    assert gate.score(success=0.60, illegal=0.14) == 0.60  # within 0.05 of the best one's 0.10
    assert (gate.best_score, gate.best_illegal) == (0.60, 0.14)
    assert (
        gate.score(success=0.40, illegal=0.0) == 0.40 and gate.best_score == 0.60
    )  # fewer illegal, not better
    with pytest.raises(ValueError, match="gate_illegal_increase"):
        IllegalGate(-0.1)


def test_quickstart_tournament_shows_ratings_and_writes_its_plot(tmp_path, tiny_config):
    cfg, run = tiny_config(tmp_path)
    cli_main(["fit", "--config", str(cfg), "--trainer.max_epochs=1", "--trainer.limit_train_batches=1"])
    start = json.loads((run / "reports" / "tournament_start.json").read_text())
    assert set(start["ratings"]) == {"score@start", "generate@start", "random"}
    png = run / "reports" / "tournament_ratings.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    acc = EventAccumulator(str(run / "tensorboard"), size_guidance={"images": 0})
    acc.Reload()
    assert "eval/ratings" in acc.Tags()["images"]
    logged = acc.Scalars("eval/rating/policy_score")
    assert logged[0].value == pytest.approx(start["ratings"]["score@start"], rel=1e-5)
    gated = [s.value for s in acc.Scalars("eval/gated_success")]
    assert len(gated) == 2 and gated[0] == pytest.approx(
        (
            start["results"]["score"]["random"]["non_loss_rate"]
            + start["results"]["generate"]["random"]["non_loss_rate"]
        )
        / 2
    )


def test_a_snapshot_met_later_is_rated_as_the_policy_of_its_evaluation():
    table = RatingTable()
    table.update("start", {"score": {"random": _games(["win", "loss"])}})
    start = table.ratings["score@start"]
    ordinals = table.update("epoch001", {"score": {"snapshot:start": _games(["win", "win", "win"])}})
    # The snapshot is the start policy: its own rating moved (down: it lost three games), no new entity.
    assert set(ordinals) == {"score@epoch001", "snapshot:score@start"}
    assert "snapshot:start" not in table.ratings and table.ratings["score@start"][0] < start[0]
    assert ordinals["score@epoch001"] > ordinals["snapshot:score@start"]


def test_snapshot_adapters_act_as_the_policy_did_and_stay_frozen(tiny_policy):
    import torch

    from datamodules.players import AdapterActor

    obs = [{"prompt": "Pick a cell.", "legal_actions": ["1", "2", "3"]}] * 2
    before = [a.logp for a in tiny_policy.act(obs, mode="score", greedy=True)]
    tiny_policy.snapshot_adapter("pool_0")
    with torch.no_grad():  # training moves the trained adapter on
        for name, p in tiny_policy.model.named_parameters():
            if "lora_B.default" in name:
                p.add_(0.5)
    after = [a.logp for a in tiny_policy.act(obs, mode="score", greedy=True)]
    past = [a.logp for a in AdapterActor(tiny_policy, "pool_0").act(obs, mode="score", greedy=True)]
    assert past == pytest.approx(before, abs=1e-6) and after != pytest.approx(before, abs=1e-3)
    assert [a.logp for a in tiny_policy.act(obs, mode="score", greedy=True)] == after  # switched back
    grads = {n: p.requires_grad for n, p in tiny_policy.model.named_parameters() if ".lora_" in n}
    assert all(grads[n] for n in grads if ".default." in n) and not any(
        grads[n] for n in grads if ".pool_0." in n
    )
    with pytest.raises(Exception, match="no adapter 'pool_9'"):
        AdapterActor(tiny_policy, "pool_9")


def test_a_pool_of_past_checkpoints_plays_rates_and_survives_a_resume(tmp_path, tiny_config):
    import torch
    import yaml

    cfg, run = tiny_config(tmp_path)
    data = yaml.safe_load(cfg.read_text())
    for cb in data["trainer"]["callbacks"]:
        if cb["class_path"].endswith("TournamentCallback"):
            cb["init_args"].update(pool_size=2, modes=["score"])
    cfg.write_text(yaml.safe_dump(data))
    common = ["fit", "--config", str(cfg), "--trainer.limit_train_batches=1"]
    cli_main([*common, "--trainer.max_epochs=2"])
    cli_main([*common, "--trainer.max_epochs=3", "--ckpt_path=last"])
    history = json.loads((run / "reports" / "tournament_history.json").read_text())
    opponents = [sorted(h["results"]["score"]) for h in history]
    assert opponents == [
        ["random"],
        ["random", "snapshot:start"],
        ["random", "snapshot:epoch000", "snapshot:start"],
        ["random", "snapshot:epoch000", "snapshot:epoch001"],  # the oldest left the pool of 2
    ]
    last = history[-1]
    assert last["results"]["score"]["snapshot:epoch001"]["episodes"] == 4
    assert {"snapshot:score@epoch000", "snapshot:score@epoch001"} <= set(last["ratings"])
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    (state,) = [v for k, v in ckpt["callbacks"].items() if "TournamentCallback" in k]
    assert [p["label"] for p in state["pool"]] == ["epoch001", "epoch002"]
    # The snapshot of epoch002 is the final trained adapter itself; the slots are saved with the module.
    sd = ckpt["state_dict"]
    slot = state["pool"][-1]["adapter"]
    pairs = [(k, k.replace(".default.", f".{slot}.")) for k in sd if ".lora_A.default." in k]
    assert pairs and all(torch.equal(sd[a], sd[b]) for a, b in pairs)
