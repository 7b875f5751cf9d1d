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
