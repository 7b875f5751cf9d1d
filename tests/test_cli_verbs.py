"""The step-by-step verbs: rollout -> pairs -> split, their acceptance figures and their bad input."""

from __future__ import annotations

import json

import pytest

from cli import cli_main
from datamodules.records import Episode, PreferencePair, read_jsonl


def _run(args, capsys) -> tuple[int, dict | None, str]:
    with pytest.raises(SystemExit) as info:
        cli_main(args)
        raise SystemExit(0)
    out = capsys.readouterr()
    lines = [line for line in out.out.splitlines() if line.startswith("{")]
    return info.value.code or 0, json.loads(lines[-1]) if lines else None, out.err


def test_rollout_pairs_split_chain_with_acceptance_figures(tmp_path, capsys):
    episodes = tmp_path / "logs" / "heuristic.jsonl"
    code, figures, _ = _run(
        [
            "rollout",
            "--env",
            "lightspiel/KuhnPoker-v0",
            "--agent",
            "heuristic",
            "--games",
            "40",
            "--out",
            str(episodes),
        ],
        capsys,
    )
    assert code == 0 and figures["games"] == 40 and (figures["parse_rate"], figures["illegal_rate"]) == (1.0, 0.0)
    assert figures["mean_length"] >= 2  # a Kuhn hand takes two or three decisions, all counted
    stored = read_jsonl(episodes, Episode)
    assert len(stored) == 40 and all(e.players == ["heuristic", "heuristic"] for e in stored)
    # A bar random play cannot meet fails the run (exit 1), after writing the episodes.
    randoms = tmp_path / "logs" / "random.jsonl"
    code, _, err = _run(
        ["rollout", "--env", "lightspiel/KuhnPoker-v0", "--agent", "random", "--games", "60",
         "--out", str(randoms), "--require", "win_rate>=0.99"],
        capsys,
    )  # fmt: skip
    assert code == 1 and "require win_rate >= 0.99" in err and "FAILED" in err
    assert len(read_jsonl(randoms, Episode)) == 60
    pairs = tmp_path / "pairs" / "all.jsonl"  # random play varies the moves at a state: margin pairs
    code, figures, _ = _run(
        ["pairs", "--episodes", str(randoms), "--strategy", "margin", "--out", str(pairs)], capsys
    )
    rows = read_jsonl(pairs, PreferencePair)
    assert code == 0 and figures["pairs"] == len(rows) > 0 and figures["score_order_violations"] == 0
    assert all(r.chosen_score > r.rejected_score for r in rows)
    code, figures, _ = _run(
        ["split", "--pairs", str(pairs), "--eval_ratio", "0.3", "--out", str(tmp_path / "s")], capsys
    )
    train = read_jsonl(tmp_path / "s" / "pairs_train.jsonl", PreferencePair)
    evals = read_jsonl(tmp_path / "s" / "pairs_eval.jsonl", PreferencePair)
    assert figures == {"pairs": len(rows), "train": len(train), "eval": len(evals)} and train and evals
    assert not {p.state_key for p in train} & {p.state_key for p in evals}


def test_rollout_plays_a_language_model_in_every_seat(tmp_path, capsys, tiny_model_dir):
    out = tmp_path / "llm.jsonl"
    code, figures, _ = _run(
        ["rollout", "--env", "lightspiel/TicTacToe-v0", "--agent", "llm", "--model", tiny_model_dir, "--dtype", "float32",
         "--games", "3", "--mode", "generate", "--out", str(out), "--require", "parse_rate>=0.0"],
        capsys,
    )  # fmt: skip
    assert code == 0 and figures["games"] == 3
    assert all(set(e.players) == {"learner"} and e.mode == "generate" for e in read_jsonl(out, Episode))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["rollout", "--env", "lightspiel/TicTacToo-v0", "--agent", "random", "--out", "x.jsonl"],
            "did you mean 'lightspiel/TicTacToe-v0'",
        ),
        (
            ["rollout", "--env", "lightspiel/KuhnPoker-v0", "--agent", "heuristc", "--out", "x.jsonl"],
            "did you mean 'heuristic'",
        ),
        (
            [
                "rollout",
                "--env",
                "lightspiel/KuhnPoker-v0",
                "--agent",
                "random",
                "--out",
                "x.jsonl",
                "--require",
                "parse>0.9x",
            ],
            "--require 'parse>0.9x'",
        ),
        (
            ["rollout", "--env", "lightspiel/KuhnPoker-v0", "--env_kwargs", "{bad", "--out", "x.jsonl"],
            "--env_kwargs: not valid JSON",
        ),
        (["pairs", "--episodes", "missing.jsonl", "--out", "p.jsonl"], "missing.jsonl:0: field '<file>'"),
        (["pairs", "--episodes", "BAD", "--strategy", "margn", "--out", "p.jsonl"], "did you mean 'margin'"),
        (
            ["tournament", "--env", "lightspiel/TicTacToe-v0", "--opponent_model", "x", "--out", "r.json"],
            "--opponent_model need --opponent llm",
        ),
        (
            ["tournament", "--env", "lightspiel/TicTacToe-v0", "--opponent", "llm", "--opponent_mode", "scor",
             "--out", "r.json"],
            "did you mean 'score'",
        ),
    ],
)
def test_verbs_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    if "BAD" in args:
        (tmp_path / "bad.jsonl").write_text('{"episode_id": 1}\n')
        args = [a if a != "BAD" else "bad.jsonl" for a in args]
    with pytest.raises(SystemExit) as info:
        cli_main(args)
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lightspiel: error:") and message in err[0]
    assert not (tmp_path / "x.jsonl").exists() and not (tmp_path / "p.jsonl").exists()


def test_a_missing_verb_option_is_one_line(capsys):
    with pytest.raises(SystemExit) as info:
        cli_main(["split", "--pairs", "p.jsonl"])
    err = capsys.readouterr().err.strip().splitlines()
    assert info.value.code == 2 and err == [
        "lightspiel: error: python -m cli split: the following arguments are required: --out (see --help)"
    ]


def test_tournament_report_and_baseline_gate(tmp_path, capsys, tiny_model_dir):
    common = ["tournament", "--env", "lightspiel/KuhnPoker-v0", "--opponent", "heuristic", "--model", tiny_model_dir,
              "--dtype", "float32", "--games", "6"]  # fmt: skip
    before = tmp_path / "before.json"
    code, figures, _ = _run([*common, "--mode", "score", "--out", str(before)], capsys)
    report = json.loads(before.read_text())
    assert (
        code == 0 and report["metrics"]["illegal_rate"] == 0.0 and figures["illegal_rate"] == 0.0
    )  # score: legal
    # Free text from a random tiny model is mostly illegal: the gate rejects it against the baseline.
    code, _, err = _run(
        [*common, "--mode", "generate", "--out", str(tmp_path / "after.json"), "--baseline", str(before)],
        capsys,
    )
    after = json.loads((tmp_path / "after.json").read_text())["metrics"]
    assert (
        after["illegal_rate"] > 0.5 and code == 1 and "rejected" in err and "illegal_rate: 0.0000 ->" in err
    )


def test_tournament_between_two_llms(tmp_path, capsys, tiny_model_dir):
    """A model against itself from another folder: greedy tic-tac-toe has no chance, and seats
    alternate, so whatever the first seat gets, the other seat gets back: wins equal losses."""
    out = tmp_path / "r.json"
    code, figures, _ = _run(
        ["tournament", "--env", "lightspiel/TicTacToe-v0", "--model", tiny_model_dir, "--dtype", "float32",
         "--mode", "score", "--opponent", "llm", "--opponent_model", tiny_model_dir, "--games", "4",
         "--out", str(out)],
        capsys,
    )  # fmt: skip
    report = json.loads(out.read_text())
    assert code == 0 and report["opponent"] == tiny_model_dir and report["metrics"]["episodes"] == 4
    assert figures["win_rate"] == figures["loss_rate"]
    # The other model held the other seat: the learner sat first, then second.
    seats = [g["players"] for g in report["sample_games"]]
    assert seats == [["learner", tiny_model_dir], [tiny_model_dir, "learner"]]


def test_tournament_width_changes_the_speed_not_the_games(tmp_path, capsys, tiny_model_dir, monkeypatch):
    """``--num_envs``: how many games step together. Every game is seeded by its own number, so one
    at a time and all at once play the same games to the same figures."""
    import callbacks.tournament

    widths = []

    class Recorded(callbacks.tournament.Tournament):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            widths.append(self.num_envs)

    monkeypatch.setattr(callbacks.tournament, "Tournament", Recorded)
    common = ["tournament", "--env", "lightspiel/TicTacToe-v0", "--opponent", "random", "--model", tiny_model_dir,
              "--dtype", "float32", "--mode", "score", "--games", "6"]  # fmt: skip
    reports = []
    for width in ("1", "6"):
        out = tmp_path / f"w{width}.json"
        code, _, _ = _run([*common, "--num_envs", width, "--out", str(out)], capsys)
        assert code == 0
        reports.append(json.loads(out.read_text()))
    narrow, wide = ({k: v for k, v in r["metrics"].items() if k != "games_per_s"} for r in reports)
    assert narrow == wide and reports[0]["sample_games"] == reports[1]["sample_games"]
    assert narrow["episodes"] == 6 and widths == [1, 6]
    code, _, err = _run([*common, "--num_envs", "0", "--out", str(tmp_path / "bad.json")], capsys)
    assert code == 2 and "--num_envs must be >= 1, got 6, 0" in err and not (tmp_path / "bad.json").exists()
