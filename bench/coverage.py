"""Where a trained policy still errs: its blunders at the tournament's states, split by whether
training saw the state.

    python bench/coverage.py --run runs/quickstart

Plays the tournament's held-out games (greedy, score mode, seats alternating, the tournament's
seeds) with the run's untrained and trained policy against each opponent, and at every learner
decision asks the exact minimax oracle whether the move chosen was among the best (a blunder: a
move worth less than the best one under optimal play). Each decision state is "seen" when its
prompt is among the run's training pairs (``iter_*/pairs_*.jsonl``). A policy that generalises
blunders less at unseen states too; one that memorises improves only where training went.
Two-player zero-sum perfect-information games small enough to solve (tic-tac-toe).

Prints one JSON object (and writes it to bench/results/coverage.json).
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from callbacks.tournament import _alternate_seats  # noqa: E402
from cli.verbs import load_trained_module  # noqa: E402
from datamodules import RolloutEngine  # noqa: E402
from datamodules.metrics import wilson_interval  # noqa: E402
from envs import state_from_history  # noqa: E402
from envs.oracles import action_values  # noqa: E402
from modules.errors import ConfigError  # noqa: E402


def trained_prompts(run: Path) -> set[str]:
    """The user-message text of every training and held-out pair's prompt in the run folder."""
    seen = set()
    for path in sorted(glob.glob(str(run / "iter_*" / "pairs_*.jsonl"))):
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                prompt = json.loads(line)["prompt"]
                seen.add(prompt[-1]["content"] if isinstance(prompt, list) else prompt)
    return seen


def blunders(policy, env: str, opponent: str, games: int, seed: int, seen: set[str]) -> dict:
    """Decisions and blunders at seen and unseen states, and the learner's losses."""
    engine = RolloutEngine(env, {"opponent": opponent}, num_envs=games)
    episodes = engine.play(
        policy,
        [seed + i for i in range(games)],
        mode="score",
        greedy=True,
        reset_options=_alternate_seats,
        progress=None,
    ).episodes
    counts = {"seen": [0, 0], "unseen": [0, 0]}
    for episode in episodes:
        for turn in episode.turns:
            if not turn.learner:
                continue
            values = action_values(state_from_history(episode.game, turn.history), turn.seat)
            where = counts["seen" if turn.prompt in seen else "unseen"]
            where[0] += 1
            where[1] += values[turn.action] < max(values.values()) - 1e-9
    out: dict = {"losses": sum(e.returns[e.learner_seat] < 0 for e in episodes)}
    for where, (n, bad) in counts.items():
        low, high = wilson_interval(bad, n) if n else (0.0, 1.0)
        out[where] = {
            "decisions": n,
            "blunders": bad,
            "blunder_rate": round(bad / n, 3) if n else None,
            "interval": [round(low, 3), round(high, 3)],
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="a run folder written by `python -m cli fit`")
    parser.add_argument("--config", help="the run's config (default: RUN/tensorboard/config.yaml)")
    parser.add_argument("--ckpt_path", help="the trained checkpoint (default: RUN/checkpoints/last.ckpt)")
    parser.add_argument("--env", default="lightspiel/TicTacToe-v0")
    parser.add_argument("--opponents", nargs="+", default=["random", "mcts"])
    parser.add_argument("--games", type=int, default=100, help="games per opponent (the tournament's seeds)")
    parser.add_argument("--seed", type=int, default=900_000_000, help="first seed (the tournament's default)")
    parser.add_argument("--out", default="bench/results/coverage.json")
    args = parser.parse_args()
    run = Path(args.run)
    config = args.config or str(run / "tensorboard" / "config.yaml")
    ckpt = args.ckpt_path or str(run / "checkpoints" / "last.ckpt")
    if not Path(config).is_file():
        raise ConfigError(f"--config: no such file {config!r} (a fit run writes RUN/tensorboard/config.yaml)")
    seen = trained_prompts(run)
    if not seen:
        raise ConfigError(f"--run {args.run!r}: no iter_*/pairs_*.jsonl in it (expected a DPO run folder)")
    policy = load_trained_module(config, ckpt).policy
    policy.eval()
    report = {"benchmark": "coverage", "run": str(run), "trained_prompts": len(seen), "results": {}}
    # Untrained: the same network with its adapter switched off (a fresh LoRA adds exactly zero).
    for name, adapter in (("untrained", policy.model.disable_adapter()), ("trained", contextlib.nullcontext())):
        with adapter:
            report["results"][name] = {
                opponent: blunders(policy, args.env, opponent, args.games, args.seed, seen)
                for opponent in args.opponents
            }
    text = json.dumps(report, indent=2)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
