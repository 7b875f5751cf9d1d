"""SFT (loss on completion tokens only, data files, the module), the reasoning pair strategies, and
the reasoning configs end to end on a tiny model."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from cli import cli_main
from datamodules.pairs import build_pairs
from datamodules.records import Episode, SFTExample, Turn, read_jsonl, to_json
from datamodules.rollout import RolloutEngine
from modules.errors import ConfigError, DataFileError
from modules.losses import sft_loss


def _hf_loss(policy, prompt: str, completion: str, prompt_labels: str) -> float:
    """The plain transformers causal-LM loss on prompt + completion, the prompt's labels being
    ``ignored`` (-100), ``tokens`` (the prompt's own ids) or ``other`` (arbitrary ids)."""
    p, c = policy.prompt_ids(prompt), policy.completion_ids(completion)
    ids = torch.tensor([p + c])
    head = {"ignored": [-100] * len(p), "tokens": p, "other": [(t * 7 + 3) % 1000 for t in p]}[prompt_labels]
    labels = torch.tensor([head + c])
    with torch.no_grad():
        return float(policy.model(input_ids=ids, labels=labels).loss)


def test_sft_loss_is_the_causal_lm_loss_with_the_prompt_masked(tiny_policy):
    prompt, completion = "What is 4 - 1?", "4 - 1 = 3\n#### 3"
    with torch.no_grad():
        logps, mask, _ = tiny_policy.token_logps(
            [tiny_policy.prompt_ids(prompt)], [tiny_policy.completion_ids(completion)]
        )
    ours = float(sft_loss(logps, mask))
    assert ours == pytest.approx(_hf_loss(tiny_policy, prompt, completion, "ignored"), abs=1e-5)
    # Training on the prompt's tokens (or other labels there) would be another loss: ours ignores them.
    assert abs(ours - _hf_loss(tiny_policy, prompt, completion, "tokens")) > 1e-3
    assert abs(ours - _hf_loss(tiny_policy, prompt, completion, "other")) > 1e-3


def test_sft_loss_weighs_every_completion_token_once_across_rows():
    logps = torch.tensor([[-1.0, -3.0, 0.0], [-2.0, 0.0, 0.0]])
    mask = torch.tensor([[True, True, False], [True, False, False]])
    assert float(sft_loss(logps, mask)) == pytest.approx(6.0 / 3)


def test_sft_files_in_trl_and_plain_shapes_load_and_bad_lines_are_named(tmp_path):
    ex = SFTExample("Q?", "#### 1", "test", "be brief")
    path = tmp_path / "sft.jsonl"
    rows = [
        to_json(ex),
        json.dumps({"prompt": "Q2?", "completion": "#### 2"}),
        json.dumps(
            {"messages": [{"role": "user", "content": "Q3?"}, {"role": "assistant", "content": "#### 3"}]}
        ),
    ]
    path.write_text("\n".join(rows) + "\n")
    loaded = read_jsonl(path, SFTExample)
    assert loaded[0] == ex and json.loads(rows[0])["completion"] == [
        {"role": "assistant", "content": "#### 1"}
    ]
    assert [(e.prompt, e.completion, e.system) for e in loaded[1:]] == [
        ("Q2?", "#### 2", None),
        ("Q3?", "#### 3", None),
    ]
    for bad, field in (
        ({"prompt": "Q?"}, "completion"),
        ({"prompt": "Q?", "completion": " "}, "completion"),
        ({"prompt": [{"role": "assistant", "content": "x"}], "completion": "y"}, "prompt[0]"),
    ):
        path.write_text(rows[1] + "\n" + json.dumps(bad) + "\n")
        with pytest.raises(DataFileError) as err:
            read_jsonl(path, SFTExample)
        assert (err.value.line, err.value.field) == (2, field)


def _turn(prompt: str, completion: str, verdict: dict) -> Turn:
    return Turn(
        0,
        prompt,
        [],
        completion,
        None,
        verdict.get("answer"),
        True,
        True,
        "ok",
        None,
        [],
        0.0,
        verdict=verdict,
    )


def _episodes(answers: list[tuple[str, str, dict]]) -> list[Episode]:
    return [
        Episode(
            f"e{i}", "math:test", "lightspiel/Math-v0", i, "self", 0, [_turn(p, c, v)], [v["reward"]], [0.0]
        )
        for i, (p, c, v) in enumerate(answers)
    ]


def test_correctness_pairs_put_correct_first_then_quality():
    right = {"correct": True, "reward": 1.0}
    right_short = {"correct": True, "reward": 1.25}  # e.g. a format bonus
    wrong = {"correct": False, "reward": 0.0}
    wrong_but_shaped = {"correct": False, "reward": 1.5}  # shaping must never beat correctness
    eps = _episodes(
        [
            ("P", "#### 3", right_short),
            ("P", "3, I think", right),
            ("P", "#### 4", wrong),
            ("P", "#### 5", wrong_but_shaped),
            ("Q", "#### 1", right),  # a prompt with only correct answers of equal quality: no pair
            ("Q", "1", right),
        ]
    )
    pairs = build_pairs(eps, "correctness", margin=0.1, max_pairs_per_state=10)
    got = {(p.chosen, p.rejected) for p in pairs}
    assert got == {
        ("#### 3", "#### 4"),
        ("#### 3", "#### 5"),
        ("3, I think", "#### 4"),
        ("3, I think", "#### 5"),
        ("#### 3", "3, I think"),
    }
    assert all(p.prompt == "P" and p.strategy == "correctness" for p in pairs)


def test_validity_pairs_respect_the_gap_and_the_valid_winner_rule():
    def v(share, all_valid):
        return {"valid_share": share, "all_valid": all_valid, "reward": share}

    eps = _episodes(
        [
            ("P", "a", v(1.0, True)),
            ("P", "b", v(0.75, False)),
            ("P", "c", v(0.5, False)),
            ("P", "d", v(0.0, False)),
        ]
    )
    pairs = build_pairs(eps, "validity", min_validity_gap=0.3, max_pairs_per_state=10)
    assert {(p.chosen, p.rejected) for p in pairs} == {("a", "c"), ("a", "d"), ("b", "d"), ("c", "d")}
    # A more valid proof with the wrong answer never beats a less valid one with the right answer.
    mixed = _episodes(
        [("P", "a", {**v(1.0, False), "correct": False}), ("P", "b", {**v(0.5, False), "correct": True})]
    )
    assert build_pairs(mixed, "validity", min_validity_gap=0.3) == []
    strict = build_pairs(
        eps, "validity", min_validity_gap=0.3, require_valid_winner=True, max_pairs_per_state=10
    )
    assert {(p.chosen, p.rejected) for p in strict} == {("a", "c"), ("a", "d")}
    assert all(p.chosen_score > p.rejected_score for p in pairs)


def test_reasoning_strategies_refuse_game_episodes():
    game = [
        Episode(
            "g",
            "tic_tac_toe",
            "lightspiel/TicTacToe-v0",
            0,
            "random",
            0,
            [Turn(0, "P", ["1"], "1", 4, "1", True, True, "ok", None, [], 0.0)],
            [1.0, -1.0],
            [0.0, 0.0],
        )
    ]
    with pytest.raises(Exception, match="verdicts of a reasoning env"):
        build_pairs(game, "correctness")


def test_samples_per_problem_play_each_problem_k_times_with_unique_ids(tiny_policy, tmp_path):
    engine = RolloutEngine("lightspiel/Math-v0", {}, num_envs=4)
    seeds = [11, 11, 11, 12, 12, 12]
    result = engine.play(tiny_policy, seeds, mode="generate", out_path=tmp_path / "e.jsonl", progress=None)
    ids = [e.episode_id for e in result.episodes]
    assert len(set(ids)) == 6 and [e.seed for e in result.episodes] == seeds
    prompts: dict[int, set] = {}
    for e in result.episodes:
        prompts.setdefault(e.seed, set()).add(e.turns[0].prompt)
    assert [len(p) for p in prompts.values()] == [1, 1] and prompts[11] != prompts[12]  # one problem per seed
    stored = read_jsonl(tmp_path / "e.jsonl", Episode)
    assert {e.episode_id for e in stored} == set(ids) and all(e.turns[0].verdict["expected"] for e in stored)


@pytest.mark.parametrize("name", ["math_sft_dpo.yaml", "logic_iterative_dpo.yaml"])
def test_reasoning_config_runs_its_sft_stage_and_reports_accuracy(tmp_path, tiny_config, name):
    cfg, run = tiny_config(tmp_path, name)
    cli_main(["fit", "--config", str(cfg), "--trainer.max_epochs=1"])
    examples = read_jsonl(run / "iter_000" / "sft_train.jsonl", SFTExample)
    assert len(examples) == 8 and all("####" in e.completion or "Answer:" in e.completion for e in examples)
    label = "math" if "math" in name else "logic"
    start = json.loads((run / "reports" / f"reasoning_{label}_start.json").read_text())
    after = json.loads((run / "reports" / f"reasoning_{label}_epoch000.json").read_text())
    assert start["metrics"]["problems"] == 4 and sorted(start["problems"]) == sorted(after["problems"])
    comparison = json.loads((run / "reports" / f"reasoning_{label}_comparison.json").read_text())
    assert [row["label"] for row in comparison] == ["start", "epoch000"]
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    # A resumed run continues with iteration 1: the DPO stage, on the SFT model's own answers.
    assert ckpt["callbacks"]["IterativeRegeneration"]["iteration"] == 1


def test_dpo_stage_trains_on_correctness_pairs_from_an_episodes_file(tmp_path, tiny_config):
    cfg, run = tiny_config(tmp_path, "math_sft_dpo.yaml")
    right, wrong = {"correct": True, "reward": 1.0}, {"correct": False, "reward": 0.0}
    eps = _episodes(
        [(f"P{i}", f"#### {i}", right) for i in range(4)]
        + [(f"P{i}", f"#### {i + 1}", wrong) for i in range(4)]
    )
    path = tmp_path / "episodes.jsonl"
    path.write_text("".join(to_json(e) + "\n" for e in eps))
    config = yaml.safe_load(cfg.read_text())
    config["data"]["init_args"].update(sft_iterations=0, episodes_path=str(path), eval_ratio=0.0)
    cfg.write_text(yaml.safe_dump(config))
    cli_main(["fit", "--config", str(cfg), "--trainer.max_epochs=1"])
    pairs = [json.loads(line) for line in (run / "iter_000" / "pairs_train.jsonl").read_text().splitlines()]
    assert sorted((p["chosen"][0]["content"], p["rejected"][0]["content"]) for p in pairs) == [
        (f"#### {i}", f"#### {i + 1}") for i in range(4)
    ]
    summary = json.loads((run / "iter_000" / "summary.json").read_text())
    assert (summary["episodes"], summary["accuracy"], summary["pairs_train"]) == (8, 0.5, 4)


def test_transfer_evaluation_asks_with_its_own_system_prompt_and_budget_then_restores(tiny_policy):
    from callbacks import ReasoningEval

    callback = ReasoningEval(num_problems=2, system_prompt="Solve the math problem.", max_new_tokens=64)
    game_prompt = tiny_policy.prompt_ids("Q")
    with callback._asking(tiny_policy):
        assert tiny_policy.max_new_tokens == 64
        assert "Solve the math problem." in tiny_policy.tokenizer.decode(tiny_policy.prompt_ids("Q"))
    assert (tiny_policy.max_new_tokens, tiny_policy.prompt_ids("Q")) == (16, game_prompt)


def test_grpo_trains_on_math_with_groups_of_answers_per_problem(tmp_path, tiny_config):
    cfg, run = tiny_config(tmp_path, "cooperative_grpo_selfplay.yaml")
    config = yaml.safe_load(cfg.read_text())
    config["data"]["init_args"].update(
        env="lightspiel/Math-v0", env_kwargs={}, opponents=None, num_episodes=3, mode="generate",
        grouping="start", sibling_judge="alone", distinct_siblings=False,
    )  # fmt: skip
    config["model"]["init_args"]["score_objective"] = "tokens"
    config["trainer"]["callbacks"] = [
        {"class_path": "callbacks.ReasoningEval", "init_args": {"num_problems": 2, "at_start": False}}
    ]
    cfg.write_text(yaml.safe_dump(config))
    cli_main(["fit", "--config", str(cfg), "--trainer.max_epochs=1"])
    episodes = read_jsonl(run / "iter_000" / "episodes.jsonl", Episode)
    assert len(episodes) == 6 and len({e.seed for e in episodes}) == 3  # 3 problems x 2 answers
    assert all(e.turns[0].completion_ids and e.turns[0].verdict["expected"] for e in episodes)
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert (
        json.loads((run / "reports" / "reasoning_math_epoch000.json").read_text())["metrics"]["problems"] == 2
    )


def test_verdict_metrics_count_accuracy_and_valid_steps_by_hand():
    from datamodules.metrics import outcome_metrics_with_intervals, verdict_metrics

    math = _episodes(
        [
            ("P", "#### 3", {"correct": True, "parsed": True, "format_ok": True, "length": 6, "reward": 1.0}),
            ("P", "3", {"correct": True, "parsed": True, "format_ok": False, "length": 1, "reward": 1.0}),
            (
                "Q",
                "#### 4",
                {"correct": False, "parsed": True, "format_ok": True, "length": 6, "reward": 0.0},
            ),
            ("Q", "?", {"correct": False, "parsed": False, "format_ok": False, "length": 1, "reward": 0.0}),
        ]
    )
    m = verdict_metrics(math)
    assert (m["accuracy"], m["parse_rate"], m["marker_rate"], m["mean_answer_chars"]) == (0.5, 0.75, 0.5, 3.5)
    assert m["accuracy_low"] < 0.5 < m["accuracy_high"]
    assert outcome_metrics_with_intervals(math)["accuracy"] == 0.5  # the rollout logs it too

    def step(ok):
        return {"solver_valid": ok, "solver_error": None if ok else "x"}

    proofs = _episodes(
        [
            (
                "P",
                "a",
                {
                    "correct": True,
                    "parsed": True,
                    "steps": [step(True)] * 3,
                    "all_valid": True,
                    "reward": 2.0,
                },
            ),
            (
                "P",
                "b",
                {
                    "correct": False,
                    "parsed": True,
                    "steps": [step(True), step(False)],
                    "all_valid": False,
                    "reward": 0.5,
                },
            ),
            ("P", "c", {"correct": False, "parsed": False, "steps": [], "all_valid": False, "reward": 0.0}),
        ]
    )
    m = verdict_metrics(proofs)
    assert (m["valid_step_rate"], m["all_valid_rate"]) == (4 / 5, 1 / 3)
    assert verdict_metrics([]) == {}


def test_game_gold_moves_with_a_discount_take_the_win_on_the_board():
    """Plain minimax rates every winning move alike, and the gold move is the lowest-numbered one:
    often a slower win. With ``discount`` the gold move of a position with a line to complete
    completes it."""
    from datamodules.sft import gold_examples

    lines = [(0, 1, 2), (3, 4, 5), (6, 7, 8), (0, 3, 6), (1, 4, 7), (2, 5, 8), (0, 4, 8), (2, 4, 6)]

    def winning_cells(prompt: str) -> set[str]:
        me = prompt.split("You are ")[1][0]
        cells = [c.strip() for row in prompt.splitlines() if row.count("|") == 2 for c in row.split("|")]
        return {
            cells[i]
            for line in lines
            if [cells[j] for j in line].count(me) == 2
            for i in line
            if cells[i] not in ("X", "O")
        }

    taken = {}
    for discount in (1.0, 0.95):
        gold = gold_examples("lightspiel/TicTacToe-v0", None, list(range(40)), None, "minimax", discount)
        at_wins = [ex.completion in winning_cells(ex.prompt) for ex in gold if winning_cells(ex.prompt)]
        taken[discount] = (sum(at_wins), len(at_wins))
    assert taken[0.95][0] == taken[0.95][1] > 50
    assert taken[1.0][0] < taken[1.0][1]


def test_sft_refuses_a_discount_it_would_not_use(tmp_path):
    from datamodules.sft import SFTDataModule

    data = tmp_path / "sft.jsonl"
    data.write_text(json.dumps({"prompt": "2+2?", "completion": "4"}) + "\n")
    with pytest.raises(ConfigError, match="which --data.data_path does not use"):
        SFTDataModule(data_path=str(data), oracle_discount=0.9)
    with pytest.raises(ConfigError, match="its gold completions are worked solutions"):
        SFTDataModule(env="lightspiel/Math-v0", oracle_discount=0.9)
    with pytest.raises(ConfigError, match="--data.oracle mcts gives estimates"):
        SFTDataModule(env="lightspiel/TicTacToe-v0", oracle="mcts", oracle_discount=0.9)
    assert SFTDataModule(env="lightspiel/TicTacToe-v0", oracle_discount=0.9).oracle_discount == 0.9
