"""The offline judge: its decision rule, its position-debiased preference on a real (tiny) model, and
its re-scoring of the ambiguous pairs only."""

from __future__ import annotations

import json

import pytest

from cli import cli_main
from datamodules.pairs import judge_decision, judge_pairs
from datamodules.records import PreferencePair, read_jsonl


def _pair(chosen: str, rejected: str, cs: float, rs: float) -> PreferencePair:
    return PreferencePair(
        f"{chosen}-{rejected}",
        "Kuhn poker. You hold the Jack.",
        chosen,
        rejected,
        cs,
        rs,
        "margin",
        "k",
        "kuhn_poker",
        0,
    )


def test_decision_rule_keeps_flips_and_drops_by_confidence():
    assert [judge_decision(p, 0.6) for p in (0.95, 0.6, 0.59, 0.5, 0.41, 0.4, 0.0)] == [
        "keep", "keep", "drop", "drop", "drop", "flip", "flip"
    ]  # fmt: skip
    with pytest.raises(ValueError, match="threshold"):
        judge_decision(0.7, 0.3)


class _Fixed:
    """A judge whose confidences are given (to check which pairs judge_pairs asks and what it does)."""

    name = "fixed"

    def __init__(self, answers: dict[str, float]) -> None:
        self.answers, self.asked = answers, []

    def preferences(self, triples):
        self.asked += [a for _, a, _ in triples]
        return [self.answers[a] for _, a, _ in triples]


def test_only_ambiguous_pairs_are_asked_and_flips_keep_each_answers_score():
    pairs = [
        _pair("bet", "pass", 0.30, 0.10),  # gap 0.20 <= margin 0.1 + band 0.15: asked, kept
        _pair("call", "fold", 0.20, 0.05),  # gap 0.15: asked, flipped
        _pair("raise", "check", 0.25, 0.05),  # gap 0.20: asked, dropped
        _pair("bet", "xyz", 0.30, -2.0),  # an illegal answer's pair: far outside the band
        _pair("pass", "bet", 1.0, 0.0),  # a clear gap: not asked
    ]
    judge = _Fixed({"bet": 0.8, "call": 0.2, "raise": 0.5})
    out = judge_pairs(pairs, judge, margin=0.1, band=0.15, threshold=0.6)
    assert judge.asked == ["bet", "call", "raise"]
    assert [(p.chosen, p.rejected, p.judge and p.judge["decision"]) for p in out] == [
        ("bet", "pass", "keep"), ("fold", "call", "flip"), ("bet", "xyz", None), ("pass", "bet", None)
    ]  # fmt: skip
    flipped = out[1]
    assert (flipped.chosen_score, flipped.rejected_score) == (0.05, 0.20)
    assert flipped.judge == {
        "model": "fixed",
        "decision": "flip",
        "confidence": 0.2,
        "gap": pytest.approx(0.15),
    }


def test_a_real_judge_model_is_position_debiased(tiny_model_dir):
    from modules.judge import Judge

    judge = Judge(tiny_model_dir, dtype="float32")
    prompt = "Tic-tac-toe. You are X. Legal moves: 1, 5, 9. Reply with one cell number."
    ab, ba = judge.preferences([(prompt, "5", "1"), (prompt, "1", "5")])
    assert 0.0 < ab < 1.0 and ab + ba == pytest.approx(1.0, abs=1e-6)
    assert not any(p.requires_grad for p in judge.policy.parameters())


def test_pairs_verb_with_a_judge_records_its_decisions(tmp_path, capsys, tiny_model_dir):
    episodes = tmp_path / "random.jsonl"
    cli_main(
        [
            "rollout",
            "--env",
            "lightspiel/KuhnPoker-v0",
            "--agent",
            "random",
            "--games",
            "40",
            "--out",
            str(episodes),
        ]
    )
    capsys.readouterr()
    out = tmp_path / "pairs.jsonl"
    with pytest.raises(SystemExit) as info:
        cli_main(["pairs", "--episodes", str(episodes), "--out", str(out), "--judge", tiny_model_dir,
                  "--judge_band", "10", "--judge_threshold", "0.5"])  # fmt: skip
        raise SystemExit(0)
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    rows = read_jsonl(out, PreferencePair)
    assert info.value.code == 0 and figures["pairs"] == len(rows) > 0
    # A band of 10 asks every pair; threshold 0.5 never drops: every row carries the judge's decision.
    assert all(r.judge and r.judge["decision"] in ("keep", "flip") for r in rows)
    assert (
        figures["judged"]["keep"] + figures["judged"]["flip"] == len(rows) and figures["judged"]["drop"] == 0
    )


def test_preference_datamodule_asks_the_judge_and_keeps_its_verdicts(tmp_path, tiny_config, tiny_model_dir):
    cfg, run = tiny_config(tmp_path)
    cli_main(["fit", "--config", str(cfg), "--trainer.max_steps=1", f"--data.init_args.judge_model={tiny_model_dir}",
              "--data.init_args.judge_band=10", "--data.init_args.judge_threshold=0.5"])  # fmt: skip
    rows = [json.loads(line) for line in (run / "iter_000" / "pairs_train.jsonl").read_text().splitlines()]
    assert rows and all(r["judge"]["model"] == tiny_model_dir and r["judge"]["decision"] in ("keep", "flip") for r in rows)
