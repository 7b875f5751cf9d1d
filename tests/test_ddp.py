"""The quickstart's loop under Lightning's DDP strategy: two CPU processes (gloo) share the games."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from datamodules.records import Episode, PreferencePair, read_jsonl

ROOT = Path(__file__).resolve().parents[1]


def _fit(cfg: Path, *extra: str) -> str:
    cmd = [sys.executable, "-m", "cli", "fit", "--config", str(cfg), "--trainer.max_epochs=1", *extra]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout + done.stderr


def _games(run: Path) -> list[tuple]:
    episodes = read_jsonl(run / "iter_000" / "episodes.jsonl", Episode)
    return sorted((e.episode_id, tuple(t.completion for t in e.turns), tuple(e.returns)) for e in episodes)


def test_two_ddp_processes_split_the_games_and_train_on_what_one_process_does(tmp_path, tiny_config):
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    cfg1, run1 = tiny_config(tmp_path / "one")
    cfg2, run2 = tiny_config(tmp_path / "two")
    _fit(cfg1)
    log = _fit(cfg2, "--trainer.strategy=ddp", "--trainer.devices=2", "--trainer.accelerator=cpu")
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in log  # Lightning started a second process
    # The same games, each once (no game twice, none missing), in one file written by one process.
    one, two = _games(run1), _games(run2)
    assert len(two) == len({g[0] for g in two}) == 6 and one == two
    # The same pairs, so the same training data.
    for name in ("pairs_train.jsonl", "pairs_eval.jsonl"):
        a = {p.pair_id for p in read_jsonl(run1 / "iter_000" / name, PreferencePair)}
        b = {p.pair_id for p in read_jsonl(run2 / "iter_000" / name, PreferencePair)}
        assert a == b
    # The tournament played once over both processes: the one-process figures.
    start1 = json.loads((run1 / "reports" / "tournament_start.json").read_text())
    start2 = json.loads((run2 / "reports" / "tournament_start.json").read_text())
    assert start1["games"] == start2["games"]
    for mode, by_opp in start1["results"].items():
        for opp, m in by_opp.items():
            assert {k: m[k] for k in ("episodes", "win_rate", "illegal_rate")} == {
                k: start2["results"][mode][opp][k] for k in ("episodes", "win_rate", "illegal_rate")
            }
